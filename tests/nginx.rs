//! tickcast behind a real nginx that terminates TLS, configured from the
//! shipped `deploy/nginx/tickcast.conf`: each test reads that file, swaps its
//! placeholders (listen ports, certificate paths, the upstream address, and
//! for one test the timeouts) for its own, includes it in a minimal
//! `nginx.conf` of its own, and runs nginx in the foreground from a temporary
//! directory. So what is proven here is the file an operator copies.
//!
//! nginx must be installed (`scripts/test` installs Debian's `nginx`).
mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The host name in the shipped file's `server_name`; the tests' certificate
/// is made out to it and clients ask for it (SNI, Host), at 127.0.0.1.
const SITE: &str = "md.example.com";

fn shipped() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx/tickcast.conf");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------------------
// The shipped file, read as nginx reads it.

/// One directive: name, arguments, and its block if it has one.
#[derive(Debug)]
struct Directive {
    name: String,
    args: Vec<String>,
    block: Vec<Directive>,
}

/// Parses nginx configuration syntax: words and quoted strings, `;`, blocks
/// in braces, `#` comments.
fn parse_conf(text: &str) -> Vec<Directive> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            '#' => while chars.next().is_some_and(|c| c != '\n') {},
            c if c.is_whitespace() => {
                chars.next();
            }
            ';' | '{' | '}' => {
                tokens.push(c.to_string());
                chars.next();
            }
            '"' | '\'' => {
                chars.next();
                let mut word = String::new();
                for c in chars.by_ref() {
                    if c == '\'' || c == '"' {
                        break;
                    }
                    word.push(c);
                }
                // Quoted: kept apart from ';' '{' '}' by a marker.
                tokens.push(format!("\u{0}{word}"));
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, ';' | '{' | '}' | '#') {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                tokens.push(word);
            }
        }
    }
    fn block(tokens: &mut std::vec::IntoIter<String>) -> Vec<Directive> {
        let mut out = Vec::new();
        let mut words: Vec<String> = Vec::new();
        while let Some(t) = tokens.next() {
            match t.as_str() {
                ";" => {
                    let name = words.remove(0);
                    out.push(Directive {
                        name,
                        args: std::mem::take(&mut words),
                        block: vec![],
                    });
                }
                "{" => {
                    let name = words.remove(0);
                    out.push(Directive {
                        name,
                        args: std::mem::take(&mut words),
                        block: block(tokens),
                    });
                }
                "}" => break,
                _ => words.push(t.trim_start_matches('\u{0}').to_string()),
            }
        }
        assert!(words.is_empty(), "a directive without `;`: {words:?}");
        out
    }
    block(&mut tokens.into_iter())
}

fn all<'a>(block: &'a [Directive], name: &str) -> Vec<&'a Directive> {
    block.iter().filter(|d| d.name == name).collect()
}

fn one<'a>(block: &'a [Directive], name: &str) -> &'a Directive {
    let found = all(block, name);
    assert_eq!(found.len(), 1, "exactly one `{name}`");
    found[0]
}

fn value<'a>(block: &'a [Directive], name: &str) -> &'a str {
    &one(block, name).args[0]
}

/// The `proxy_set_header` values of a block, by header name.
fn proxy_headers(block: &[Directive]) -> Vec<(String, String)> {
    all(block, "proxy_set_header")
        .iter()
        .map(|d| (d.args[0].to_ascii_lowercase(), d.args[1].clone()))
        .collect()
}

/// An nginx time (`75s`, `1m30s`, `500ms`, `60`).
fn nginx_duration(s: &str) -> Duration {
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n: u64 = rest[..digits].parse().unwrap_or_else(|_| panic!("{s}"));
        rest = &rest[digits..];
        let unit = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        total += match &rest[..unit] {
            "ms" => Duration::from_millis(n),
            "" | "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(60 * n),
            "h" => Duration::from_secs(3600 * n),
            "d" => Duration::from_secs(86400 * n),
            other => panic!("unit {other} in {s}"),
        };
        rest = &rest[unit..];
    }
    total
}

/// A tickcast flag's default, as `tickcast --help` states it.
fn tickcast_default(id: &str) -> Duration {
    use clap::CommandFactory;
    let cmd = tickcast::config::Cli::command();
    let arg = cmd
        .get_arguments()
        .find(|a| a.get_id() == id)
        .unwrap_or_else(|| panic!("no flag {id}"));
    let v = arg.get_default_values()[0].to_str().unwrap();
    tickcast::config::parse_duration(v).unwrap()
}

/// Everything in the `http` context of the shipped file: the `server`
/// carrying TLS, its locations by their argument (`= /ws`).
struct Shipped {
    http: Vec<Directive>,
}

