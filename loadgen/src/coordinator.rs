//! The coordinator: plans the run, starts the workers, shows progress,
//! drives the feed, and merges the workers' results into one report.
//!
//! Phases: connect (until every connection is up or has failed), measure
//! (`--duration`, with the feed driven if asked), stop (final reports, merged
//! exactly). Ctrl-C ends the current phase early and still prints what it has.

use crate::cli::Args;
use crate::plan::{self, WorkerSpec};
use crate::report::{Run, ServerFigures};
use crate::stats::{self, WorkerReport};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    latest: Option<WorkerReport>,
}

impl Worker {
    fn tell(&mut self, command: &str) {
        let _ = writeln!(self.stdin, "{command}");
        let _ = self.stdin.flush();
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("loadgen: {message}");
    ExitCode::from(1)
}

pub fn run(args: Args) -> ExitCode {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t) };
    let secret = match tickcast::auth::load_secret(args.auth_secret_file.as_deref()) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let tokens = secret.as_ref().map(|_| crate::token::TokenSpec {
        ttl_secs: args.token_ttl.as_secs().max(1),
        in_query: args.token_in == "query",
    });
    let minter = secret
        .clone()
        .zip(tokens)
        .map(|(s, t)| crate::token::Minter::new(s, t));
    let universe = match universe(&args, minter.as_ref()) {
        Ok(u) => u,
        Err(e) => return fail(&e),
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let workers_n = plan::worker_count(args.procs, args.connections, cores);
    let sources = plan::sources(
        args.source_addrs.clone(),
        args.connections,
        args.urls.len(),
        fastrand::u8(2..=200),
    );
    let template = WorkerSpec {
        index: 0,
        urls: args.urls.clone(),
        connections: args.connections,
        first_connection: 0,
        ramp: args.ramp,
        sources: vec![],
        universe: universe.clone(),
        symbols_per_conn: args.symbols_per_conn,
        zipf: args.zipf,
        reconnect: !args.no_reconnect,
        tokens,
    };
    let live = match args.metrics_listen.map(crate::live::serve).transpose() {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    let urls: Vec<String> = args.urls.iter().map(|u| u.to_string()).collect();
    eprintln!(
        "loadgen: {} connections to {} from {} source addresses ({}…), {} workers, {} of {} symbols each",
        args.connections,
        urls.join(", "),
        sources.len(),
        sources[0],
        workers_n,
        args.symbols_per_conn,
        universe.len()
    );

    let (tx, rx) = mpsc::channel::<(usize, WorkerReport)>();
    let mut workers = Vec::new();
    for spec in plan::split(&template, workers_n, &sources) {
        match spawn_worker(&spec, workers.len(), tx.clone(), secret.as_deref()) {
            Ok(w) => workers.push(w),
            Err(e) => return fail(&e),
        }
    }
    drop(tx);
    let progress = Progress::new(args.connections);
    let started = Instant::now();
    let started_us = crate::now_us();

    // Connect.
    let ramp_deadline = started
        + Duration::from_secs_f64(args.connections as f64 / args.ramp)
        + Duration::from_secs(60);
    loop {
        collect(&rx, &mut workers, Duration::from_millis(100));
        let totals = totals(&workers);
        progress.show(&totals, started.elapsed());
        publish(&live, &workers, args.connections);
        let settled = totals.established + totals.failed >= args.connections;
        if settled
            || interrupted()
            || Instant::now() > ramp_deadline
            || workers.iter_mut().all(|w| exited(&mut w.child))
        {
            break;
        }
    }
    let connected = totals(&workers);
    let connect_s = if connected.settled_at_us > started_us {
        (connected.settled_at_us - started_us) as f64 / 1e6
    } else {
        started.elapsed().as_secs_f64()
    };
    progress.done();
    if connected.established == 0 {
        let why = connected
            .failures
            .into_iter()
            .map(|(k, v)| format!("{k} ({v})"))
            .collect::<Vec<_>>()
            .join(", ");
        stop_all(&mut workers);
        return fail(&format!(
            "no connection to {} could be established: {why}",
            urls.join(", ")
        ));
    }

    // Measure.
    let servers_before = scrape_servers(&args);
    for w in &mut workers {
        w.tell("measure");
    }
    let measure_start = Instant::now();
    let stop_feed = Arc::new(AtomicBool::new(false));
    let feed = args.feed.clone().map(|addr| {
        let (rate, universe, stop) = (args.feed_rate, universe.clone(), stop_feed.clone());
        std::thread::spawn(move || crate::feed::drive(&addr, rate, &universe, stop))
    });
    let mut shown = 0;
    while measure_start.elapsed() < args.duration && !interrupted() {
        collect(&rx, &mut workers, Duration::from_millis(250));
        publish(&live, &workers, args.connections);
        let second = measure_start.elapsed().as_secs();
        if second >= shown + 5 {
            shown = second;
            let t = totals(&workers);
            progress.line(&format!(
                "measuring: {second} s, {} messages, {} established, {} gaps",
                t.received, t.established, t.gaps
            ));
        }
    }
    let duration_s = measure_start.elapsed().as_secs_f64();
    stop_feed.store(true, Ordering::Release);
    let feed_sent = match feed.map(|h| h.join()) {
        Some(Ok(Ok(sent))) => Some(sent),
        Some(Ok(Err(e))) => {
            eprintln!("loadgen: {e}");
            None
        }
        _ => None,
    };
    if feed_sent.is_some() {
        // Let the last ticks of the feed arrive before counting.
        std::thread::sleep(Duration::from_secs(1));
    }
    let servers_after = scrape_servers(&args);

    // Stop and merge.
    for w in &mut workers {
        w.tell("stop");
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while workers
        .iter()
        .any(|w| !w.latest.as_ref().is_some_and(|r| r.final_report))
        && Instant::now() < deadline
    {
        collect(&rx, &mut workers, Duration::from_millis(100));
        if workers.iter_mut().all(|w| exited(&mut w.child)) {
            collect(&rx, &mut workers, Duration::from_millis(200));
            break;
        }
    }
    let reports: Vec<WorkerReport> = workers.iter().filter_map(|w| w.latest.clone()).collect();
    stop_all(&mut workers);
    let merged = match stats::merge(&reports) {
        Ok(m) => m,
        Err(e) => return fail(&e),
    };
    let run = Run {
        target: args.connections,
        workers: reports
            .iter()
            .map(|r| (r.pid, r.source_addrs.clone(), r.counters.established))
            .collect(),
        connect_s,
        duration_s,
        stats: merged,
        feed_sent,
        servers: server_deltas(servers_before, servers_after),
    };
    print!("{}", run.human());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&run.json()).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text) {
            return fail(&format!("--json {}: {e}", path.display()));
        }
    }
    ExitCode::SUCCESS
}

