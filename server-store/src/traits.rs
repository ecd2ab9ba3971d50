//! The store's traits, one per job, so a caller takes only the job it needs
//! and a wrapper (a fault injector in tests) implements only the job it
//! changes. [`crate::Store`] holds one handle per job.

use async_trait::async_trait;
use sync_protocol::DocumentId;

use crate::audit::{AuditEntry, NewAuditEntry};
use crate::records::{
    AccessTokenRecord, ApiKeyInfo, AuditQuery, Challenge, Device, DocumentKind, DocumentScope,
    NewSession, RefreshTokenRecord, SettingsBackup, TokenHashes, UserSummary,
};
use crate::{
    ApiKey, ChangeNotice, ChunksAfter, Readiness, StoreError, StoredDocument, ThrottleLedger, User,
    new_id, normalize_email,
};
use api_types::Role;

/// Documents: their snapshots and chunks, and what kind of document each is
/// and whose (the basis of per-document rights).
#[async_trait]
pub trait DocumentStore: Send + Sync + 'static {
    /// The document's snapshot and chunks, or `None` if it was never stored.
    async fn load_document(&self, id: DocumentId) -> Result<Option<StoredDocument>, StoreError>;
    /// Appends one chunk of changes (creating the document on first write) and
    /// returns its sequence number. Durable when this returns.
    async fn append_chunk(&self, id: DocumentId, data: Vec<u8>) -> Result<u64, StoreError>;
    /// Appends a chunk and its audit entry (`entry`'s details get the
    /// chunk's `seq`); the seq once the chunk is durable. An audit entry that
    /// cannot be written is logged, never fails the write. Stores that can
    /// put both in one transaction, and several documents' writes in one
    /// commit, do (SQLite: group commit).
    async fn append_chunk_audited(
        &self,
        id: DocumentId,
        data: Vec<u8>,
        entry: NewAuditEntry,
    ) -> Result<u64, StoreError>;
    /// Replaces every chunk up to `through_seq` with `snapshot`, atomically.
    async fn compact(
        &self,
        id: DocumentId,
        snapshot: Vec<u8>,
        through_seq: u64,
    ) -> Result<(), StoreError>;
    /// Ids of every stored document.
    async fn list_documents(&self) -> Result<Vec<DocumentId>, StoreError>;
    /// Number of chunks not yet folded into a snapshot (for tests and metrics).
    async fn chunk_count(&self, id: DocumentId) -> Result<u64, StoreError>;
    /// Everything stored for the document after `after_seq` (see [`ChunksAfter`]).
    async fn chunks_after(&self, id: DocumentId, after_seq: u64)
    -> Result<ChunksAfter, StoreError>;
    /// Registers the document's kind and scope unless it has one; returns the
    /// registered scope (the existing one if it was registered before).
    /// `Conflict` when it would be a second organisation configuration.
    async fn register_document(
        &self,
        id: DocumentId,
        scope: &DocumentScope,
        created_by: &str,
        now_ms: i64,
    ) -> Result<DocumentScope, StoreError>;
    async fn document_scope(&self, id: DocumentId) -> Result<Option<DocumentScope>, StoreError>;
    /// Documents registered with this kind and scope (e.g. a member's settings), oldest first.
    async fn documents_with_scope(
        &self,
        scope: &DocumentScope,
    ) -> Result<Vec<DocumentId>, StoreError>;
    /// Every document registered with `kind`, with its scope, oldest first.
    async fn documents_of_kind(
        &self,
        kind: DocumentKind,
    ) -> Result<Vec<(DocumentId, String)>, StoreError>;
}

