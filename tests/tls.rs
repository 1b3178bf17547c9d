//! Built-in TLS: `wss://` and `https://` on the listener, with a certificate
//! each test makes itself (a CA of its own, and a server certificate it
//! signs); a client that verifies it; a reload that keeps old connections.
mod common;
use common::*;
use futures_util::StreamExt;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// A certificate authority, and files holding a server certificate it signed.
struct Certs {
    ca: rcgen::Certificate,
    ca_key: KeyPair,
    dir: tempfile::TempDir,
}

impl Certs {
    fn new() -> Certs {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "tickcast test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&ca_key).unwrap();
        Certs {
            ca,
            ca_key,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn cert_path(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn key_path(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    /// Writes a new server certificate for these names (chain: server, CA);
    /// returns its DER.
    fn issue(&self, names: &[&str]) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        let chain = format!("{}{}", cert.pem(), self.ca.pem());
        // Written next to the files and renamed over them: a reload never
        // sees half a file.
        write_atomically(&self.key_path(), key.serialize_pem().as_bytes());
        write_atomically(&self.cert_path(), chain.as_bytes());
        cert.der().to_vec()
    }

    fn client(&self) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.ca.der().to_vec()))
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn tls_connect(s: &Server, certs: &Certs, name: &str) -> std::io::Result<Tls> {
    let tcp = tokio::net::TcpStream::connect(s.addr).await?;
    let name = ServerName::try_from(name.to_string()).unwrap();
    certs.client().connect(name, tcp).await
}

fn server(certs: &Certs) -> Server {
    let cert = certs.cert_path();
    let key = certs.key_path();
    Server::start(&[
        "--feed",
        "tcp://127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ])
}

async fn wss(s: &Server, certs: &Certs) -> tokio_tungstenite::WebSocketStream<Tls> {
    let tls = tls_connect(s, certs, "localhost")
        .await
        .expect("TLS handshake");
    let url = format!("wss://localhost:{}/ws", s.addr.port());
    let (ws, _) = tokio_tungstenite::client_async(url, tls)
        .await
        .expect("upgrade");
    ws
}

async fn next_json(ws: &mut tokio_tungstenite::WebSocketStream<Tls>) -> serde_json::Value {
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time")
            .expect("open")
            .expect("no error");
        if let Message::Text(t) = m {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

#[tokio::test]
async fn a_verifying_client_gets_ticks_over_wss() {
    let certs = Certs::new();
    certs.issue(&["localhost", "127.0.0.1"]);
    let s = server(&certs);
    assert!(s.log_lines.iter().any(|l| l.contains("wss://")));
    let mut ws = wss(&s, &certs).await;
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    use futures_util::SinkExt;
    ws.send(Message::Text(
        json!({"type":"subscribe","id":1,"payload":{"symbols":["AAPL"]}}).to_string(),
    ))
    .await
    .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "subscribed");
    let mut p = s.publisher();
    p.tick(json!({"symbol":"AAPL","bid":12.5}));
    let t = next_json(&mut ws).await;
    assert_eq!(
        (t["type"].as_str(), t["payload"]["bid"].as_f64()),
        (Some("tick"), Some(12.5))
    );
    // HTTPS too, with ALPN http/1.1.
    let mut tls = tls_connect(&s, &certs, "127.0.0.1").await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tls.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_wrong_host_name_is_refused_by_the_client() {
    let certs = Certs::new();
    certs.issue(&["localhost"]);
    let s = server(&certs);
    let Err(e) = tls_connect(&s, &certs, "wrong.example").await else {
        panic!("a certificate for localhost was accepted as wrong.example")
    };
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    // A plain-text client gets nothing it can use.
    let (status, _, _) = raw_http(s.addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, 0);
    s.wait_metric_tls(&certs).await;
}

trait TlsMetric {
    async fn wait_metric_tls(&self, certs: &Certs);
}

impl TlsMetric for Server {
    /// The failed handshakes are counted (read over TLS).
    async fn wait_metric_tls(&self, certs: &Certs) {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let mut tls = tls_connect(self, certs, "localhost").await.unwrap();
            tls.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut page = String::new();
            tls.read_to_string(&mut page).await.unwrap();
            if metric_value(&page, "tickcast_refused_total{reason=\"tls_handshake\"}") >= 2.0 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "handshake failures not counted"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// A new certificate (SIGHUP, or the files changing) is used by new
/// handshakes while a connection made before keeps ticking.
#[tokio::test]
async fn a_reload_serves_the_new_certificate_and_keeps_old_connections() {
    let certs = Certs::new();
    let first = certs.issue(&["localhost"]);
    let mut s = server(&certs);
    let mut old = wss(&s, &certs).await;
    assert_eq!(next_json(&mut old).await["type"], "welcome");
    use futures_util::SinkExt;
    old.send(Message::Text(
        json!({"type":"subscribe","id":1,"payload":{"symbols":["AAPL"]}}).to_string(),
    ))
    .await
    .unwrap();
    next_json(&mut old).await;
    let seen_first = tls_connect(&s, &certs, "localhost").await.unwrap();
    let peer = |t: &Tls| t.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    assert_eq!(peer(&seen_first), first);

    for (round, how) in ["SIGHUP", "file change"].iter().enumerate() {
        let next = certs.issue(&["localhost"]);
        if *how == "SIGHUP" {
            s.signal(libc::SIGHUP);
        }
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let t = tls_connect(&s, &certs, "localhost").await.unwrap();
            if peer(&t) == next {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{how}: never reloaded"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let mut p = s.publisher();
        p.tick(json!({"symbol":"AAPL","bid":100.0 + round as f64}));
        let t = next_json(&mut old).await;
        assert_eq!(
            t["payload"]["bid"],
            100.0 + round as f64,
            "{how}: the old connection ticks on"
        );
    }
    assert!(s
        .log()
        .iter()
        .any(|l| l.contains("TLS certificate reloaded")));
    // A bad file is refused and the certificate in use stays.
    std::fs::write(certs.cert_path(), b"not a certificate").unwrap();
    s.signal(libc::SIGHUP);
    let deadline = std::time::Instant::now() + WAIT;
    while !s.log().iter().any(|l| l.contains("not reloaded")) {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(tls_connect(&s, &certs, "localhost").await.is_ok());
}

#[test]
fn bad_certificate_files_exit_2_naming_the_flag() {
    let certs = Certs::new();
    certs.issue(&["localhost"]);
    let other_key = certs.dir.path().join("other.pem");
    std::fs::write(&other_key, KeyPair::generate().unwrap().serialize_pem()).unwrap();
    for (cert, key, named) in [
        ("/nonexistent.pem".into(), certs.key_path(), "--tls-cert"),
        (certs.cert_path(), "/nonexistent.pem".into(), "--tls-key"),
        (certs.cert_path(), other_key.clone(), "--tls-key"),
        (other_key.clone(), certs.key_path(), "--tls-cert"),
    ] {
        let out = std::process::Command::new(binary())
            .args(["--listen", "127.0.0.1:0", "--tls-cert"])
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(named), "{named}: {err}");
    }
    let out = std::process::Command::new(binary())
        .args(["--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(certs.cert_path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