impl Shipped {
    fn load() -> Shipped {
        Shipped {
            http: parse_conf(&shipped()),
        }
    }

    fn tls_server(&self) -> &[Directive] {
        let tls: Vec<_> = all(&self.http, "server")
            .into_iter()
            .filter(|s| {
                all(&s.block, "listen")
                    .iter()
                    .any(|l| l.args.contains(&"ssl".to_string()))
            })
            .collect();
        assert_eq!(tls.len(), 1, "one TLS server");
        let server: &Directive = tls[0];
        &server.block
    }

    fn location(&self, arg: &str) -> &[Directive] {
        let found: Vec<_> = all(self.tls_server(), "location")
            .into_iter()
            .filter(|l| l.args.join(" ") == arg)
            .collect();
        assert_eq!(found.len(), 1, "one `location {arg}`");
        let location: &Directive = found[0];
        &location.block
    }
}

/// The shipped file keeps WebSocket and SSE connections open longer than
/// tickcast's heartbeats need, upgrades /ws, does not buffer /sse, keeps
/// upstream connections alive, speaks HTTP/1.1 on the /ws listener and passes
/// on only the public paths.
#[test]
fn the_shipped_config_fits_tickcast() {
    let conf = Shipped::load();
    let ping = tickcast_default("ping_interval");
    let pong = tickcast_default("pong_timeout");
    let heartbeats = ping + pong;
    assert_eq!(
        heartbeats,
        Duration::from_secs(40),
        "the defaults the file's comments name"
    );
    assert!(tickcast::transport::sse::MAX_HEARTBEAT < heartbeats);

    let map = one(&conf.http, "map");
    assert_eq!(map.args, ["$http_upgrade", "$connection_upgrade"]);
    let entries: Vec<_> = map
        .block
        .iter()
        .map(|d| (d.name.as_str(), d.args[0].as_str()))
        .collect();
    assert_eq!(entries, [("default", "upgrade"), ("", "close")]);

    let upstream = one(&conf.http, "upstream");
    assert_eq!(upstream.args, ["tickcast"]);
    assert!(!all(&upstream.block, "server").is_empty());
    let keepalive: u32 = value(&upstream.block, "keepalive").parse().unwrap();
    assert!(keepalive > 0);
    assert!(
        nginx_duration(value(&upstream.block, "keepalive_timeout"))
            < tickcast_default("handshake_timeout"),
        "nginx lets an idle upstream connection go before tickcast closes it"
    );

    let server = conf.tls_server();
    for listen in all(server, "listen") {
        assert!(
            !listen.args.contains(&"http2".to_string()),
            "no HTTP/2 where /ws is: {:?}",
            listen.args
        );
    }
    assert!(all(server, "http2").is_empty());
    for d in ["ssl_certificate", "ssl_certificate_key"] {
        one(server, d);
    }
    let plain = proxy_headers(server);
    assert_eq!(value(server, "proxy_http_version"), "1.1");
    for want in [
        ("host", "$http_host"),
        ("x-forwarded-for", "$proxy_add_x_forwarded_for"),
        ("connection", ""),
    ] {
        assert!(
            plain.contains(&(want.0.into(), want.1.into())),
            "server: {want:?}"
        );
    }

    let ws = conf.location("= /ws");
    let sse = conf.location("= /sse");
    let ws_headers = [
        ("upgrade", "$http_upgrade"),
        ("connection", "$connection_upgrade"),
    ];
    for (name, loc, extra) in [
        ("/ws", ws, &ws_headers[..]),
        ("/sse", sse, &[("connection", "")][..]),
    ] {
        assert_eq!(value(loc, "proxy_pass"), "http://tickcast", "{name}");
        assert_eq!(value(loc, "proxy_http_version"), "1.1", "{name}");
        // A location with headers of its own inherits none of the server's.
        let headers = proxy_headers(loc);
        for want in [
            ("host", "$http_host"),
            ("x-forwarded-for", "$proxy_add_x_forwarded_for"),
        ]
        .iter()
        .chain(extra)
        {
            assert!(
                headers.contains(&(want.0.into(), want.1.into())),
                "{name}: {want:?}"
            );
        }
        for timeout in ["proxy_read_timeout", "proxy_send_timeout"] {
            let t = nginx_duration(value(loc, timeout));
            assert!(
                t > heartbeats,
                "{name}: {timeout} {t:?} must exceed --ping-interval + --pong-timeout ({heartbeats:?})"
            );
        }
    }
    assert_eq!(value(sse, "proxy_buffering"), "off");
    assert_eq!(value(sse, "proxy_cache"), "off");
    assert_eq!(value(sse, "gzip"), "off");

    // Exactly these paths go to tickcast; anything else (/metrics) is 404.
    let mut passed: Vec<String> = all(server, "location")
        .iter()
        .filter(|l| !all(&l.block, "proxy_pass").is_empty())
        .map(|l| l.args.join(" "))
        .collect();
    passed.sort();
    assert_eq!(
        passed,
        ["= /", "= /client.js", "= /snapshot", "= /sse", "= /ws"]
    );
    assert_eq!(one(conf.location("/"), "return").args, ["404"]);
}

