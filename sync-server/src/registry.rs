//! Live documents: one actor task per loaded document, found through the
//! registry, loaded on first use and evicted after it has had no peer for a
//! while. The actor owns the [`DocumentCore`] and is the only writer of its
//! document, so no locks are held across store calls.

mod actor;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sync_protocol::{DocumentId, Message};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::audit::NewAuditEntry;
use crate::doc_core::{DocumentCore, PeerKey, ReceiveError};
use crate::memory_budget::MemoryBudget;
use crate::metrics as m;
use crate::policy::Access;
use crate::store::Store;

/// Tunables of live documents.
#[derive(Debug, Clone)]
pub struct DocumentSettings {
    /// How long a document with no peer stays in memory.
    pub evict_after: Duration,
    /// Estimated bytes all loaded documents may take before idle ones leave
    /// early, oldest idle first (`memory_budget`); 0: no budget.
    pub memory_budget_bytes: u64,
    /// Chunks appended before they are folded into a new snapshot.
    pub compact_after_chunks: u64,
    /// How long a peer sent changes it has not answered is held back from
    /// later rounds (`DocumentCore::outgoing_paced`); zero: never.
    pub pace_unanswered: Duration,
    /// The server's peer id, used as `senderId`.
    pub server_peer_id: String,
    /// Where refused writes are counted towards a security alert.
    pub security: crate::security::SecuritySignals,
    /// Presence beacons heard on documents.
    pub presence: crate::presence::PresenceBoard,
    /// Settings documents are backed up this long after their last change.
    pub settings_backup_debounce: Duration,
    pub settings_retention: crate::settings_backup::Retention,
}

/// What a document sends to a connection.
#[derive(Debug)]
pub enum Outbound {
    Message(Message),
    /// A `sync` message shared by every peer of a fan-out, sent to `target`
    /// (framed by the connection's writer, not the document's actor).
    Sync {
        message: Arc<sync_protocol::SharedSync>,
        target: Arc<str>,
    },
    /// Send an `error` message with this text, then close the connection.
    Close(String),
}

/// A connection as seen by a document.
#[derive(Clone)]
pub struct PeerHandle {
    pub key: PeerKey,
    /// Shared with every message queued to it.
    pub peer_id: Arc<str>,
    /// Who is behind the connection, as the audit log names them.
    pub actor: String,
    /// The signed-in device, if any (for the audit log).
    pub device: Option<String>,
    pub address: String,
    pub access: Access,
    /// How this peer's changes are checked (event documents).
    pub validation: Option<crate::doc_core::WriteCheck>,
    /// The peer takes `x-change-rejected` notices instead of a closed connection.
    pub rejection_notices: bool,
    pub outbound: mpsc::Sender<Outbound>,
    /// Woken when the document gives up on this peer (it lagged too far behind).
    pub kill: Arc<Notify>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    Request,
    Sync,
}

/// Why a document could not be opened or written.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DocumentError {
    /// The store could not read it (told to every connection that asks).
    #[error("loading document {id}: {reason}")]
    Unreadable { id: DocumentId, reason: String },
    #[error("document {id}: {reason}")]
    Corrupt { id: DocumentId, reason: String },
    #[error("document {0} could not be attached")]
    NotAttached(DocumentId),
    #[error("the document is unavailable; try again")]
    Unavailable,
    #[error("{0}")]
    Settings(String),
    #[error("the store refused the write")]
    NotDurable,
}

pub enum DocCommand {
    Attach {
        peer: PeerHandle,
        ack: oneshot::Sender<Result<(), DocumentError>>,
    },
    Detach {
        key: PeerKey,
    },
    Sync {
        key: PeerKey,
        kind: SyncKind,
        data: Vec<u8>,
        received_at: Instant,
    },
    Ephemeral {
        key: PeerKey,
        message: Message,
    },
    /// Another server node wrote this document to the shared store.
    StoreChanged,
    /// Writes settings (a restored backup) as a new change from the server;
    /// answers once it is durable.
    WriteSettings {
        settings: serde_json::Value,
        done: oneshot::Sender<Result<(), DocumentError>>,
    },
    Shutdown {
        done: oneshot::Sender<()>,
    },
    /// The loaded documents are over the memory budget: leave now if no
    /// peer is attached (ignored otherwise).
    Evict,
}

struct Entry {
    tx: mpsc::Sender<DocCommand>,
    generation: u64,
}

struct Inner {
    docs: Mutex<HashMap<DocumentId, Entry>>,
    store: Store,
    settings: DocumentSettings,
    generation: AtomicU64,
    budget: Mutex<MemoryBudget>,
}

/// All documents currently in memory.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

const MAILBOX: usize = 1024;
/// Commands handled together before one store write and one round of replies.
const BATCH: usize = 256;

