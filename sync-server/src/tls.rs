//! The server's own TLS listener (the single-box venue deployment; behind a
//! reverse proxy the server listens on loopback without it).
//!
//! The certificate and key are PEM files. They are read again when either
//! file changes (checked every `tls_reload_check_secs`) or on [`ServerTls::reload`]
//! (the binary calls it on SIGHUP); open connections keep the session they
//! negotiated, new ones get the new certificate. A file that does not load
//! leaves the running certificate in place, so a half-written renewal never
//! takes the server off the air.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum_server::tls_rustls::RustlsConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("TLS needs both `tls_cert` and `tls_key` (only one is set)")]
    Incomplete,
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: PathBuf },
    #[error("{path}: {message}")]
    BadPem { path: PathBuf, message: String },
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// What the files looked like when last loaded.
type Stamp = Option<(SystemTime, u64)>;

/// The listener's TLS configuration, reloadable in place.
#[derive(Clone)]
pub struct ServerTls {
    cert: Arc<PathBuf>,
    key: Arc<PathBuf>,
    config: RustlsConfig,
    loaded: Arc<Mutex<(Stamp, Stamp)>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// From the config's `tls_cert` / `tls_key`: `None` when neither is set.
    pub fn from_paths(
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<Option<Self>, TlsSetupError> {
        match (cert, key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => Self::load(cert, key).map(Some),
            _ => Err(TlsSetupError::Incomplete),
        }
    }

    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsSetupError> {
        let stamps = (stamp(cert), stamp(key));
        let config = server_config(cert, key)?;
        Ok(Self {
            cert: Arc::new(cert.to_owned()),
            key: Arc::new(key.to_owned()),
            config: RustlsConfig::from_config(Arc::new(config)),
            loaded: Arc::new(Mutex::new(stamps)),
        })
    }

    pub(crate) fn rustls_config(&self) -> RustlsConfig {
        self.config.clone()
    }

    /// Reads the files again; on an error the running certificate stays.
    pub fn reload(&self) -> Result<(), TlsSetupError> {
        let stamps = (stamp(&self.cert), stamp(&self.key));
        let config = server_config(&self.cert, &self.key)?;
        self.config.reload_from_config(Arc::new(config));
        *self.loaded.lock().expect("TLS stamps poisoned") = stamps;
        tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
        Ok(())
    }

    /// Reloads whenever a file changes (looking every `every`), until `stop`.
    pub(crate) fn watch_files(self, every: Duration, mut stop: watch::Receiver<bool>) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                let now = (stamp(&self.cert), stamp(&self.key));
                if now == *self.loaded.lock().expect("TLS stamps poisoned") {
                    continue;
                }
                if let Err(error) = self.reload() {
                    // Tried again at the next change (or the next tick, when
                    // the renewal is still being written).
                    tracing::error!(%error, "new TLS certificate not loaded; keeping the old one");
                }
            }
        });
    }
}

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path).map_err(|source| TlsSetupError::Read {
        path: path.to_owned(),
        source,
    })
}

fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, TlsSetupError> {
    let chain = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsSetupError::BadPem {
            path: cert.to_owned(),
            message: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsSetupError::NoCertificate {
            path: cert.to_owned(),
        });
    }
    let key_der = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsSetupError::NoKey {
            path: key.to_owned(),
        },
        other => TlsSetupError::BadPem {
            path: key.to_owned(),
            message: other.to_string(),
        },
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)?;
    // Websockets upgrade over HTTP/1.1; offering h2 would move browsers'
    // API calls there for no gain here.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