// ---------------------------------------------------------------------------
// The shipped file made into a running nginx.

/// A certificate authority of the test's own and a certificate for [`SITE`].
struct Certs {
    ca: rcgen::Certificate,
    dir: tempfile::TempDir,
}

impl Certs {
    fn new() -> Certs {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "tickcast nginx test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![SITE.to_string()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        let certs = Certs {
            ca,
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(certs.cert(), format!("{}{}", cert.pem(), certs.ca.pem())).unwrap();
        std::fs::write(certs.key(), key.serialize_pem()).unwrap();
        certs
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("fullchain.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("privkey.pem")
    }

    /// A client that trusts only this CA, offering these ALPN protocols.
    fn client(&self, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
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
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

/// nginx's binary: on the PATH or where Debian puts it.
fn nginx_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("nginx"))
        .find(|p| p.is_file())
        .expect(
            "nginx is not installed (not on the PATH, not in /usr/sbin): these tests run a real \
             nginx; scripts/test installs it (Debian package `nginx`)",
        )
}

/// Replaces `from` with `to` wherever it occurs outside comments; the shipped
/// file must have it.
fn substitute(conf: &str, from: &str, to: &str) -> String {
    let mut hits = 0;
    let out: Vec<String> = conf
        .lines()
        .map(|line| {
            let (code, comment) = line.split_at(line.find('#').unwrap_or(line.len()));
            hits += code.matches(from).count();
            format!("{}{comment}", code.replace(from, to))
        })
        .collect();
    assert!(
        hits > 0,
        "deploy/nginx/tickcast.conf no longer has `{from}`: tests/nginx.rs makes its nginx \
         from it, update the two together"
    );
    out.join("\n") + "\n"
}

/// Sets every `name` directive (outside comments) to `value`.
fn set_everywhere(conf: &str, name: &str, value: &str) -> String {
    let mut hits = 0;
    let out: Vec<String> = conf
        .lines()
        .map(|line| {
            let indent = &line[..line.len() - line.trim_start().len()];
            if line.trim_start().starts_with(&format!("{name} ")) {
                hits += 1;
                format!("{indent}{name} {value};")
            } else {
                line.to_string()
            }
        })
        .collect();
    assert!(hits > 0, "no `{name}` in deploy/nginx/tickcast.conf");
    out.join("\n") + "\n"
}

struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
    /// The TLS listener (the shipped `listen 443 ssl`).
    https: SocketAddr,
    /// The plain one (`listen 80`).
    http: SocketAddr,
}

