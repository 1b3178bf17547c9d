//! Command line (protocol §9): bad flags exit 2 naming the problem; env variables; `tickcast token`.
mod common;
use common::*;
use std::process::Command;

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(binary());
    cmd.args(args).env_remove("TICKCAST_AUTH_SECRET");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_flags_and_values_exit_2_naming_them() {
    for (args, named) in [
        (&["--bogus"][..], "--bogus"),
        (&["--coalesce", "10x"], "--coalesce"),
        (&["--coalesce", "0s"], "--coalesce"),
        (&["--feed", "udp://1.2.3.4:5"], "--feed"),
        (&["--queue", "0"], "--queue"),
        (&["--slow-consumer", "maybe"], "--slow-consumer"),
        (&["--listen", "nowhere"], "--listen"),
        (&["--rate", "0"], "--rate"),
        (&["--max-delay", "2s"], "--max-delay"),
        (&["--max-delay", "1x"], "--max-delay"),
        (
            &[
                "--feed",
                "file:/definitely/not/here.ndjson",
                "--listen",
                "127.0.0.1:0",
            ],
            "file:/definitely/not/here.ndjson",
        ),
        (
            &[
                "--auth-secret-file",
                "/definitely/not/here",
                "--listen",
                "127.0.0.1:0",
            ],
            "--auth-secret-file",
        ),
    ] {
        let (code, _, err) = run(args, &[]);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(named), "{args:?} should name {named}: {err}");
    }
}

#[test]
fn a_taken_port_is_reported() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, _, err) = run(&["--listen", &addr], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("--listen") && err.contains(&addr), "{err}");
}

#[test]
fn help_explains_the_flags() {
    let (code, out, _) = run(&["--help"], &[]);
    assert_eq!(code, 0);
    for flag in [
        "--feed",
        "--coalesce",
        "--slow-consumer",
        "--ping-interval",
        "--auth-secret-file",
        "--drain-timeout",
    ] {
        assert!(out.contains(flag), "{flag} missing from --help");
    }
    assert!(out.contains("token"), "subcommand listed");
}

#[test]
fn token_needs_a_secret_and_prints_a_jwt() {
    let (code, _, err) = run(&["token", "--sub", "alice"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("TICKCAST_AUTH_SECRET"), "{err}");
    let (code, out, err) = run(
        &[
            "token",
            "--sub",
            "alice",
            "--symbols",
            "AAPL,FX:*",
            "--ttl",
            "60s",
        ],
        &[("TICKCAST_AUTH_SECRET", "s3cret")],
    );
    assert_eq!(code, 0, "{err}");
    let parts: Vec<&str> = out.trim().split('.').collect();
    assert_eq!(parts.len(), 3);
    use base64::Engine;
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["symbols"], serde_json::json!(["AAPL", "FX:*"]));
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        60
    );
    assert!(claims["jti"].as_str().unwrap().len() >= 16);
    let (code, _, err) = run(
        &["token", "--sub", "a", "--symbols", "BAD NAME"],
        &[("TICKCAST_AUTH_SECRET", "s")],
    );
    assert_eq!(code, 2);
    assert!(err.contains("BAD NAME"));
}

#[tokio::test]
async fn every_flag_has_an_environment_variable() {
    let s = Server::start_with_env(
        &["--symbols", "20"],
        &[
            ("TICKCAST_PING_INTERVAL", "1500ms"),
            ("TICKCAST_MAX_SYMBOLS", "7"),
        ],
    );
    let mut c = s.ws().await;
    let w = c.expect_type("welcome").await;
    assert_eq!(w["payload"]["heartbeat_ms"], 1500);
    assert_eq!(w["payload"]["max_symbols"], 7);
}

#[test]
fn switches_from_the_environment_take_the_usual_spellings() {
    for value in ["1", "yes", "on", "true", "0", "no", "off", "false"] {
        let (code, _, err) = run(
            &[
                "--listen",
                "127.0.0.1:0",
                "--feed",
                "synthetic",
                "--max-connections",
                "0",
            ],
            &[("TICKCAST_REUSE_PORT", value)],
        );
        // --max-connections 0 is refused after the environment was read: a
        // quick exit that shows the switch itself was accepted.
        assert_eq!(code, 2, "{value}: {err}");
        assert!(err.contains("--max-connections"), "{value}: {err}");
        assert!(!err.contains("TICKCAST_REUSE_PORT"), "{value}: {err}");
    }
    let (code, _, err) = run(
        &["--listen", "127.0.0.1:0"],
        &[("TICKCAST_REUSE_PORT", "maybe")],
    );
    assert_eq!(code, 2);
    assert!(err.contains("TICKCAST_REUSE_PORT"), "{err}");
}

#[test]
fn a_bad_value_from_the_environment_names_the_variable() {
    for (var, value) in [
        ("TICKCAST_QUEUE", "abc"),
        ("TICKCAST_COALESCE", "fast"),
        ("TICKCAST_ALLOWED_ORIGINS", "example.com"),
        ("TICKCAST_ALLOW_AUTH_MESSAGE", "perhaps"),
    ] {
        let (code, _, err) = run(&["--listen", "127.0.0.1:0"], &[(var, value)]);
        assert_eq!(code, 2, "{var}: {err}");
        assert!(err.contains(var), "{var} should be named: {err}");
    }
    // On the command line, the flag is what is named.
    let (code, _, err) = run(&["--queue", "abc"], &[("TICKCAST_QUEUE", "abc")]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--queue") && !err.contains("TICKCAST_QUEUE"),
        "{err}"
    );
}

#[test]
fn help_names_the_secret_variable() {
    let (code, out, _) = run(&["--help"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("TICKCAST_AUTH_SECRET"), "{out}");
}
