//! The most hostile token holder: replaying one-time tokens on another path,
//! refreshing to keep symbols the new token no longer allows, tokens that
//! are not valid yet or ask for extensions, and the `Bearer` scheme's case.
mod common;
use common::*;
use serde_json::json;
use tickcast::auth::{sign, sign_parts, Claims};

const SECRET: &str = "test-secret-0123456789";

fn server(extra: &[&str]) -> Server {
    let mut flags = vec!["--feed", "tcp://127.0.0.1:0"];
    flags.extend_from_slice(extra);
    Server::start_with_env(&flags, &[("TICKCAST_AUTH_SECRET", SECRET)])
}

fn now() -> u64 {
    now_us() / 1_000_000
}

fn claims(jti: &str) -> Claims {
    Claims {
        sub: "alice".into(),
        exp: now() + 120,
        iat: Some(now()),
        nbf: None,
        jti: Some(jti.into()),
        symbols: None,
    }
}

fn token(c: &Claims) -> String {
    sign(SECRET.as_bytes(), c)
}

async fn upgrade_status(s: &Server, path: &str, headers: &[(&str, &str)]) -> u16 {
    let stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    match RawWs::handshake(stream, path, headers).await {
        Ok(_) => 101,
        Err((status, _)) => status,
    }
}

async fn connect_with_query_token(s: &Server, t: &str) -> RawWs {
    let stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    RawWs::handshake(stream, &format!("/ws?token={t}"), &[])
        .await
        .expect("accepted")
}