impl Nginx {
    /// nginx with the shipped site in front of `upstream`; `timeouts`, when
    /// given, replaces every proxy read and send timeout in it.
    fn start(upstream: SocketAddr, certs: &Certs, timeouts: Option<&str>) -> Nginx {
        let bin = nginx_binary();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let (https, http) = (free_port(), free_port());
        // The machine's IPv6 loopback, when there is one, stands in for `[::]`.
        let v6 = std::net::TcpListener::bind(("::1", https)).is_ok()
            && std::net::TcpListener::bind(("::1", http)).is_ok();
        let v6_listen = |port: u16, ssl: &str| {
            if v6 {
                format!("listen [::1]:{port}{ssl};")
            } else {
                String::new()
            }
        };
        let mut site = shipped();
        for (from, to) in [
            ("listen 443 ssl;", format!("listen 127.0.0.1:{https} ssl;")),
            ("listen [::]:443 ssl;", v6_listen(https, " ssl")),
            ("listen 80;", format!("listen 127.0.0.1:{http};")),
            ("listen [::]:80;", v6_listen(http, "")),
            (
                "/etc/ssl/tickcast/fullchain.pem",
                certs.cert().display().to_string(),
            ),
            (
                "/etc/ssl/tickcast/privkey.pem",
                certs.key().display().to_string(),
            ),
            ("server 127.0.0.1:8080;", format!("server {upstream};")),
        ] {
            site = substitute(&site, from, &to);
        }
        if let Some(t) = timeouts {
            site = set_everywhere(&site, "proxy_read_timeout", t);
            site = set_everywhere(&site, "proxy_send_timeout", t);
        }
        std::fs::write(dir.path().join("tickcast.conf"), &site).unwrap();
        // SAFETY: geteuid has no preconditions.
        let user = if unsafe { libc::geteuid() } == 0 {
            // Workers would otherwise run as nobody, who cannot enter the
            // temporary directory.
            "user root;"
        } else {
            ""
        };
        let main = format!(
            "{user}
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    # What Debian's /etc/nginx/nginx.conf sets around conf.d/*.conf: the
    # shipped file must live beside it.
    sendfile on;
    tcp_nopush on;
    ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;
    ssl_prefer_server_ciphers on;
    gzip on;
    # And an operator who compresses everything: /sse must still not be.
    gzip_types text/event-stream application/json text/javascript;
    include {d}/tickcast.conf;
}}
"
        );
        std::fs::write(dir.path().join("nginx.conf"), main).unwrap();
        let stderr = std::fs::File::create(dir.path().join("stderr")).unwrap();
        let mut child = Command::new(bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start nginx");
        let https = SocketAddr::from(([127, 0, 0, 1], https));
        let http = SocketAddr::from(([127, 0, 0, 1], http));
        // Up once it has written its pid file (after binding its listeners)
        // and accepts.
        let pid_file = dir.path().join("nginx.pid");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "nginx exited ({status}) at start:\n{}\n{}",
                    std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default(),
                    std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
                );
            }
            let written = std::fs::read_to_string(&pid_file)
                .is_ok_and(|p| p.trim() == child.id().to_string());
            if written
                && std::net::TcpStream::connect(https).is_ok()
                && std::net::TcpStream::connect(http).is_ok()
            {
                break;
            }
            assert!(Instant::now() < deadline, "nginx did not start in time");
            std::thread::sleep(Duration::from_millis(10));
        }
        Nginx {
            child,
            dir,
            https,
            http,
        }
    }

    /// `md.example.com:PORT`, what a browser would send as Host.
    fn host(&self) -> String {
        format!("{SITE}:{}", self.https.port())
    }

    /// A TLS connection to the site, from a loopback source address of the
    /// caller's choice, verifying nginx's certificate.
    async fn tls_from(&self, certs: &Certs, source: &str, alpn: &[&[u8]]) -> Tls {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        let tcp = socket.connect(self.https).await.unwrap();
        let name = ServerName::try_from(SITE).unwrap();
        tokio::time::timeout(WAIT, certs.client(alpn).connect(name, tcp))
            .await
            .expect("TLS handshake in time")
            .expect("nginx's certificate verifies")
    }

    async fn tls(&self, certs: &Certs) -> Tls {
        self.tls_from(certs, "127.0.0.1", &[b"http/1.1"]).await
    }

    /// A WebSocket upgrade through nginx from `source`; the refusal otherwise.
    async fn ws_from(
        &self,
        certs: &Certs,
        source: &str,
        headers: &[(&str, &str)],
    ) -> Result<WebSocketStream<Tls>, Answer> {
        let tls = self.tls_from(certs, source, &[b"http/1.1"]).await;
        upgrade(tls, &self.host(), headers).await
    }

    async fn ws(&self, certs: &Certs) -> WebSocketStream<Tls> {
        self.ws_from(certs, "127.0.0.1", &[])
            .await
            .expect("upgrade through nginx")
    }

    /// A GET over HTTPS.
    async fn get(&self, certs: &Certs, path: &str) -> Answer {
        let mut tls = self.tls(certs).await;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.host()
        );
        tls.write_all(req.as_bytes()).await.unwrap();
        let (head, rest) = read_head(&mut tls).await;
        let body = read_body(&mut tls, &head, rest).await;
        Answer::new(head, body)
    }

    async fn sse(&self, certs: &Certs, path: &str, headers: &[(&str, &str)]) -> Sse<Tls> {
        let mut tls = self.tls(certs).await;
        let mut req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n",
            self.host()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        tls.write_all(req.as_bytes()).await.unwrap();
        let (head, raw) = read_head(&mut tls).await;
        Sse {
            stream: tls,
            answer: Answer::new(head, String::new()),
            raw,
            body: Vec::new(),
        }
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    /// Stops the nginx this test started: SIGTERM to its master (which stops
    /// its workers and waits for them), SIGKILL only if it does not exit.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("nginx error log:\n{}", self.error_log());
        }
        let pid = self.child.id() as i32;
        // SAFETY: signals the process this test spawned (not yet waited for).
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// An HTTP answer: status, head, body.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn new(head: String, body: String) -> Answer {
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Answer { status, head, body }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Reads up to the end of the head; returns it and whatever came after.
async fn read_head(s: &mut (impl AsyncRead + Unpin)) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i + 4]).into_owned();
            return (head, buf[i + 4..].to_vec());
        }
        let n = tokio::time::timeout_at(deadline, s.read(&mut chunk))
            .await
            .expect("an answer in time")
            .unwrap_or(0);
        assert!(
            n > 0,
            "closed before a whole head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads the body the head announces (Content-Length or chunked).
async fn read_body(s: &mut (impl AsyncRead + Unpin), head: &str, mut got: Vec<u8>) -> String {
    let answer = Answer::new(head.to_string(), String::new());
    let length: Option<usize> = answer.header("content-length").map(|v| v.parse().unwrap());
    let chunked = answer
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let done = match length {
            Some(n) => got.len() >= n,
            None if chunked => got.windows(5).any(|w| w == b"0\r\n\r\n"),
            None => false,
        };
        if done {
            break;
        }
        let n = tokio::time::timeout_at(deadline, s.read(&mut chunk))
            .await
            .expect("the body in time")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        got.extend_from_slice(&chunk[..n]);
    }
    let body = if chunked {
        let mut body = Vec::new();
        Dechunker {
            raw: got,
            ended: false,
        }
        .decode(&mut body);
        body
    } else {
        got
    };
    String::from_utf8_lossy(&body).into_owned()
}

