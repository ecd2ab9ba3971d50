//! The app's one client-core replica, its account on the chosen server and
//! the sync connection, and the task that tells the web UI what changed.

use std::path::PathBuf;
use std::sync::Arc;

use client_core::{
    Account, ClientCore, DocEvent, DocumentId, ServerTrust, SyncConfig, SyncHandle, TrustError,
};
use serde::{Deserialize, Serialize};
use tauri::{AppHandle, Emitter};
use tokio::sync::Mutex;

use crate::dto::{CmdResult, CommandError, SessionDto, StatusDto};

const SERVER_URL: &str = "desktop.server_url";
const SERVER_CA_PEM: &str = "desktop.server_ca_pem";
const SERVER_PINS: &str = "desktop.server_pinned_keys";
const PENDING_REGISTRATIONS: &str = "desktop.pending_registrations";
pub const DEFAULT_SERVER: &str = "ws://127.0.0.1:8080/sync";

/// Where the app syncs, and which certificates it trusts there beside the
/// platform's roots: a venue's own CA, pins of the server's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    pub url: String,
    pub ca_pem: Option<String>,
    pub pinned_keys: Vec<String>,
}

impl ServerSettings {
    /// As saved; at first start from `SYNC_SERVER_URL`, `SYNC_SERVER_CA_FILE`
    /// (a PEM file) and `SYNC_SERVER_PINNED_KEYS` (comma-separated).
    fn load(core: &ClientCore) -> anyhow::Result<Self> {
        let url = match core.device_value(SERVER_URL)? {
            Some(url) => return Self::saved(core, url),
            None => std::env::var("SYNC_SERVER_URL").unwrap_or_else(|_| DEFAULT_SERVER.into()),
        };
        let ca_pem = match std::env::var_os("SYNC_SERVER_CA_FILE") {
            Some(path) => Some(std::fs::read_to_string(&path).map_err(|e| {
                anyhow::anyhow!("SYNC_SERVER_CA_FILE {}: {e}", path.to_string_lossy())
            })?),
            None => None,
        };
        let pinned_keys = std::env::var("SYNC_SERVER_PINNED_KEYS")
            .map(|v| split_pins(&v))
            .unwrap_or_default();
        Ok(Self {
            url,
            ca_pem,
            pinned_keys,
        })
    }

    fn saved(core: &ClientCore, url: String) -> anyhow::Result<Self> {
        Ok(Self {
            url,
            ca_pem: core.device_value(SERVER_CA_PEM)?,
            pinned_keys: split_pins(&core.device_value(SERVER_PINS)?.unwrap_or_default()),
        })
    }

    fn save(&self, core: &ClientCore) -> CmdResult<()> {
        core.set_device_value(SERVER_URL, Some(&self.url))?;
        core.set_device_value(SERVER_CA_PEM, self.ca_pem.as_deref())?;
        let pins = self.pinned_keys.join(",");
        core.set_device_value(SERVER_PINS, (!pins.is_empty()).then_some(pins.as_str()))?;
        Ok(())
    }

    pub fn trust(&self) -> Result<ServerTrust, TrustError> {
        let mut trust = ServerTrust::default();
        if let Some(pem) = &self.ca_pem {
            trust = trust.with_extra_ca_pem(pem)?;
        }
        for pin in &self.pinned_keys {
            trust = trust.with_pinned_key(pin)?;
        }
        Ok(trust)
    }
}