#[tokio::test]
async fn a_jti_is_accepted_once_whichever_path_carried_it() {
    let s = server(&["--allow-auth-message"]);
    // Query first, then header, then an auth message.
    let t = token(&claims("once-1"));
    let mut first = connect_with_query_token(&s, &t).await;
    assert_eq!(first.next_json().await["type"], "welcome");
    let bearer = format!("Bearer {t}");
    assert_eq!(
        upgrade_status(&s, "/ws", &[("Authorization", &bearer)]).await,
        401
    );
    first
        .send_text(&json!({"type":"auth","id":1,"payload":{"token":t}}).to_string())
        .await;
    let e = first.next_json().await;
    assert_eq!(
        (e["type"].as_str(), e["payload"]["code"].as_str()),
        (Some("error"), Some("unauthorized"))
    );
    assert!(
        e["payload"]["message"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{e}"
    );
    // First seen in an auth message, then as a query token.
    let t2 = token(&claims("once-2"));
    let mut awaiting = RawWs::connect(s.addr).await;
    awaiting
        .send_text(&json!({"type":"auth","id":1,"payload":{"token":t2}}).to_string())
        .await;
    assert_eq!(awaiting.next_json().await["type"], "welcome");
    assert_eq!(
        upgrade_status(&s, &format!("/ws?token={t2}"), &[]).await,
        401
    );
    // And a header token's jti is spent too.
    let t3 = token(&claims("once-3"));
    let bearer3 = format!("Bearer {t3}");
    assert_eq!(
        upgrade_status(&s, "/ws", &[("Authorization", &bearer3)]).await,
        101
    );
    assert_eq!(
        upgrade_status(&s, &format!("/ws?token={t3}"), &[]).await,
        401
    );
    assert_eq!(
        s.metric("tickcast_auth_failures_total{reason=\"replayed\"}")
            .await,
        4.0
    );
}

#[tokio::test]
async fn a_refresh_with_fewer_symbols_ends_those_subscriptions_at_once() {
    let s = server(&[]);
    let mut c = claims("wide");
    c.symbols = Some(vec!["AAPL".into(), "TSLA".into()]);
    let mut raw = connect_with_query_token(&s, &token(&c)).await;
    let welcome = raw.next_json().await;
    assert_eq!(
        welcome["payload"]["exp"], c.exp,
        "welcome says when the token expires"
    );
    let mut p = s.publisher();
    p.tick(json!({"symbol":"AAPL","bid":1.0}));
    p.tick(json!({"symbol":"TSLA","bid":1.0}));
    s.wait_metric("tickcast_updates_total", |v| v == 2.0).await;
    raw.send_text(
        &json!({"type":"subscribe","id":1,"payload":{"symbols":["AAPL","TSLA"]}}).to_string(),
    )
    .await;
    assert_eq!(raw.next_json().await["type"], "subscribed");
    raw.next_json().await;
    raw.next_json().await;
    let mut narrow = claims("narrow");
    narrow.symbols = Some(vec!["AAPL".into()]);
    raw.send_text(&json!({"type":"auth","id":2,"payload":{"token":token(&narrow)}}).to_string())
        .await;
    assert_eq!(raw.next_json().await["type"], "authenticated");
    let u = raw.next_json().await;
    assert_eq!(
        u,
        json!({"type":"unsubscribed","id":2,"payload":{"symbols":["TSLA"],"reason":"forbidden"}})
    );
    // TSLA is published first: were it still subscribed, it would arrive first.
    p.tick(json!({"symbol":"TSLA","bid":2.0}));
    p.tick(json!({"symbol":"AAPL","bid":2.0}));
    let t = raw.next_json().await;
    assert_eq!(t["payload"]["symbol"], "AAPL", "{t}");
    s.wait_metric("tickcast_subscriptions", |v| v == 1.0).await;
    // Subscribing to it again is refused under the new token.
    raw.send_text(&json!({"type":"subscribe","id":3,"payload":{"symbols":["TSLA"]}}).to_string())
        .await;
    assert_eq!(raw.next_json().await["payload"]["symbols"], json!([]));
    assert_eq!(raw.next_json().await["payload"]["code"], "forbidden");
}

#[tokio::test]
async fn tokens_not_valid_yet_or_with_crit_are_refused_and_bearer_is_any_case() {
    let s = server(&[]);
    let bearer = |t: &str| format!("Bearer {t}");
    let mut nbf = claims("nbf");
    nbf.nbf = Some(now() + 3600);
    assert_eq!(
        upgrade_status(&s, "/ws", &[("Authorization", &bearer(&token(&nbf)))]).await,
        401
    );
    let mut iat = claims("iat");
    iat.iat = Some(now() + 365 * 86400);
    iat.exp = now() + 365 * 86400 + 300;
    assert_eq!(
        upgrade_status(&s, &format!("/ws?token={}", token(&iat)), &[]).await,
        401
    );
    assert_eq!(
        upgrade_status(&s, "/ws", &[("Authorization", &bearer(&token(&iat)))]).await,
        401
    );
    let body = serde_json::to_vec(&claims("crit")).unwrap();
    let crit = sign_parts(
        SECRET.as_bytes(),
        br#"{"alg":"HS256","crit":["exp"]}"#,
        &body,
    );
    assert_eq!(
        upgrade_status(&s, "/ws", &[("Authorization", &bearer(&crit))]).await,
        401
    );
    // Within the documented leeway (30 s), a clock a little ahead is fine.
    let mut skewed = claims("skewed");
    skewed.nbf = Some(now() + 10);
    skewed.iat = Some(now() + 10);
    assert_eq!(
        upgrade_status(&s, "/ws", &[("Authorization", &bearer(&token(&skewed)))]).await,
        101
    );
    for (scheme, jti) in [("bearer", "lower"), ("BEARER", "upper")] {
        let t = token(&claims(jti));
        assert_eq!(
            upgrade_status(&s, "/ws", &[("Authorization", &format!("{scheme} {t}"))]).await,
            101,
            "{scheme}"
        );
    }
    for reason in ["not_yet_valid", "issued_in_future", "unsupported_header"] {
        let series = format!("tickcast_auth_failures_total{{reason=\"{reason}\"}}");
        assert!(s.metric(&series).await >= 1.0, "{reason}");
    }
}

#[tokio::test]
async fn hundreds_of_forbidden_symbols_get_one_error() {
    let s = server(&[]);
    let mut c = claims("few");
    c.symbols = Some(vec!["AAPL".into()]);
    let mut raw = connect_with_query_token(&s, &token(&c)).await;
    raw.next_json().await;
    let mut symbols: Vec<String> = (0..300).map(|i| format!("X{i}")).collect();
    symbols.push("AAPL".into());
    raw.send_text(&json!({"type":"subscribe","id":1,"payload":{"symbols":symbols}}).to_string())
        .await;
    let sub = raw.next_json().await;
    assert_eq!(sub["payload"]["symbols"], json!(["AAPL"]));
    let e = raw.next_json().await;
    assert_eq!(e["payload"]["code"], "forbidden");
    assert_eq!(e["payload"]["symbols"].as_array().unwrap().len(), 300);
    raw.send_text(r#"{"type":"ping","id":2}"#).await;
    assert_eq!(raw.next_json().await["type"], "pong", "still open, no 4008");
}

#[tokio::test]
async fn a_token_expiring_in_the_far_future_does_not_break_the_session() {
    let s = server(&[]);
    let mut c = claims("far");
    c.exp = u64::MAX / 2;
    let bearer = format!("Bearer {}", token(&c));
    let stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let mut raw = RawWs::handshake(stream, "/ws", &[("Authorization", &bearer)])
        .await
        .expect("accepted");
    assert_eq!(raw.next_json().await["type"], "welcome");
    raw.send_text(r#"{"type":"ping","id":1}"#).await;
    assert_eq!(raw.next_json().await["type"], "pong");
}