/// Decodes `Transfer-Encoding: chunked` as it arrives.
struct Dechunker {
    raw: Vec<u8>,
    ended: bool,
}

impl Dechunker {
    /// Moves whole chunks from `raw` to `out`.
    fn decode(&mut self, out: &mut Vec<u8>) {
        loop {
            let Some(line_end) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size = std::str::from_utf8(&self.raw[..line_end]).unwrap();
            let n = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
            if n == 0 {
                self.ended = true;
                self.raw.clear();
                return;
            }
            if self.raw.len() < line_end + 2 + n + 2 {
                return;
            }
            out.extend_from_slice(&self.raw[line_end + 2..line_end + 2 + n]);
            self.raw.drain(..line_end + 2 + n + 2);
        }
    }
}

/// The WebSocket handshake on `stream`: the connection on 101, the answer
/// otherwise (with its body: tickcast says why it refused).
async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    host: &str,
    headers: &[(&str, &str)],
) -> Result<WebSocketStream<S>, Answer> {
    let mut req = format!(
        "GET /ws HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let (head, rest) = read_head(&mut stream).await;
    let answer = Answer::new(head, String::new());
    if answer.status != 101 {
        let body = read_body(&mut stream, &answer.head, rest).await;
        return Err(Answer { body, ..answer });
    }
    assert_eq!(
        answer.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{}",
        answer.head
    );
    Ok(WebSocketStream::from_partially_read(stream, rest, Role::Client, None).await)
}

/// The next text message as JSON (pings are answered on the way).
async fn next_json<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) -> Value {
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time")
            .expect("connection open")
            .expect("no error");
        match m {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => continue,
        }
    }
}

async fn until_type<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    kind: &str,
) -> Value {
    loop {
        let m = next_json(ws).await;
        if m["type"] == kind {
            return m;
        }
    }
}

async fn subscribe<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    symbols: &[&str],
) {
    let msg = json!({"type":"subscribe","id":1,"payload":{"symbols":symbols}});
    ws.send(Message::Text(msg.to_string())).await.unwrap();
    let m = until_type(ws, "subscribed").await;
    assert_eq!(m["payload"]["symbols"], json!(symbols), "{m}");
}

/// A Server-Sent Events stream read through nginx.
struct Sse<S> {
    stream: S,
    answer: Answer,
    raw: Vec<u8>,
    body: Vec<u8>,
}

impl<S: AsyncRead + Unpin> Sse<S> {
    /// The next block (up to a blank line).
    async fn next_block(&mut self) -> SseEvent {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut dechunker = Dechunker {
            raw: std::mem::take(&mut self.raw),
            ended: false,
        };
        loop {
            dechunker.decode(&mut self.body);
            if let Some(i) = self.body.windows(2).position(|w| w == b"\n\n") {
                let block = String::from_utf8(self.body[..i].to_vec()).unwrap();
                self.body.drain(..i + 2);
                self.raw = dechunker.raw;
                let mut e = SseEvent {
                    comment: true,
                    ..SseEvent::default()
                };
                for line in block.lines().filter(|l| !l.starts_with(':')) {
                    e.comment = false;
                    let (field, value) = line.split_once(": ").unwrap_or((line, ""));
                    match field {
                        "event" => e.event = Some(value.to_string()),
                        "data" => e.data = Some(value.to_string()),
                        "id" => e.id = Some(value.to_string()),
                        "retry" => e.retry = value.parse().ok(),
                        other => panic!("unknown field {other:?} in {block:?}"),
                    }
                }
                return e;
            }
            assert!(!dechunker.ended, "the stream ended");
            let mut chunk = [0u8; 16384];
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk))
                .await
                .expect("an event in time")
                .unwrap_or(0);
            assert!(n > 0, "the stream was closed");
            dechunker.raw.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next event of this kind, noting the last `id` on the way.
    async fn until_event(&mut self, kind: &str, last_id: &mut Option<String>) -> SseEvent {
        loop {
            let e = self.next_block().await;
            if e.id.is_some() {
                last_id.clone_from(&e.id);
            }
            if e.event.as_deref() == Some(kind) {
                return e;
            }
        }
    }