fn spawn_worker(
    spec: &WorkerSpec,
    index: usize,
    tx: mpsc::Sender<(usize, WorkerReport)>,
    secret: Option<&[u8]>,
) -> Result<Worker, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find my own binary: {e}"))?;
    let spec_json = serde_json::to_string(spec).map_err(|e| e.to_string())?;
    let mut command = Command::new(exe);
    if let Some(secret) = secret {
        command.env(
            crate::token::SECRET_VAR,
            std::ffi::OsStr::from_bytes(secret),
        );
    }
    let mut child = command
        .arg("--worker-spec")
        .arg(spec_json)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start a worker: {e}"))?;
    let stdout = child.stdout.take().ok_or("worker without stdout")?;
    let stdin = child.stdin.take().ok_or("worker without stdin")?;
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(r) = serde_json::from_str::<WorkerReport>(&line) {
                if tx.send((index, r)).is_err() {
                    break;
                }
            }
        }
    });
    Ok(Worker {
        child,
        stdin,
        latest: None,
    })
}

fn collect(rx: &mpsc::Receiver<(usize, WorkerReport)>, workers: &mut [Worker], wait: Duration) {
    if let Ok((i, r)) = rx.recv_timeout(wait) {
        workers[i].latest = Some(r);
    }
    while let Ok((i, r)) = rx.try_recv() {
        workers[i].latest = Some(r);
    }
}

fn totals(workers: &[Worker]) -> stats::Counters {
    let mut t = stats::Counters::default();
    for r in workers.iter().filter_map(|w| w.latest.as_ref()) {
        t.add(&r.counters);
    }
    t
}

fn publish(live: &Option<crate::live::Page>, workers: &[Worker], target: u64) {
    let Some(page) = live else { return };
    let reports: Vec<WorkerReport> = workers.iter().filter_map(|w| w.latest.clone()).collect();
    if let Ok(merged) = stats::merge(&reports) {
        if let Ok(mut p) = page.lock() {
            *p = crate::live::render(&merged, target, workers.len());
        }
    }
}

fn exited(child: &mut Child) -> bool {
    matches!(child.try_wait(), Ok(Some(_)))
}

