//! Fault injection in the store: while writes fail, the server acknowledges
//! nothing and keeps nothing in memory that the store lacks; once the store
//! recovers, the client's waiting changes land and nothing is lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use automerge::transaction::Transactable;
use automerge::{ROOT, ReadDoc};
use client_core::{ClientCore, SyncConfig};
use sync_protocol::DocumentId;
use sync_server::audit::NewAuditEntry;
use sync_server::auth::Role;
use sync_server::store::records::{DocumentKind, DocumentScope};
use sync_server::store::{
    ChunksAfter, DocumentStore, SqliteStore, Store, StoreError, StoredDocument,
};
use sync_tests::{create_token, test_config, wait_until};

const LIMIT: Duration = Duration::from_secs(20);

/// The real SQLite store's documents, with a switch that makes chunk writes
/// fail; every other job of the store is the real one, untouched.
struct FlakyDocuments {
    inner: Arc<dyn DocumentStore>,
    fail_writes: AtomicBool,
}

impl FlakyDocuments {
    fn refuse(&self) -> Result<(), StoreError> {
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(StoreError::Database("disk I/O error (injected)".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl DocumentStore for FlakyDocuments {
    async fn append_chunk(&self, id: DocumentId, data: Vec<u8>) -> Result<u64, StoreError> {
        self.refuse()?;
        self.inner.append_chunk(id, data).await
    }
    async fn append_chunk_audited(
        &self,
        id: DocumentId,
        data: Vec<u8>,
        entry: NewAuditEntry,
    ) -> Result<u64, StoreError> {
        self.refuse()?;
        self.inner.append_chunk_audited(id, data, entry).await
    }
    // The rest as stored.
    async fn load_document(&self, id: DocumentId) -> Result<Option<StoredDocument>, StoreError> {
        self.inner.load_document(id).await
    }
    async fn compact(
        &self,
        id: DocumentId,
        snapshot: Vec<u8>,
        through: u64,
    ) -> Result<(), StoreError> {
        self.inner.compact(id, snapshot, through).await
    }
    async fn list_documents(&self) -> Result<Vec<DocumentId>, StoreError> {
        self.inner.list_documents().await
    }
    async fn chunk_count(&self, id: DocumentId) -> Result<u64, StoreError> {
        self.inner.chunk_count(id).await
    }
    async fn chunks_after(&self, id: DocumentId, after: u64) -> Result<ChunksAfter, StoreError> {
        self.inner.chunks_after(id, after).await
    }
    async fn register_document(
        &self,
        id: DocumentId,
        scope: &DocumentScope,
        created_by: &str,
        now_ms: i64,
    ) -> Result<DocumentScope, StoreError> {
        self.inner
            .register_document(id, scope, created_by, now_ms)
            .await
    }
    async fn document_scope(&self, id: DocumentId) -> Result<Option<DocumentScope>, StoreError> {
        self.inner.document_scope(id).await
    }
    async fn documents_with_scope(
        &self,
        scope: &DocumentScope,
    ) -> Result<Vec<DocumentId>, StoreError> {
        self.inner.documents_with_scope(scope).await
    }
    async fn documents_of_kind(
        &self,
        kind: DocumentKind,
    ) -> Result<Vec<(DocumentId, String)>, StoreError> {
        self.inner.documents_of_kind(kind).await
    }
}

fn value(core: &ClientCore, id: DocumentId, key: &str) -> Option<i64> {
    core.read(id, |d| {
        d.get(ROOT, key)
            .ok()
            .flatten()
            .and_then(|(v, _)| v.as_i64())
    })
    .ok()
    .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_store_writes_are_never_acknowledged_and_land_after_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let server_dir = dir.path().join("server");
    let token = create_token(&server_dir, Role::Admin).await;
    let real = Store::new(SqliteStore::open(&server_dir, false).unwrap());
    let documents = Arc::new(FlakyDocuments {
        inner: real.documents.clone(),
        fail_writes: AtomicBool::new(false),
    });
    let store = Store {
        documents: documents.clone(),
        ..real
    };
    let server = sync_server::start_with_store(&test_config(&server_dir), store, "flaky".into())
        .await
        .unwrap();
    let config = SyncConfig {
        min_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        ..SyncConfig::new(server.sync_url(), &token)
    };

    let a = ClientCore::open(dir.path().join("a.sqlite3")).unwrap();
    let sync_a = a.start_sync(config.clone());
    let id = a.create_document().unwrap();
    a.change(id, |tx| tx.put(ROOT, "before", 1)).unwrap();
    wait_until("the first change is confirmed", LIMIT, || async {
        a.sync_status().pending_changes == 0
    })
    .await;

    documents.fail_writes.store(true, Ordering::SeqCst);
    a.change(id, |tx| tx.put(ROOT, "during", 2)).unwrap();
    wait_until("the failure reaches the client", LIMIT, || async {
        a.sync_status()
            .last_error
            .is_some_and(|e| e.contains("store write failed"))
    })
    .await;
    // Never acknowledged, and not in the store.
    assert_eq!(a.sync_status().pending_changes, 1);
    let b = ClientCore::open(dir.path().join("b.sqlite3")).unwrap();
    let sync_b = b.start_sync(config.clone());
    b.find(id).unwrap();
    wait_until("b sees the durable state", LIMIT, || async {
        value(&b, id, "before") == Some(1)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        value(&b, id, "during"),
        None,
        "a change the store refused was forwarded"
    );

    documents.fail_writes.store(false, Ordering::SeqCst);
    wait_until("a's waiting change lands", LIMIT, || async {
        a.sync_status().pending_changes == 0
    })
    .await;
    wait_until("b receives it", LIMIT, || async {
        value(&b, id, "during") == Some(2)
    })
    .await;

    sync_a.stop().await;
    sync_b.stop().await;
    server.shutdown().await.unwrap();
}