    /// Reads up to the next resume mark; returns its id.
    async fn next_mark(&mut self) -> String {
        loop {
            let e = self.next_block().await;
            if let Some(id) = e.id.clone() {
                assert_eq!(e.event.as_deref(), Some("mark"), "{e:?}");
                return id;
            }
        }
    }
}

/// tickcast with a TCP feed (no synthetic market burning CPU) and these flags.
fn tickcast(flags: &[&str]) -> Server {
    let mut all = vec!["--feed", "tcp://127.0.0.1:0"];
    all.extend_from_slice(flags);
    Server::start(&all)
}

/// Publishes and waits until tickcast holds it (asked directly, not through nginx).
async fn publish(s: &Server, p: &mut Publisher, tick: Value) {
    let symbol = tick["symbol"].as_str().unwrap().to_string();
    let bid = tick["bid"].as_f64();
    p.tick(tick);
    let deadline = Instant::now() + WAIT;
    while s.snapshot(&symbol).await.first().map(|t| t["bid"].as_f64()) != Some(bid) {
        assert!(Instant::now() < deadline, "{symbol} never published");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------

/// wss:// with TLS ended at nginx: welcome, subscribe, live ticks, a ping
/// answered by a pong; browser origins checked against the site's own.
#[tokio::test]
async fn websocket_through_nginx_with_tls_ended_there() {
    let certs = Certs::new();
    let s = tickcast(&[
        "--ping-interval",
        "1s",
        "--allowed-origins",
        "https://app.example.com",
    ]);
    let ng = Nginx::start(s.addr, &certs, None);

    let mut ws = ng.ws(&certs).await;
    let welcome = next_json(&mut ws).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["payload"]["heartbeat_ms"], 1000, "{welcome}");
    subscribe(&mut ws, &["AAPL"]).await;
    let mut p = s.publisher();
    for bid in [12.5, 12.75] {
        p.tick(json!({"symbol":"AAPL","bid":bid}));
        let t = until_type(&mut ws, "tick").await;
        assert_eq!(
            (
                t["payload"]["symbol"].as_str(),
                t["payload"]["bid"].as_f64()
            ),
            (Some("AAPL"), Some(bid))
        );
    }
    ws.send(Message::Ping(b"through nginx".to_vec()))
        .await
        .unwrap();
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a pong in time")
            .expect("open")
            .expect("no error");
        if let Message::Pong(payload) = m {
            assert_eq!(payload, b"through nginx");
            break;
        }
    }

    // The page served through the proxy (Host passed on with its port, as the
    // browser's Origin has it), and the front-end in --allowed-origins, may
    // connect; another site's page may not.
    let own = format!("https://{}", ng.host());
    for (origin, status) in [
        (own.as_str(), 101),
        ("https://app.example.com", 101),
        ("https://evil.example", 403),
    ] {
        let got = match ng.ws_from(&certs, "127.0.0.1", &[("Origin", origin)]).await {
            Ok(_) => 101,
            Err(a) => a.status,
        };
        assert_eq!(got, status, "Origin: {origin}");
    }
}

