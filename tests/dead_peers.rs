//! Dead peers, short (RELIABILITY.md has the run at 15,000): clients in a
//! network namespace of their own vanish without a FIN (their link goes
//! dark, then their process is killed); the server finds every one by its
//! heartbeats within ping interval + pong timeout, and keeps clients that
//! are alive. Runs `scripts/dead-peers.py` (root: ip netns).
mod common;
use common::*;
use std::process::Command;

#[test]
fn clients_gone_without_a_fin_are_dropped_within_ping_plus_pong() {
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/dead-peers.py"
        ))
        .args(["--bin", binary(), "--connections", "300"])
        .args(["--ping-interval", "1", "--pong-timeout", "1"])
        .args([
            "--net",
            &format!("10.213.{}", 100 + std::process::id() % 100),
        ])
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let r: serde_json::Value = serde_json::from_str(stdout.trim()).expect(&stdout);
    assert_eq!(r["left"], 0.0, "{r}");
    let found = r["all_found_s"].as_f64().unwrap();
    // The bound, and a little for the last check to run and be scraped.
    assert!(found <= 2.0 + 1.0, "found after {found} s: {r}");
    let by = &r["dropped_by"];
    assert_eq!(
        by["heartbeat"].as_f64().unwrap() + by["client"].as_f64().unwrap(),
        300.0,
        "{r}"
    );
}
