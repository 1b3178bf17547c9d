//! Built-in TLS (`--tls-cert`, `--tls-key`): `https://` and `wss://` on the
//! public listener, with rustls (no OpenSSL), TLS 1.2 and 1.3, ALPN
//! `http/1.1`.
//!
//! The certificate is reloaded without dropping anyone: on SIGHUP, and when
//! either file changes (checked every [`WATCH_EVERY`]). New handshakes use
//! the new certificate; open connections keep the one they started with. A
//! reload that fails (a half-written file, a key that does not match) is
//! logged and the previous certificate stays in use.

use arc_swap::ArcSwap;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::net::TcpStream;

/// A TLS connection to a client.
pub type ServerStream = tokio_rustls::server::TlsStream<TcpStream>;

/// How often the certificate files are checked for changes.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);

/// The socket under a TLS connection (for ending it).
pub fn raw_fd(stream: &ServerStream) -> RawFd {
    stream.get_ref().0.as_raw_fd()
}

/// The certificate in use, replaced whole on reload.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    config: ArcSwap<ServerConfig>,
}

impl Tls {
    /// Loads the certificate chain and key (PEM); an error names the file.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Tls>, String> {
        let config = server_config(cert, key)?;
        Ok(Arc::new(Tls {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            config: ArcSwap::from_pointee(config),
        }))
    }

    /// The acceptor for the next handshake.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.load_full())
    }

    /// Reads the files again; keeps the certificate in use if they are bad.
    pub fn reload(&self) -> Result<(), String> {
        let config = server_config(&self.cert, &self.key)?;
        self.config.store(Arc::new(config));
        Ok(())
    }

    /// Reloads on SIGHUP and when a file changes, until the process ends.
    pub fn watch(self: Arc<Self>) -> std::io::Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup())?;
        tokio::spawn(async move {
            let mut seen = self.stamps();
            let mut every = tokio::time::interval(WATCH_EVERY);
            loop {
                let why = tokio::select! {
                    _ = hup.recv() => "SIGHUP",
                    _ = every.tick() => {
                        let now = self.stamps();
                        if now == seen {
                            continue;
                        }
                        seen = now;
                        "the certificate files changed"
                    }
                };
                match self.reload() {
                    Ok(()) => crate::info!("TLS certificate reloaded ({why})"),
                    Err(e) => crate::warn!(
                        "TLS certificate not reloaded ({why}): {e}; the previous one stays in use"
                    ),
                }
            }
        });
        Ok(())
    }

    fn stamps(&self) -> [Option<(SystemTime, u64)>; 2] {
        let stamp = |p: &Path| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        };
        [stamp(&self.cert), stamp(&self.key)]
    }
}

fn server_config(cert: &Path, key: &Path) -> Result<ServerConfig, String> {
    let chain = read_certs(cert)?;
    let key_der = read_key(key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| {
            format!(
                "--tls-key {}: does not go with --tls-cert {}: {e}",
                key.display(),
                cert.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("--tls-cert {}: {e}", path.display()))?;
    let chain = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("--tls-cert {}: {e}", path.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "--tls-cert {}: no PEM certificate in it",
            path.display()
        ));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("--tls-key {}: {e}", path.display()))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| format!("--tls-key {}: {e}", path.display()))?
        .ok_or_else(|| format!("--tls-key {}: no PEM private key in it", path.display()))
}
