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
use sync_server::audit::{AuditEntry, NewAuditEntry};
use sync_server::auth::Role;
use sync_server::store::{
    ApiKey, ChunksAfter, Readiness, SqliteStore, Store, StoreError, StoredDocument, User,
};
use sync_tests::{create_token, test_config, wait_until};

const LIMIT: Duration = Duration::from_secs(20);

/// The real SQLite store, with a switch that makes chunk writes fail.
struct FlakyStore {
    inner: SqliteStore,
    fail_writes: AtomicBool,
}

#[async_trait]
impl Store for FlakyStore {
    async fn load_document(&self, id: DocumentId) -> Result<Option<StoredDocument>, StoreError> {
        self.inner.load_document(id).await
    }
    async fn append_chunk(&self, id: DocumentId, data: Vec<u8>) -> Result<u64, StoreError> {
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(StoreError::Database("disk I/O error (injected)".into()));
        }
        self.inner.append_chunk(id, data).await
    }
    async fn compact(
        &self,
        id: DocumentId,
        snapshot: Vec<u8>,
        through_seq: u64,
    ) -> Result<(), StoreError> {
        self.inner.compact(id, snapshot, through_seq).await
    }
    async fn list_documents(&self) -> Result<Vec<DocumentId>, StoreError> {
        self.inner.list_documents().await
    }
    async fn chunk_count(&self, id: DocumentId) -> Result<u64, StoreError> {
        self.inner.chunk_count(id).await
    }
    async fn create_api_key(
        &self,
        name: &str,
        role: Role,
        token_hash: &str,
    ) -> Result<ApiKey, StoreError> {
        self.inner.create_api_key(name, role, token_hash).await
    }
    async fn authenticate_api_key(&self, token_hash: &str) -> Result<Option<ApiKey>, StoreError> {
        self.inner.authenticate_api_key(token_hash).await
    }
    async fn readiness(&self) -> Result<Readiness, StoreError> {
        self.inner.readiness().await
    }
    async fn close(&self) -> Result<(), StoreError> {
        self.inner.close().await
    }
    async fn chunks_after(
        &self,
        id: DocumentId,
        after_seq: u64,
    ) -> Result<ChunksAfter, StoreError> {
        self.inner.chunks_after(id, after_seq).await
    }
    async fn append_audit(&self, entry: NewAuditEntry) -> Result<AuditEntry, StoreError> {
        self.inner.append_audit(entry).await
    }
    async fn audit_entries(
        &self,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.inner.audit_entries(after_seq, limit).await
    }
    async fn audit_head(&self) -> Result<(u64, String), StoreError> {
        self.inner.audit_head().await
    }
    async fn create_user(
        &self,
        email: &str,
        role: Role,
        password_hash: &str,
    ) -> Result<User, StoreError> {
        self.inner.create_user(email, role, password_hash).await
    }
    async fn user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        self.inner.user_by_email(email).await
    }
    async fn set_totp_secret(&self, user_id: &str, secret: &str) -> Result<(), StoreError> {
        self.inner.set_totp_secret(user_id, secret).await
    }
    async fn accept_totp_step(
        &self,
        user_id: &str,
        step: u64,
        confirm: bool,
    ) -> Result<bool, StoreError> {
        self.inner.accept_totp_step(user_id, step, confirm).await
    }
    async fn replace_recovery_codes(
        &self,
        user_id: &str,
        hashes: &[String],
    ) -> Result<(), StoreError> {
        self.inner.replace_recovery_codes(user_id, hashes).await
    }
    async fn consume_recovery_code(&self, user_id: &str, hash: &str) -> Result<bool, StoreError> {
        self.inner.consume_recovery_code(user_id, hash).await
    }
}

sync_server::delegate_session_store!(FlakyStore, inner);

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
    let store = Arc::new(FlakyStore {
        inner: SqliteStore::open(&server_dir, false).unwrap(),
        fail_writes: AtomicBool::new(false),
    });
    let server =
        sync_server::start_with_store(&test_config(&server_dir), store.clone(), "flaky".into())
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

    store.fail_writes.store(true, Ordering::SeqCst);
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

    store.fail_writes.store(false, Ordering::SeqCst);
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