impl Registry {
    pub fn new(store: Store, settings: DocumentSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                docs: Mutex::new(HashMap::new()),
                store,
                budget: Mutex::new(MemoryBudget::new(settings.memory_budget_bytes)),
                settings,
                generation: AtomicU64::new(0),
            }),
        }
    }

    /// Forwards another node's writes to the documents loaded here.
    pub fn follow(&self, mut feed: tokio::sync::broadcast::Receiver<crate::store::ChangeNotice>) {
        use crate::store::ChangeNotice;
        use tokio::sync::broadcast::error::RecvError;
        let registry = self.clone();
        tokio::spawn(async move {
            loop {
                let targets: Vec<mpsc::Sender<DocCommand>> = match feed.recv().await {
                    Ok(ChangeNotice::Written { document, .. }) => {
                        let docs = registry.inner.docs.lock().expect("registry mutex poisoned");
                        docs.get(&document)
                            .map(|e| e.tx.clone())
                            .into_iter()
                            .collect()
                    }
                    Ok(ChangeNotice::Resync) | Err(RecvError::Lagged(_)) => {
                        let docs = registry.inner.docs.lock().expect("registry mutex poisoned");
                        docs.values().map(|e| e.tx.clone()).collect()
                    }
                    Ok(ChangeNotice::AccessRevoked { .. } | ChangeNotice::Presence { .. }) => {
                        continue;
                    }
                    Err(RecvError::Closed) => return,
                };
                for tx in targets {
                    let _ = tx.send(DocCommand::StoreChanged).await;
                }
            }
        });
    }

    /// Writes `settings` into document `id` as a change from the server
    /// (a restored backup); returns once it is durable and sent to peers.
    pub async fn write_settings(
        &self,
        id: DocumentId,
        settings: serde_json::Value,
    ) -> Result<(), DocumentError> {
        // An actor may be leaving as we send: then try once more with a fresh one.
        for _ in 0..2 {
            let (done, answer) = oneshot::channel();
            let tx = self.get_or_spawn(id);
            if tx
                .send(DocCommand::WriteSettings {
                    settings: settings.clone(),
                    done,
                })
                .await
                .is_err()
            {
                continue;
            }
            match answer.await {
                Ok(result) => return result,
                Err(_) => continue,
            }
        }
        Err(DocumentError::Unavailable)
    }

    /// Documents in memory now.
    pub fn documents_loaded(&self) -> usize {
        self.inner
            .docs
            .lock()
            .expect("registry mutex poisoned")
            .len()
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    fn get_or_spawn(&self, id: DocumentId) -> mpsc::Sender<DocCommand> {
        let mut docs = self.inner.docs.lock().expect("registry mutex poisoned");
        if let Some(entry) = docs.get(&id) {
            return entry.tx.clone();
        }
        let (tx, rx) = mpsc::channel(MAILBOX);
        let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed);
        docs.insert(
            id,
            Entry {
                tx: tx.clone(),
                generation,
            },
        );
        actor::start(id, generation, self.inner.clone(), rx);
        tx
    }

    /// Attaches a connection to a document, loading it if needed. Returns the
    /// document's mailbox for the connection's later messages.
    pub async fn attach(
        &self,
        id: DocumentId,
        peer: PeerHandle,
    ) -> Result<mpsc::Sender<DocCommand>, DocumentError> {
        // A document may be evicted between lookup and attach; its actor then
        // drops our ack and we look it up again (a fresh actor reloads it).
        for _ in 0..8 {
            let tx = self.get_or_spawn(id);
            let (ack, ack_rx) = oneshot::channel();
            if tx
                .send(DocCommand::Attach {
                    peer: peer.clone(),
                    ack,
                })
                .await
                .is_err()
            {
                continue;
            }
            match ack_rx.await {
                Ok(Ok(())) => return Ok(tx),
                Ok(Err(e)) => return Err(e),
                Err(_) => continue,
            }
        }
        Err(DocumentError::NotAttached(id))
    }

    /// Stops every document actor after it has persisted what it holds.
    pub async fn shutdown(&self) {
        let senders: Vec<_> = {
            let mut docs = self.inner.docs.lock().expect("registry mutex poisoned");
            docs.drain().map(|(_, e)| e.tx).collect()
        };
        for tx in senders {
            let (done, done_rx) = oneshot::channel();
            if tx.send(DocCommand::Shutdown { done }).await.is_ok() {
                let _ = done_rx.await;
            }
        }
    }
}

impl Inner {
    /// An actor's size and idleness; asks the idle documents chosen by the
    /// budget to leave.
    fn report_usage(&self, id: DocumentId, generation: u64, bytes: u64, idle: bool) {
        let (leaving, total) = {
            let mut budget = self.budget.lock().expect("budget mutex poisoned");
            let leaving = budget.report((id, generation), bytes, idle, Instant::now());
            (leaving, budget.total_bytes())
        };
        metrics::gauge!(m::DOCUMENT_MEMORY_ESTIMATE).set(total as f64);
        if leaving.is_empty() {
            return;
        }
        let docs = self.docs.lock().expect("registry mutex poisoned");
        for (id, generation) in leaving {
            if let Some(entry) = docs.get(&id).filter(|e| e.generation == generation) {
                // A full mailbox means the document is busy: it stays.
                let _ = entry.tx.try_send(DocCommand::Evict);
            }
        }
    }

    fn forget_usage(&self, id: DocumentId, generation: u64) {
        let total = {
            let mut budget = self.budget.lock().expect("budget mutex poisoned");
            budget.remove((id, generation));
            budget.total_bytes()
        };
        metrics::gauge!(m::DOCUMENT_MEMORY_ESTIMATE).set(total as f64);
    }
}
