//! A worker process: holds its share of the connections on one thread and
//! reports to the coordinator.
//!
//! One single-threaded runtime per process, so connections share the
//! histograms without locks; the coordinator runs as many processes as the
//! open-files limit and the cores call for. The coordinator talks over
//! stdin (`measure`, `stop`) and the worker answers with one JSON report per
//! line on stdout: every second, and a final one on `stop`.

use crate::plan::WorkerSpec;
use crate::stats::Stats;
use std::cell::{Cell, RefCell};
use std::io::Write;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;

/// What the connections of one worker share.
pub struct Shared {
    pub spec: WorkerSpec,
    pub cdf: Vec<f64>,
    pub stats: RefCell<Stats>,
    pub measuring: Cell<bool>,
    /// Makes each connection attempt's token (a server with auth on).
    pub minter: Option<crate::token::Minter>,
}

pub fn run(spec: WorkerSpec) -> ! {
    // Ctrl-C reaches the whole process group: the coordinator decides when workers stop.
    // SAFETY: setting a signal's disposition to ignore has no preconditions.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    raise_open_files_limit();
    let minter = spec.tokens.map(|t| {
        let secret = std::env::var_os(crate::token::SECRET_VAR).unwrap_or_else(|| {
            eprintln!(
                "loadgen worker: tokens asked for but {} is not set",
                crate::token::SECRET_VAR
            );
            std::process::exit(2)
        });
        use std::os::unix::ffi::OsStrExt;
        crate::token::Minter::new(secret.as_bytes().to_vec(), t)
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let shared = Rc::new(Shared {
            cdf: crate::universe::zipf_cdf(spec.universe.len(), spec.zipf),
            spec,
            stats: RefCell::new(Stats::default()),
            measuring: Cell::new(false),
            minter,
        });
        tokio::task::spawn_local(ramp(shared.clone()));
        tokio::task::spawn_local(watch_loop_lag(shared.clone()));
        tokio::task::spawn_local(report_every_second(shared.clone()));
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        loop {
            match lines.next_line().await {
                Ok(Some(cmd)) if cmd.trim() == "measure" => {
                    shared.stats.borrow_mut().reset_measurement();
                    shared.measuring.set(true);
                }
                Ok(Some(cmd)) if cmd.trim() == "stop" => {
                    shared.measuring.set(false);
                    report(&shared, true);
                    std::process::exit(0);
                }
                Ok(Some(_)) => {}
                // The coordinator is gone.
                _ => std::process::exit(1),
            }
        }
    })
}

/// Opens the connections at this worker's share of `--ramp`.
async fn ramp(shared: Rc<Shared>) {
    let spec = &shared.spec;
    let start = Instant::now();
    let mut opened = 0;
    while opened < spec.connections {
        let due = ((start.elapsed().as_secs_f64() * spec.ramp) as u64 + 1).min(spec.connections);
        while opened < due {
            tokio::task::spawn_local(crate::conn::run(
                shared.clone(),
                spec.first_connection + opened,
            ));
            opened += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Measures how late a 50 ms timer fires: when the loop cannot keep up,
/// latency figures include loadgen's own delay, and the report says so.
async fn watch_loop_lag(shared: Rc<Shared>) {
    let period = Duration::from_millis(50);
    loop {
        let before = Instant::now();
        tokio::time::sleep(period).await;
        let lag = before.elapsed().saturating_sub(period).as_millis() as u64;
        if shared.measuring.get() {
            let mut stats = shared.stats.borrow_mut();
            stats.counters.loop_lag_max_ms = stats.counters.loop_lag_max_ms.max(lag);
            if lag > 50 {
                stats.counters.loop_lag_over_50ms += 1;
            }
        }
    }
}

/// Reports every second; every 200 ms while connections are still being
/// opened, so that the coordinator sees the end of the ramp promptly.
async fn report_every_second(shared: Rc<Shared>) {
    loop {
        let settled = shared.stats.borrow().counters.settled_at_us > 0;
        tokio::time::sleep(Duration::from_millis(if settled { 1000 } else { 200 })).await;
        report(&shared, false);
    }
}

/// Stamps the moment every connection of this worker is up or has failed.
pub fn note_settled(shared: &Shared) {
    let mut stats = shared.stats.borrow_mut();
    let c = &mut stats.counters;
    if c.settled_at_us == 0 && c.established + c.failed >= shared.spec.connections {
        c.settled_at_us = crate::now_us();
    }
}

fn report(shared: &Shared, final_report: bool) {
    let sources: Vec<String> = shared.spec.sources.iter().map(|s| s.to_string()).collect();
    let mut stats = shared.stats.borrow_mut();
    let (rss, cpu_ms) = own_usage();
    stats.counters.rss_bytes = rss;
    stats.counters.cpu_ms = cpu_ms;
    let r = stats.report(std::process::id(), &sources, final_report);
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, &r);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// This process's resident memory (bytes) and CPU time (ms).
fn own_usage() -> (u64, u64) {
    // SAFETY: sysconf only reads system constants.
    let (page, hz) = unsafe {
        (
            libc::sysconf(libc::_SC_PAGESIZE) as u64,
            libc::sysconf(libc::_SC_CLK_TCK) as u64,
        )
    };
    let rss = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page);
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(") ")?.1.to_string();
            let f: Vec<u64> = rest.split(' ').filter_map(|v| v.parse().ok()).collect();
            // utime and stime are fields 14 and 15; `rest` starts at field 3 (state, not a number).
            Some((f.get(10)? + f.get(11)?) * 1000 / hz.max(1))
        })
        .unwrap_or(0);
    (rss, cpu)
}

fn raise_open_files_limit() {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}