/// Accounts and sessions: users and their second factors, staff
/// assignments, devices, sessions and their hashed tokens, sign-in
/// challenges and API keys. Times are unix milliseconds passed in by the
/// caller, so the rules in the server's `identity::session` need no clock.
#[async_trait]
pub trait AccountStore: Send + Sync + 'static {
    /// Stores a new user; false if the (normalised) email is taken.
    async fn insert_user(&self, user: &User) -> Result<bool, StoreError>;
    /// The user with this email, already normalised ([`normalize_email`]).
    async fn user_by_normalized_email(&self, email: &str) -> Result<Option<User>, StoreError>;
    async fn insert_device(&self, device: &Device) -> Result<(), StoreError>;
    /// Stores a session and its first token pair, atomically.
    async fn insert_session(
        &self,
        session: &NewSession,
        tokens: &TokenHashes,
    ) -> Result<(), StoreError>;
    async fn insert_api_key(&self, key: &ApiKey, token_hash: &str) -> Result<(), StoreError>;

    // What follows builds the records the backends store, once for every
    // backend: ids, the email's normal form, a new device's times.

    /// Creates a user; `Conflict` if the (lower-cased) email is taken.
    async fn create_user(
        &self,
        email: &str,
        role: Role,
        password_hash: &str,
    ) -> Result<User, StoreError> {
        let user = User::new(email, role, password_hash);
        if !self.insert_user(&user).await? {
            return Err(StoreError::Conflict(format!("user {}", user.email)));
        }
        Ok(user)
    }
    async fn user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        self.user_by_normalized_email(&normalize_email(email)).await
    }
    /// Registers a device for `user_id`, first seen now.
    async fn create_device(
        &self,
        user_id: &str,
        name: &str,
        app_version: &str,
        now_ms: i64,
    ) -> Result<Device, StoreError> {
        let device = Device::new(user_id, name, app_version, now_ms);
        self.insert_device(&device).await?;
        Ok(device)
    }
    /// Starts a session with its first token pair; the session's id.
    async fn create_session(
        &self,
        user_id: &str,
        device_id: &str,
        second_factor_ms: Option<i64>,
        tokens: &TokenHashes,
        now_ms: i64,
    ) -> Result<String, StoreError> {
        let session = NewSession {
            id: new_id(),
            user_id: user_id.to_owned(),
            device_id: device_id.to_owned(),
            created_ms: now_ms,
            second_factor_ms,
        };
        self.insert_session(&session, tokens).await?;
        Ok(session.id)
    }
    async fn create_api_key(
        &self,
        name: &str,
        role: Role,
        token_hash: &str,
    ) -> Result<ApiKey, StoreError> {
        let key = ApiKey {
            id: new_id(),
            name: name.to_owned(),
            role,
        };
        self.insert_api_key(&key, token_hash).await?;
        Ok(key)
    }
    async fn user_by_id(&self, id: &str) -> Result<Option<User>, StoreError>;
    async fn list_users(&self) -> Result<Vec<UserSummary>, StoreError>;
    /// False if there is no such user.
    async fn set_user_role(&self, id: &str, role: Role) -> Result<bool, StoreError>;
    async fn set_user_disabled(&self, id: &str, disabled: bool) -> Result<bool, StoreError>;
    async fn set_password_hash(&self, id: &str, hash: &str) -> Result<bool, StoreError>;
    /// Starts (or restarts) TOTP enrollment with a new secret, unconfirmed.
    async fn set_totp_secret(&self, user_id: &str, secret: &str) -> Result<(), StoreError>;
    /// Records `step` as the newest accepted TOTP step, atomically: false if
    /// it is not newer than the stored one (a replay, even across nodes).
    /// `confirm` also marks the enrollment confirmed.
    async fn accept_totp_step(
        &self,
        user_id: &str,
        step: u64,
        confirm: bool,
    ) -> Result<bool, StoreError>;
    /// Forgets the TOTP secret, its last step and the recovery codes.
    async fn reset_totp(&self, id: &str) -> Result<bool, StoreError>;
    /// Replaces the user's recovery codes with these hashes.
    async fn replace_recovery_codes(
        &self,
        user_id: &str,
        hashes: &[String],
    ) -> Result<(), StoreError>;
    /// Uses a recovery code once: false if unknown or already used.
    async fn consume_recovery_code(&self, user_id: &str, hash: &str) -> Result<bool, StoreError>;
    async fn set_assignments(&self, user_id: &str, events: &[String]) -> Result<(), StoreError>;
    async fn assignments(&self, user_id: &str) -> Result<Vec<String>, StoreError>;
    async fn device(&self, id: &str) -> Result<Option<Device>, StoreError>;
    /// One user's devices, or every device when `user_id` is `None`.
    async fn list_devices(&self, user_id: Option<&str>) -> Result<Vec<Device>, StoreError>;
    /// Marks the device revoked and ends its sessions; false if unknown or already revoked.
    async fn revoke_device(&self, id: &str, now_ms: i64) -> Result<bool, StoreError>;
    /// Records contact (at most once a minute is written).
    async fn touch_device(
        &self,
        id: &str,
        app_version: &str,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    async fn access_token(&self, hash: &str) -> Result<Option<AccessTokenRecord>, StoreError>;
    async fn refresh_token(&self, hash: &str) -> Result<Option<RefreshTokenRecord>, StoreError>;
    /// Marks the refresh token used and stores the next pair, atomically:
    /// false (and nothing stored) if it was already used.
    async fn exchange_refresh_token(
        &self,
        hash: &str,
        next: &TokenHashes,
        now_ms: i64,
    ) -> Result<bool, StoreError>;
    async fn revoke_session(&self, id: &str, reason: &str, now_ms: i64)
    -> Result<bool, StoreError>;
    /// Ends every live session of the user (but `except`); returns their ids.
    async fn revoke_user_sessions(
        &self,
        user_id: &str,
        except: Option<&str>,
        reason: &str,
        now_ms: i64,
    ) -> Result<Vec<String>, StoreError>;
    /// Whether the session, its device and its user are all still in good standing.
    async fn session_live(&self, session_id: &str) -> Result<bool, StoreError>;
    async fn record_second_factor(&self, session_id: &str, now_ms: i64) -> Result<(), StoreError>;
    /// Deletes tokens and challenges past their expiry, and sessions ended
    /// more than 30 days ago; returns how many rows went. (A used refresh
    /// token is kept until it expires, so reuse stays detectable that long.)
    async fn prune_expired(&self, now_ms: i64) -> Result<u64, StoreError>;
    async fn create_challenge(&self, hash: &str, challenge: &Challenge) -> Result<(), StoreError>;
    async fn challenge(&self, hash: &str) -> Result<Option<Challenge>, StoreError>;
    /// Uses a challenge once; false if already used.
    async fn use_challenge(&self, hash: &str, now_ms: i64) -> Result<bool, StoreError>;
    /// The live (unrevoked) key with this token hash; records its use.
    async fn authenticate_api_key(&self, token_hash: &str) -> Result<Option<ApiKey>, StoreError>;
    async fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>, StoreError>;
    /// False if unknown or already revoked.
    async fn revoke_api_key(&self, id: &str) -> Result<bool, StoreError>;
}