fn split_pins(text: &str) -> Vec<String> {
    text.split([',', '\n'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The account and sync connection for one server.
pub struct Connection {
    pub server: ServerSettings,
    pub account: Account,
    sync: SyncHandle,
    forwarding: tauri::async_runtime::JoinHandle<()>,
}

pub struct AppState {
    pub core: ClientCore,
    pub data_dir: PathBuf,
    pub connection: Mutex<Connection>,
}

/// A document made while the server could not be reached: registered (so
/// the server knows whose it is) as soon as it can be.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct PendingRegistration {
    document: String,
    kind: String,
    scope: Option<String>,
}

impl AppState {
    pub async fn open(app: &AppHandle, data_dir: PathBuf) -> anyhow::Result<Arc<AppState>> {
        std::fs::create_dir_all(&data_dir)?;
        let core = ClientCore::open(data_dir.join("desktop.sqlite3"))?;
        let server = ServerSettings::load(&core)?;
        let connection = connect(app, &core, &server)?;
        Ok(Arc::new(AppState {
            core,
            data_dir,
            connection: Mutex::new(connection),
        }))
    }

    pub async fn account(&self) -> Account {
        self.connection.lock().await.account.clone()
    }

    /// Switches to another server, or to other trust in the same one (the
    /// sign-in screen's server fields).
    pub async fn set_server(&self, app: &AppHandle, mut server: ServerSettings) -> CmdResult<()> {
        server.url = server.url.trim().to_owned();
        server.ca_pem = server.ca_pem.filter(|pem| !pem.trim().is_empty());
        if !(server.url.starts_with("ws://") || server.url.starts_with("wss://")) {
            return Err(CommandError::invalid(
                "the server address starts with ws:// or wss:// (e.g. wss://sync.example.org/sync)",
            ));
        }
        server
            .trust()
            .map_err(|e| CommandError::invalid(e.to_string()))?;
        let mut connection = self.connection.lock().await;
        if connection.server == server {
            return Ok(());
        }
        let next = connect(app, &self.core, &server)
            .map_err(|e| CommandError::new("internal", e.to_string()))?;
        let previous = std::mem::replace(&mut *connection, next);
        previous.forwarding.abort();
        previous.sync.stop().await;
        server.save(&self.core)?;
        Ok(())
    }

    /// Registers `document` with the server now, or as soon as it can be
    /// reached (the document syncs meanwhile: admins may write unregistered ones).
    pub async fn register(
        &self,
        document: DocumentId,
        kind: &str,
        scope: Option<&str>,
    ) -> CmdResult<()> {
        let account = self.account().await;
        match account.register_document(document, kind, scope).await {
            Ok(()) => Ok(()),
            Err(client_core::AccountError::Network(_)) => {
                let mut pending = pending(&self.core);
                pending.push(PendingRegistration {
                    document: document.to_string(),
                    kind: kind.into(),
                    scope: scope.map(str::to_owned),
                });
                save_pending(&self.core, &pending)?;
                Ok(())
            }
            Err(other) => Err(other.into()),
        }
    }
}

fn pending(core: &ClientCore) -> Vec<PendingRegistration> {
    core.device_value(PENDING_REGISTRATIONS)
        .ok()
        .flatten()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}

fn save_pending(core: &ClientCore, list: &[PendingRegistration]) -> CmdResult<()> {
    let text =
        serde_json::to_string(list).map_err(|e| CommandError::new("internal", e.to_string()))?;
    core.set_device_value(
        PENDING_REGISTRATIONS,
        (!list.is_empty()).then_some(text.as_str()),
    )?;
    Ok(())
}

/// Registrations made offline, sent once the server answers again.
async fn register_pending(core: &ClientCore, account: &Account) {
    let mut left = Vec::new();
    for item in pending(core) {
        let Ok(document) = DocumentId::parse(&item.document) else {
            continue;
        };
        match account
            .register_document(document, &item.kind, item.scope.as_deref())
            .await
        {
            Ok(()) => {
                tracing::info!(document = %item.document, "registered a document made offline")
            }
            Err(client_core::AccountError::Network(_) | client_core::AccountError::SignedOut) => {
                left.push(item)
            }
            Err(error) => tracing::warn!(document = %item.document, %error, "registration refused"),
        }
    }
    if let Err(error) = save_pending(core, &left) {
        tracing::warn!(?error, "cannot keep the pending registrations");
    }
}

fn connect(
    app: &AppHandle,
    core: &ClientCore,
    server: &ServerSettings,
) -> anyhow::Result<Connection> {
    let account = Account::with_trust(core, &server.url, server.trust()?)?;
    // Called on Tauri's tokio runtime, where the sync client spawns its task.
    let sync = core.start_sync(SyncConfig::with_account(&server.url, &account));
    let forwarding =
        tauri::async_runtime::spawn(forward_events(app.clone(), core.clone(), account.clone()));
    Ok(Connection {
        server: server.clone(),
        account,
        sync,
        forwarding,
    })
}

#[derive(Clone, Serialize)]
struct DocChanged {
    document: String,
    remote: bool,
}

/// Sends `sync-status`, `session`, `doc-changed` and `changes-refused`
/// events to the window.
async fn forward_events(app: AppHandle, core: ClientCore, account: Account) {
    let mut events = core.subscribe();
    let mut status = core.watch_sync_status();
    let mut session = account.watch_state();
    // Status changes with every local change (the pending count); offline
    // registrations are retried only when a connection is made.
    let mut was_connected = false;
    loop {
        tokio::select! {
            changed = status.changed() => {
                if changed.is_err() { return; }
                let now: StatusDto = status.borrow_and_update().clone().into();
                if now.connected && !was_connected {
                    register_pending(&core, &account).await;
                }
                was_connected = now.connected;
                let _ = app.emit("sync-status", now);
            }
            changed = session.changed() => {
                if changed.is_err() { return; }
                let now: SessionDto = session.borrow_and_update().clone().into();
                let _ = app.emit("session", now);
            }
            event = events.recv() => match event {
                Ok(DocEvent::Changed { document, origin, .. }) => {
                    let _ = app.emit("doc-changed", DocChanged {
                        document: document.to_string(),
                        remote: origin == client_core::ChangeOrigin::Remote,
                    });
                }
                Ok(DocEvent::Quarantined { document, changes, .. }) => {
                    let _ = app.emit("changes-refused", (document.to_string(), changes));
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    let _ = app.emit("doc-changed", DocChanged { document: String::new(), remote: true });
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}
