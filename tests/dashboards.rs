//! The Grafana dashboards and alert rules, proven against a real Prometheus
//! scraping a live tickcast node and a live loadgen (Grafana itself cannot be
//! installed here: its queries are run the way it would run them).
mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn dashboard(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(repo(&format!("dashboards/{name}"))).unwrap())
        .unwrap()
}

/// A tool the tests need; `scripts/test` installs it.
fn tool(name: &str) -> &str {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .unwrap();
    assert!(
        found.status.success(),
        "{name} is not installed: run scripts/test, which installs it (Debian package prometheus)"
    );
    name
}

/// The loadgen binary beside tickcast's, built if this run did not build it.
fn loadgen() -> PathBuf {
    let path = PathBuf::from(binary()).with_file_name("loadgen");
    if !path.exists() {
        let ok = Command::new(env!("CARGO"))
            .args(["build", "-p", "loadgen", "--bin", "loadgen"])
            .status()
            .unwrap();
        assert!(ok.success());
    }
    path
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every (panel title, expr, must show data) of a dashboard.
fn queries(board: &Value) -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    for p in board["panels"].as_array().unwrap() {
        if p["type"] == "row" {
            continue;
        }
        let must = p["tickcast"]["mustShowData"].as_bool().unwrap_or(true);
        for t in p["targets"].as_array().unwrap() {
            out.push((
                p["title"].as_str().unwrap().to_string(),
                t["expr"].as_str().unwrap().to_string(),
                must,
            ));
        }
    }
    out
}

/// What Grafana would send for a dashboard expression.
fn as_grafana_sends(expr: &str) -> String {
    expr.replace("$__rate_interval", "5s")
        .replace("$__interval", "1s")
        .replace("${node}", ".*")
        .replace("$node", ".*")
}

fn alert_exprs() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo("dashboards/alerts.yml")).unwrap();
    let mut out = Vec::new();
    let mut name = String::new();
    for line in text.lines() {
        let l = line.trim();
        if let Some(n) = l.strip_prefix("- alert: ") {
            name = n.to_string();
        } else if let Some(e) = l.strip_prefix("expr: ") {
            out.push((name.clone(), e.to_string()));
        }
    }
    out
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn prom_query(addr: std::net::SocketAddr, expr: &str) -> Value {
    let (status, body) = http_get(
        addr,
        &format!("/api/v1/query?query={}", urlencode(expr)),
        &[],
    )
    .await;
    let v: Value =
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("HTTP {status} for {expr}: {body}"));
    assert_eq!(v["status"], "success", "{expr}: {v}");
    v
}

#[test]
fn dashboards_are_well_formed() {
    for name in ["tickcast.json", "loadgen.json"] {
        let b = dashboard(name);
        assert!(
            b["schemaVersion"].as_u64().unwrap() >= 36,
            "{name}: Grafana 10/11 schema"
        );
        let vars: Vec<&str> = b["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        assert!(vars.contains(&"datasource"), "{name}: datasource variable");
        let mut ids = std::collections::HashSet::new();
        for p in b["panels"].as_array().unwrap() {
            let title = p["title"].as_str().unwrap();
            assert!(
                ids.insert(p["id"].as_u64().unwrap()),
                "{name}: duplicate panel id at {title}"
            );
            assert!(
                p["gridPos"]["w"].as_u64().unwrap() > 0,
                "{name}: {title} has no size"
            );
            if p["type"] == "row" {
                continue;
            }
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "{name}: {title} datasource"
            );
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{name}: {title} has no target");
            for t in targets {
                assert!(
                    !t["expr"].as_str().unwrap_or("").is_empty(),
                    "{name}: {title} has an empty query"
                );
                assert_eq!(t["datasource"]["uid"], "${datasource}");
            }
            let unit = p["fieldConfig"]["defaults"]["unit"].as_str().unwrap_or("");
            assert!(!unit.is_empty(), "{name}: {title} has no unit");
            if title.to_lowercase().contains("latency") || title.to_lowercase().contains("delay") {
                assert_eq!(unit, "s", "{name}: latency panel {title} in seconds");
            }
        }
    }
    let t = dashboard("tickcast.json");
    let vars: Vec<&str> = t["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert!(vars.contains(&"node"), "the node variable for cluster mode");
    let rows: Vec<&str> = t["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] == "row")
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert_eq!(rows, ["Traffic", "Throughput", "Latency", "Health"]);
    assert!(t["panels"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["type"] == "heatmap"));
}

#[test]
fn the_generator_and_the_committed_dashboards_agree() {
    let before = (dashboard("tickcast.json"), dashboard("loadgen.json"));
    let dir = tempfile::tempdir().unwrap();
    // Run a copy of the generator against a copy of the folder.
    std::fs::create_dir_all(dir.path().join("scripts")).unwrap();
    std::fs::create_dir_all(dir.path().join("dashboards")).unwrap();
    std::fs::copy(
        repo("scripts/gen-dashboards.py"),
        dir.path().join("scripts/gen-dashboards.py"),
    )
    .unwrap();
    let ok = Command::new("python3")
        .arg(dir.path().join("scripts/gen-dashboards.py"))
        .status()
        .unwrap();
    assert!(ok.success());
    let read = |n: &str| -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("dashboards").join(n)).unwrap(),
        )
        .unwrap()
    };
    assert_eq!(
        read("tickcast.json"),
        before.0,
        "run scripts/gen-dashboards.py and commit the result"
    );
    assert_eq!(
        read("loadgen.json"),
        before.1,
        "run scripts/gen-dashboards.py and commit the result"
    );
}