/// nginx closes a proxied connection that carries nothing for
/// proxy_read_timeout. tickcast's pings are what keeps a quiet WebSocket
/// open: with a 3 s timeout, a connection pinged every second outlives it,
/// while the same proxy in front of tickcast's default 30 s cuts its
/// connection after 3 s.
#[tokio::test]
async fn tickcast_pings_keep_a_quiet_websocket_open_through_nginx() {
    let certs = Certs::new();
    let timeout = Duration::from_secs(3);
    let pinged = tickcast(&["--ping-interval", "1s"]);
    let ng = Nginx::start(pinged.addr, &certs, Some("3s"));
    let unpinged = tickcast(&[]);
    let ng_unpinged = Nginx::start(unpinged.addr, &certs, Some("3s"));

    let mut live = ng.ws(&certs).await;
    assert_eq!(next_json(&mut live).await["type"], "welcome");
    // Before the connection exists, so before nginx can start its timer.
    let opened = Instant::now();
    let mut quiet = ng_unpinged.ws(&certs).await;
    assert_eq!(next_json(&mut quiet).await["type"], "welcome");
    let watch = timeout + Duration::from_millis(1500);

    let pings = async {
        let deadline = tokio::time::Instant::now() + watch;
        let mut pings = 0;
        while let Ok(m) = tokio::time::timeout_at(deadline, live.next()).await {
            match m {
                Some(Ok(Message::Ping(_))) => pings += 1,
                Some(Ok(Message::Text(t))) => panic!("nothing was asked for: {t}"),
                other => panic!("cut after {:?}: {other:?}", opened.elapsed()),
            }
        }
        pings
    };
    let cut = async {
        let m = tokio::time::timeout(WAIT, quiet.next())
            .await
            .expect("cut within WAIT");
        // Not a frame (tickcast pings only after 30 s): the end of the stream.
        assert!(!matches!(m, Some(Ok(_))), "{m:?}");
        opened.elapsed()
    };
    let (pings, cut_after) = tokio::join!(pings, cut);
    assert!(pings >= 3, "{pings} pings in {watch:?}");
    assert!(
        // (nginx may keep a timer up to 300 ms short rather than re-arm it.)
        cut_after >= timeout - Duration::from_millis(300),
        "the unpinged connection was cut after {cut_after:?}, before proxy_read_timeout"
    );
    assert!(
        ng_unpinged.error_log().contains("upstream timed out"),
        "{}",
        ng_unpinged.error_log()
    );
    // Past the timeout, the pinged connection still works.
    subscribe(&mut live, &["AAPL"]).await;
    pinged.publisher().tick(json!({"symbol":"AAPL","bid":3.5}));
    assert_eq!(until_type(&mut live, "tick").await["payload"]["bid"], 3.5);
}