/// The hash-chained audit log.
#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Appends to the hash-chained audit log (serialised across writers).
    async fn append_audit(&self, entry: NewAuditEntry) -> Result<AuditEntry, StoreError>;
    /// Up to `limit` entries after `after_seq`, in order.
    async fn audit_entries(
        &self,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError>;
    /// The chain's recorded head: last sequence number and hash.
    async fn audit_head(&self) -> Result<(u64, String), StoreError>;
    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError>;
}

/// Backups of members' settings documents (the history a member restores from).
#[async_trait]
pub trait SettingsHistory: Send + Sync + 'static {
    async fn add_settings_backup(&self, backup: &SettingsBackup) -> Result<(), StoreError>;
    /// A document's backups, newest first.
    async fn settings_backups(&self, id: DocumentId) -> Result<Vec<SettingsBackup>, StoreError>;
    async fn delete_settings_backups(&self, ids: &[String]) -> Result<(), StoreError>;
}

/// Values sealed at rest: shared secrets (made once, the same on every node)
/// and TOTP secrets, each replaced only if it still holds what the caller read.
#[async_trait]
pub trait SecretStore: Send + Sync + 'static {
    /// The named secret shared by all nodes, created from `candidate` if absent.
    async fn shared_secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>, StoreError>;
    /// Replaces a shared secret's stored form, only if it is still `expected`
    /// (sealing, rotation); false when another writer got there first.
    async fn replace_shared_secret(
        &self,
        name: &str,
        expected: &[u8],
        value: &[u8],
    ) -> Result<bool, StoreError>;
    /// Every stored TOTP secret, as `(user id, stored form)`.
    async fn totp_secrets(&self) -> Result<Vec<(String, String)>, StoreError>;
    /// Replaces a TOTP secret's stored form (enrollment state unchanged),
    /// only if it is still `expected`.
    async fn replace_totp_secret(
        &self,
        user_id: &str,
        expected: &str,
        value: &str,
    ) -> Result<bool, StoreError>;
}

/// The database itself and the other server nodes sharing it: readiness,
/// shutdown, and what a multi-node store tells (writes, revocations,
/// presence, shared sign-in throttling). A single-node store keeps the defaults.
#[async_trait]
pub trait StoreNode: Send + Sync + 'static {
    /// Reachable, and its schema is the one this build expects.
    async fn readiness(&self) -> Result<Readiness, StoreError>;
    /// Flushes and releases the database (graceful shutdown).
    async fn close(&self) -> Result<(), StoreError>;
    /// Writes by other nodes sharing this store, for stores that can have
    /// several nodes; `None` for a single-node store.
    fn change_feed(&self) -> Option<tokio::sync::broadcast::Receiver<ChangeNotice>> {
        None
    }
    /// Tells the other nodes sharing this store to close connections of
    /// `kind`/`id` (see [`ChangeNotice::AccessRevoked`]); nothing to do alone.
    async fn announce_revocation(&self, _kind: &str, _id: &str) -> Result<(), StoreError> {
        Ok(())
    }
    /// Tells the other nodes sharing this store what this node heard of
    /// presence (see [`ChangeNotice::Presence`]); nothing to do alone.
    async fn announce_presence(&self, _note: &str) -> Result<(), StoreError> {
        Ok(())
    }
    /// Failure records shared with the other nodes (`None`: this node alone).
    fn throttle_ledger(&self) -> Option<&dyn ThrottleLedger> {
        None
    }
}