#[test]
fn promtool_accepts_the_config_and_the_rules() {
    let promtool = tool("promtool");
    for (what, file) in [
        ("config", "dashboards/prometheus.yml"),
        ("rules", "dashboards/alerts.yml"),
    ] {
        let out = Command::new(promtool)
            .args(["check", what])
            .arg(repo(file))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn promtool_check_metrics(text: &str) {
    use std::io::Write;
    let mut child = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A node under a small load, loadgen serving its live metrics.
fn node_and_loadgen(s: &Server, duration: &str) -> (Killed, u16) {
    let port = free_port();
    let child = Command::new(loadgen())
        .args([
            "--url",
            &s.url("/ws"),
            "--connections",
            "40",
            "--procs",
            "1",
            "--symbols-per-conn",
            "3",
        ])
        .args([
            "--duration",
            duration,
            "--metrics-listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (Killed(child), port)
}

async fn loadgen_page(port: u16) -> String {
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            let (status, body) = http_get(addr, "/metrics", &[]).await;
            if status == 200 && body.contains("loadgen_connections_established 40") {
                return body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "loadgen's live metrics never showed its connections"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn promtool_accepts_the_live_metrics_of_a_node_and_of_loadgen() {
    let s = Server::start(&["--symbols", "50", "--rate", "500"]);
    let (_loadgen, port) = node_and_loadgen(&s, "20s");
    let page = loadgen_page(port).await;
    promtool_check_metrics(&page);
    s.wait_metric("tickcast_messages_sent_total", |v| v > 0.0)
        .await;
    promtool_check_metrics(&s.get("/metrics").await.1);
}

#[tokio::test]
async fn every_dashboard_and_alert_query_runs_against_a_real_prometheus() {
    let prometheus = tool("prometheus");
    let s = Server::start(&["--symbols", "50", "--rate", "500"]);
    let (_loadgen, lg_port) = node_and_loadgen(&s, "60s");
    loadgen_page(lg_port).await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(repo("dashboards/alerts.yml"), dir.path().join("alerts.yml")).unwrap();
    let config = format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: [alerts.yml]\nscrape_configs:\n  \
         - job_name: tickcast\n    static_configs: [{{targets: ['{}']}}]\n  \
         - job_name: loadgen\n    static_configs: [{{targets: ['127.0.0.1:{lg_port}']}}]\n",
        s.addr
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let prom_port = free_port();
    let prom_addr: std::net::SocketAddr = format!("127.0.0.1:{prom_port}").parse().unwrap();
    let _prom = Killed(
        Command::new(prometheus)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={prom_addr}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Wait until both targets have been scraped often enough for 5 s rates.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = tokio::net::TcpStream::connect(prom_addr).await.is_ok() && {
            let both = prom_query(prom_addr, "count(count_over_time(up[10s]) >= 6)").await;
            let flowing =
                prom_query(prom_addr, "rate(loadgen_messages_received_total[5s]) > 0").await;
            both["data"]["result"][0]["value"][1] == "2"
                && !flowing["data"]["result"].as_array().unwrap().is_empty()
        };
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never had 6 s of samples of both targets with messages flowing"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let mut checked = 0;
    for name in ["tickcast.json", "loadgen.json"] {
        for (title, expr, must_show_data) in queries(&dashboard(name)) {
            let sent = as_grafana_sends(&expr);
            let v = prom_query(prom_addr, &sent).await;
            if must_show_data {
                assert!(
                    !v["data"]["result"].as_array().unwrap().is_empty(),
                    "{name}: panel `{title}` shows no data under load: {sent}"
                );
            }
            checked += 1;
        }
    }
    let alerts = alert_exprs();
    assert_eq!(alerts.len(), 5);
    for (alert, expr) in alerts {
        prom_query(prom_addr, &expr).await;
        let _ = alert;
        checked += 1;
    }
    assert!(checked > 30, "{checked} queries");
    // The rules were loaded and evaluated by Prometheus itself too.
    let (_, rules) = http_get(prom_addr, "/api/v1/rules", &[]).await;
    let rules: Value = serde_json::from_str(&rules).unwrap_or_else(|e| panic!("{e}: {rules:?}"));
    let group = &rules["data"]["groups"][0];
    assert_eq!(group["rules"].as_array().unwrap().len(), 5);
    for r in group["rules"].as_array().unwrap() {
        assert_eq!(r["health"], "ok", "{r}");
    }
}