/// Server-Sent Events through nginx: a tick published while the stream is
/// open comes through as tickcast writes it (nginx holds nothing back, and
/// does not compress the stream even where the operator's nginx.conf
/// compresses text/event-stream); nginx lets go of the upstream connection
/// when its client leaves; `Last-Event-ID` resume works through the proxy.
#[tokio::test]
async fn sse_through_nginx_streams_each_event_and_resumes() {
    let certs = Certs::new();
    let s = tickcast(&["--coalesce", "10ms"]);
    let ng = Nginx::start(s.addr, &certs, None);
    let mut p = s.publisher();
    for sym in ["AAPL", "MSFT", "TSLA"] {
        publish(&s, &mut p, json!({"symbol":sym,"bid":1.0})).await;
    }
    let path = "/sse?symbols=AAPL,MSFT,TSLA";
    let mut first = ng.sse(&certs, path, &[("Accept-Encoding", "gzip")]).await;
    assert_eq!(first.answer.status, 200, "{}", first.answer.head);
    assert_eq!(
        first.answer.header("content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    assert_eq!(
        first.answer.header("content-encoding"),
        None,
        "{}",
        first.answer.head
    );
    let mut last = None;
    let welcome = first.until_event("welcome", &mut last).await;
    assert_eq!(welcome.json()["heartbeat_ms"], 15000);
    for _ in 0..3 {
        assert_eq!(
            first.until_event("tick", &mut last).await.json()["snapshot"],
            true
        );
    }
    first.next_mark().await;

    // Published now, with the stream open: it comes through as tickcast
    // writes it (the read below waits at most WAIT).
    p.tick(json!({"symbol":"AAPL","bid":2.0}));
    let t = first.until_event("tick", &mut last).await.json();
    assert_eq!(
        (t["symbol"].as_str(), t["bid"].as_f64()),
        (Some("AAPL"), Some(2.0)),
        "{t}"
    );
    let resume = first.next_mark().await;

    drop(first);
    // nginx closes the upstream connection as soon as its client goes (so
    // tickcast is not left writing to nobody through it).
    let deadline = Instant::now() + WAIT;
    while !ng
        .error_log()
        .contains("client prematurely closed connection, so upstream connection is closed too")
    {
        assert!(Instant::now() < deadline, "{}", ng.error_log());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    publish(&s, &mut p, json!({"symbol":"MSFT","bid":3.0})).await;
    let mut again = ng.sse(&certs, path, &[("Last-Event-ID", &resume)]).await;
    assert_eq!(again.answer.status, 200);
    let mut last = None;
    again.until_event("subscribed", &mut last).await;
    let t = again.until_event("tick", &mut last).await.json();
    assert_eq!(
        (t["symbol"].as_str(), t["bid"].as_f64()),
        (Some("MSFT"), Some(3.0)),
        "only what changed: {t}"
    );
    // Next comes the mark, not another snapshot.
    again.next_mark().await;
}

/// Behind nginx, with `--trusted-proxies 127.0.0.1`, tickcast counts each
/// client by the address nginx saw, not nginx's own: one session per address
/// with `--max-connections-per-ip 1`, a second refused with 429 and logged
/// under the client's address; and an X-Forwarded-For the client wrote
/// itself does not make it someone else.
#[tokio::test]
async fn tickcast_counts_the_client_nginx_forwards_for() {
    let certs = Certs::new();
    let mut s = tickcast(&[
        "--trusted-proxies",
        "127.0.0.1",
        "--max-connections-per-ip",
        "1",
    ]);
    let ng = Nginx::start(s.addr, &certs, None);

    let mut held = Vec::new();
    for source in ["127.0.0.5", "127.0.0.6"] {
        let mut ws = ng
            .ws_from(&certs, source, &[])
            .await
            .unwrap_or_else(|a| panic!("{source}: {a:?}"));
        assert_eq!(next_json(&mut ws).await["type"], "welcome");
        held.push(ws);
    }
    let refused = ng
        .ws_from(&certs, "127.0.0.5", &[])
        .await
        .expect_err("a second from 127.0.0.5");
    assert_eq!(refused.status, 429, "{refused:?}");
    assert!(refused.header("retry-after").is_some(), "{}", refused.head);
    assert!(refused.body.contains("from 127.0.0.5"), "{}", refused.body);
    let deadline = Instant::now() + WAIT;
    while !s.log().iter().any(|l| l.contains("refused 127.0.0.5")) {
        assert!(Instant::now() < deadline, "{:?}", s.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // nginx appends the address it saw; tickcast takes the rightmost one that
    // is not a trusted proxy. A header of the client's own changes nothing.
    let claims = [("X-Forwarded-For", "203.0.113.9")];
    let refused = ng
        .ws_from(&certs, "127.0.0.6", &claims)
        .await
        .expect_err("127.0.0.6 is still itself");
    assert_eq!(refused.status, 429, "{refused:?}");
    assert!(refused.body.contains("from 127.0.0.6"), "{}", refused.body);
    for source in ["127.0.0.7", "127.0.0.8"] {
        let mut ws = ng
            .ws_from(&certs, source, &claims)
            .await
            .unwrap_or_else(|a| panic!("{source} claiming 203.0.113.9 counts as {source}: {a:?}"));
        assert_eq!(next_json(&mut ws).await["type"], "welcome");
        held.push(ws);
    }
    assert!(
        !s.log().iter().any(|l| l.contains("203.0.113.9")),
        "{:?}",
        s.log()
    );
}

/// Only the public paths reach tickcast: /metrics (however it is spelled)
/// and the health checks get nginx's 404; the page, the client module and
/// /snapshot come through; plain HTTP only redirects; the TLS listener
/// speaks HTTP/1.1 even to a client offering h2.
#[tokio::test]
async fn metrics_are_not_reachable_through_the_proxy() {
    let certs = Certs::new();
    let s = tickcast(&[]);
    let ng = Nginx::start(s.addr, &certs, None);
    let mut p = s.publisher();
    publish(&s, &mut p, json!({"symbol":"AAPL","bid":7.25})).await;

    for path in [
        "/metrics",
        "/metrics?x=1",
        "/metrics/",
        "//metrics",
        "/%6Detrics",
        "/./metrics",
        "/ws/../metrics",
        "/healthz",
        "/readyz",
    ] {
        let a = ng.get(&certs, path).await;
        assert_eq!(a.status, 404, "{path}: {}", a.head);
        assert!(!a.body.contains("tickcast_"), "{path}: {}", a.body);
        assert!(
            a.header("server").is_some_and(|v| v.starts_with("nginx")),
            "{path}: nginx's own answer"
        );
    }
    // tickcast itself still serves it, to whoever reaches it directly.
    assert_eq!(s.get("/metrics").await.0, 200);

    let page = ng.get(&certs, "/").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("<html") || page.body.contains("<!doctype"),
        "{}",
        page.body
    );
    let module = ng.get(&certs, "/client.js").await;
    assert_eq!(module.status, 200);
    assert!(module.body.contains("TickcastClient"));
    let snap = ng.get(&certs, "/snapshot?symbols=AAPL").await;
    assert_eq!(snap.status, 200, "{}", snap.head);
    let snap: Value = serde_json::from_str(&snap.body).unwrap();
    assert_eq!(snap[0]["bid"], 7.25, "{snap}");

    for path in ["/metrics", "/ws", "/"] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: {SITE}\r\nConnection: close\r\n\r\n");
        let (status, head, _) = raw_http(ng.http, req.as_bytes()).await;
        assert_eq!(status, 301, "{path}: {head}");
        assert!(head.contains(&format!("https://{SITE}{path}")), "{head}");
    }

    let tls = ng
        .tls_from(&certs, "127.0.0.1", &[b"h2", b"http/1.1"])
        .await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
}