fn stop_all(workers: &mut [Worker]) {
    for w in workers.iter_mut() {
        w.tell("stop");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for w in workers.iter_mut() {
        while !exited(&mut w.child) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = w.child.kill();
        let _ = w.child.wait();
    }
}

/// The symbols to subscribe to: given, made up (when driving the feed), or the server's.
fn universe(args: &Args, minter: Option<&crate::token::Minter>) -> Result<Vec<String>, String> {
    if !args.symbols.is_empty() {
        return Ok(args.symbols.clone());
    }
    if args.feed.is_some() {
        return Ok(crate::universe::made_up(args.universe));
    }
    let url = &args.urls[0];
    let path = match minter {
        Some(m) => format!("/snapshot?token={}", m.mint_for_query(0)),
        None => "/snapshot".to_string(),
    };
    // Errors name the path without the token.
    let body = http_get(&url.authority(), &path).map_err(|e| e.replace(&path, "/snapshot"))?;
    let list: Vec<serde_json::Value> = serde_json::from_str(&body)
        .map_err(|e| format!("{url}: /snapshot is not a JSON array: {e}"))?;
    let names: Vec<String> = list
        .iter()
        .filter_map(|p| p["symbol"].as_str().map(str::to_string))
        .collect();
    if names.is_empty() {
        return Err(format!(
            "the server at {url} has no symbols yet (its /snapshot is empty): pass --symbols"
        ));
    }
    Ok(names)
}

/// A plain HTTP GET; the body of a 200 answer.
fn http_get(authority: &str, path: &str) -> Result<String, String> {
    let mut s = std::net::TcpStream::connect(authority)
        .map_err(|e| format!("cannot reach {authority}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)
        .map_err(|e| format!("{authority}{path}: {e}"))?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{authority}{path}: not HTTP"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "{authority}{path}: {}",
            head.lines().next().unwrap_or("")
        ));
    }
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    if chunked {
        dechunk(body).ok_or_else(|| format!("{authority}{path}: a chunked body cut short"))
    } else {
        Ok(body.to_string())
    }
}

/// Decodes a `Transfer-Encoding: chunked` body (the server writes large
/// answers such as `/snapshot` in chunks).
fn dechunk(mut rest: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let n = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if n == 0 {
            return Some(out);
        }
        out.push_str(after.get(..n)?);
        rest = after.get(n..)?.strip_prefix("\r\n")?;
    }
}

/// Each server's own figures (once per distinct host:port).
fn scrape_servers(args: &Args) -> Vec<ServerFigures> {
    let mut seen = std::collections::BTreeSet::new();
    args.urls
        .iter()
        .filter(|u| seen.insert(u.authority()))
        .filter_map(|u| {
            let text = http_get(&u.authority(), "/metrics").ok()?;
            let value = |name: &str| tickcast::metrics::sample(&text, name).unwrap_or(0.0);
            Some(ServerFigures {
                url: u.to_string(),
                cpu_seconds: value("process_cpu_seconds_total"),
                rss_bytes: value("process_resident_memory_bytes"),
                connections: value("tickcast_connections"),
                messages_sent: value("tickcast_messages_sent_total"),
                dropped: value("tickcast_dropped_total"),
                writes: value("tickcast_writes_total"),
                frames_written: value("tickcast_frames_written_total"),
            })
        })
        .collect()
}

/// CPU, messages and drops during the measurement; RSS and connections at its end.
fn server_deltas(before: Vec<ServerFigures>, after: Vec<ServerFigures>) -> Vec<ServerFigures> {
    let before: BTreeMap<String, ServerFigures> =
        before.into_iter().map(|s| (s.url.clone(), s)).collect();
    after
        .into_iter()
        .map(|a| {
            let b = before.get(&a.url).cloned().unwrap_or_default();
            ServerFigures {
                cpu_seconds: a.cpu_seconds - b.cpu_seconds,
                messages_sent: a.messages_sent - b.messages_sent,
                dropped: a.dropped - b.dropped,
                writes: a.writes - b.writes,
                frames_written: a.frames_written - b.frames_written,
                ..a
            }
        })
        .collect()
}

/// Connection progress: a bar on a terminal, plain lines otherwise.
struct Progress {
    target: u64,
    tty: bool,
}

impl Progress {
    fn new(target: u64) -> Progress {
        Progress {
            target,
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn show(&self, t: &stats::Counters, elapsed: Duration) {
        let done = t.established + t.failed;
        if self.tty {
            let width = 30;
            let filled = (done * width / self.target.max(1)).min(width) as usize;
            eprint!(
                "\r[{}{}] {}/{} connected, {} failed, {:.1} s ",
                "#".repeat(filled),
                " ".repeat(width as usize - filled),
                t.established,
                self.target,
                t.failed,
                elapsed.as_secs_f64()
            );
        } else if elapsed.as_millis() % 1000 < 100 {
            self.line(&format!(
                "connecting: {}/{} established, {} failed, {:.1} s",
                t.established,
                self.target,
                t.failed,
                elapsed.as_secs_f64()
            ));
        }
    }

    fn line(&self, text: &str) {
        eprintln!("loadgen: {text}");
    }

    fn done(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_decoded() {
        assert_eq!(dechunk("2\r\n[]\r\n0\r\n\r\n").as_deref(), Some("[]"));
        assert_eq!(
            dechunk("3\r\n[1,\r\na\r\n2,3,4,5,6]\r\n0\r\n\r\n").as_deref(),
            Some("[1,2,3,4,5,6]")
        );
        assert_eq!(dechunk("5\r\n[1,"), None, "cut short");
    }
}
