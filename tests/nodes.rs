//! Node identity and shared ports: `--node` in `welcome` and the metrics,
//! `--reuse-port` for several processes on one address.
mod common;
use common::*;
use std::collections::HashMap;

#[tokio::test]
async fn the_node_name_shows_in_welcome_and_on_every_series() {
    let s = Server::start(&["--feed", "tcp://127.0.0.1:0", "--node", "edge-7"]);
    let mut c = s.ws().await;
    assert_eq!(c.expect_type("welcome").await["payload"]["node"], "edge-7");
    let (_, page) = s.get("/metrics").await;
    let tickcast_samples: Vec<&str> = page
        .lines()
        .filter(|l| l.starts_with("tickcast_"))
        .collect();
    assert!(tickcast_samples.len() > 50);
    assert!(
        tickcast_samples
            .iter()
            .all(|l| l.contains("node=\"edge-7\"")),
        "every tickcast series"
    );
    let bad = std::process::Command::new(binary())
        .args(["--node", "no spaces"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--node"));
}

#[tokio::test]
async fn without_a_name_the_node_is_host_and_pid() {
    let s = Server::start(&["--feed", "tcp://127.0.0.1:0"]);
    let mut c = s.ws().await;
    let node = c.expect_type("welcome").await["payload"]["node"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(node.ends_with(&format!("-{}", s.pid())), "{node}");
}

#[tokio::test]
async fn reuse_port_lets_two_processes_serve_one_address() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let _a = Server::start_at(
        &listen,
        &["--feed", "tcp://127.0.0.1:0", "--reuse-port", "--node", "a"],
        &[],
    );
    let b = Server::start_at(
        &listen,
        &["--feed", "tcp://127.0.0.1:0", "--reuse-port", "--node", "b"],
        &[],
    );
    let mut seen: HashMap<String, u32> = HashMap::new();
    let mut clients = Vec::new();
    for _ in 0..40 {
        let mut c = Client::connect(&format!("ws://{listen}/ws")).await;
        let node = c.expect_type("welcome").await["payload"]["node"]
            .as_str()
            .unwrap()
            .to_string();
        *seen.entry(node).or_default() += 1;
        clients.push(c);
    }
    assert_eq!(
        seen.len(),
        2,
        "the kernel spreads connections over both: {seen:?}"
    );
    assert_eq!(seen.values().sum::<u32>(), 40);
    b.wait_metric("tickcast_connections", |v| v == seen["b"] as f64)
        .await;
}

#[tokio::test]
async fn metrics_listen_is_this_node_alone() {
    let port = free_port();
    let own = format!("127.0.0.1:{port}");
    let _s = Server::start(&[
        "--feed",
        "tcp://127.0.0.1:0",
        "--node",
        "n1",
        "--metrics-listen",
        &own,
    ]);
    let (status, page) = http_get(own.parse().unwrap(), "/metrics", &[]).await;
    assert_eq!(status, 200);
    assert!(page.contains("tickcast_ready{node=\"n1\"} 1"), "{page}");
    assert_eq!(http_get(own.parse().unwrap(), "/readyz", &[]).await.0, 200);
}
