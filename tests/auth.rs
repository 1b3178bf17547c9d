//! Authentication paths of protocol §2: header, one-time query token,
//! first-message auth, entitlements, expiry (4401) and refresh.
mod common;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const SECRET: &str = "test-secret-0123456789";

fn token(args: &[&str]) -> String {
    cli_token(SECRET, args)
}

fn server(extra: &[&str]) -> Server {
    let mut flags = vec!["--feed", "tcp://127.0.0.1:0"];
    flags.extend_from_slice(extra);
    Server::start_with_env(&flags, &[("TICKCAST_AUTH_SECRET", SECRET)])
}

async fn upgrade_status(s: &Server, path: &str, headers: &[(&str, &str)]) -> u16 {
    let stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    match RawWs::handshake(stream, path, headers).await {
        Ok(_) => 101,
        Err((status, _)) => status,
    }
}

#[tokio::test]
async fn without_a_secret_auth_is_off_and_says_so() {
    let mut s = Server::start(&["--feed", "tcp://127.0.0.1:0"]);
    assert!(s
        .log()
        .iter()
        .any(|l| l.contains("WARN") && l.contains("authentication is OFF")));
    s.ws_welcomed().await;
}

#[tokio::test]
async fn header_tokens_are_accepted_and_bad_ones_refused_before_upgrade() {
    let s = server(&[]);
    let good = token(&["--sub", "alice", "--ttl", "1h"]);
    let mut req = s.url("/ws").into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {good}").parse().unwrap());
    let mut c = Client::try_connect(req).await.expect("accepted");
    c.expect_type("welcome").await;

    let other = cli_token("another-secret", &["--sub", "mallory"]);
    for bad in [other.as_str(), "garbage", "a.b.c"] {
        assert_eq!(
            upgrade_status(&s, "/ws", &[("Authorization", &format!("Bearer {bad}"))]).await,
            401
        );
    }
    assert_eq!(upgrade_status(&s, "/ws", &[]).await, 401, "missing token");
    assert_eq!(
        s.metric("tickcast_connections_total{result=\"unauthorized\"}")
            .await,
        4.0
    );
    assert_eq!(
        s.metric("tickcast_connections_total{result=\"accepted\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let s = server(&[]);
    let t = token(&["--sub", "alice", "--ttl", "1s"]);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        upgrade_status(&s, "/ws", &[("Authorization", &format!("Bearer {t}"))]).await,
        401
    );
}

#[tokio::test]
async fn query_tokens_are_one_time_and_short_lived() {
    let s = server(&[]);
    let t = token(&["--sub", "alice", "--ttl", "60s"]);
    assert_eq!(
        upgrade_status(&s, &format!("/ws?token={t}"), &[]).await,
        101
    );
    assert_eq!(
        upgrade_status(&s, &format!("/ws?token={t}"), &[]).await,
        401,
        "replayed jti"
    );
    let long = token(&["--sub", "alice", "--ttl", "301s"]);
    assert_eq!(
        upgrade_status(&s, &format!("/ws?token={long}"), &[]).await,
        401,
        "lives too long"
    );
    let ok = token(&["--sub", "alice", "--ttl", "300s"]);
    assert_eq!(
        upgrade_status(&s, &format!("/ws?token={ok}"), &[]).await,
        101
    );
}

#[tokio::test]
async fn first_message_auth_when_allowed() {
    let s = server(&["--allow-auth-message", "--auth-timeout", "1s"]);
    let mut raw = RawWs::connect(s.addr).await;
    raw.send_text(&json!({"type":"subscribe","id":1,"payload":{"symbols":["AAPL"]}}).to_string())
        .await;
    let e = raw.next_json().await;
    assert_eq!(
        (e["type"].as_str(), e["id"].as_i64()),
        (Some("error"), Some(1)),
        "no welcome before auth: {e}"
    );
    assert_eq!(e["payload"]["code"], "unauthorized");
    let t = token(&["--sub", "alice"]);
    raw.send_text(&json!({"type":"auth","id":2,"payload":{"token":t}}).to_string())
        .await;
    assert_eq!(raw.next_json().await["type"], "welcome");
    raw.send_text(&json!({"type":"subscribe","id":3,"payload":{"symbols":["AAPL"]}}).to_string())
        .await;
    assert_eq!(raw.next_json().await["type"], "subscribed");

    let mut bad = RawWs::connect(s.addr).await;
    bad.send_text(&json!({"type":"auth","payload":{"token":"nope"}}).to_string())
        .await;
    assert_eq!(bad.close_code().await, 4401);

    let mut silent = RawWs::connect(s.addr).await;
    let start = Instant::now();
    assert_eq!(silent.close_code().await, 4401);
    assert!(start.elapsed() >= Duration::from_millis(900));
    s.wait_metric("tickcast_disconnects_total{reason=\"auth\"}", |v| v == 2.0)
        .await;
}

#[tokio::test]
async fn without_allow_auth_message_a_missing_token_is_401() {
    let s = server(&[]);
    assert_eq!(upgrade_status(&s, "/ws", &[]).await, 401);
}

#[tokio::test]
async fn entitlements_forbid_per_symbol_with_prefixes() {
    let s = server(&[]);
    let t = token(&["--sub", "alice", "--symbols", "AAPL,FX:*"]);
    let mut c = Client::connect(&s.url(&format!("/ws?token={t}"))).await;
    c.expect_type("welcome").await;
    c.send(json!({"type":"subscribe","id":1,"payload":{"symbols":["AAPL","FX:EUR/USD","TSLA"]}}))
        .await;
    let sub = c.expect_type("subscribed").await;
    assert_eq!(sub["payload"]["symbols"], json!(["AAPL", "FX:EUR/USD"]));
    let e = c.expect_type("error").await;
    assert_eq!(
        e,
        json!({"type":"error","id":1,"payload":{"code":"forbidden","symbol":"TSLA","symbols":["TSLA"],"message":"not entitled to `TSLA`"}})
    );
}

#[tokio::test]
async fn an_expiring_token_closes_4401_unless_refreshed() {
    let s = server(&[]);
    let short = token(&["--sub", "alice", "--ttl", "2s"]);
    let mut expiring = Client::connect(&s.url(&format!("/ws?token={short}"))).await;
    expiring.expect_type("welcome").await;

    let short2 = token(&["--sub", "alice", "--ttl", "2s"]);
    let mut refreshed = Client::connect(&s.url(&format!("/ws?token={short2}"))).await;
    refreshed.expect_type("welcome").await;
    let mallory = token(&["--sub", "mallory", "--ttl", "1h"]);
    refreshed
        .send(json!({"type":"auth","id":1,"payload":{"token":mallory}}))
        .await;
    let e = refreshed.expect_type("error").await;
    assert_eq!(
        (e["id"].as_i64(), e["payload"]["code"].as_str()),
        (Some(1), Some("unauthorized"))
    );
    let fresh = token(&["--sub", "alice", "--ttl", "1h"]);
    refreshed
        .send(json!({"type":"auth","id":2,"payload":{"token":fresh}}))
        .await;
    let ok = refreshed.expect_type("authenticated").await;
    assert_eq!(
        (ok["id"].as_i64(), ok["payload"]["sub"].as_str()),
        (Some(2), Some("alice"))
    );

    assert_eq!(expiring.close_code().await, 4401);
    // Past the first token's expiry, the refreshed connection still answers.
    refreshed.send(json!({"type":"ping","id":3})).await;
    assert_eq!(refreshed.expect_type("pong").await["id"], 3);
}

#[tokio::test]
async fn snapshot_uses_the_same_authentication() {
    let s = server(&[]);
    let mut p = s.publisher();
    p.tick(json!({"symbol":"AAPL","bid":1.0}));
    p.tick(json!({"symbol":"TSLA","bid":2.0}));
    let t = token(&[
        "--sub",
        "alice",
        "--symbols",
        "AAPL",
        "--ttl",
        "1h",
        "--reusable",
    ]);
    let bearer = format!("Bearer {t}");
    assert_eq!(http_get(s.addr, "/snapshot?symbols=AAPL", &[]).await.0, 401);
    let (status, body) = http_get(
        s.addr,
        "/snapshot?symbols=TSLA",
        &[("Authorization", &bearer)],
    )
    .await;
    assert_eq!(status, 403);
    assert!(body.contains("TSLA"));
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = http_get(s.addr, "/snapshot", &[("Authorization", &bearer)]).await;
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if v.as_array().unwrap().len() == 1 {
            assert_eq!(v[0]["symbol"], "AAPL", "only entitled symbols are listed");
            break;
        }
        assert!(Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
