//! The PostgreSQL store, for production and for several server nodes sharing
//! one database. Same contract as the SQLite store; sequence numbers are
//! allocated under the document row's lock so concurrent writers never collide.

mod accounts;

use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool_postgres::{Pool, Runtime};
use futures_util::StreamExt;
use migrations::{AppliedMigration, Migrator, PostgresBackend, SERVER_POSTGRES, check_applied};
use sync_protocol::DocumentId;
use tokio::sync::{broadcast, watch};
use tokio_postgres::{AsyncMessage, NoTls};

use crate::audit::{AuditEntry, NewAuditEntry, next_entry};
use crate::records::{AuditQuery, DocumentKind, DocumentScope, ORG_CONFIG_TAKEN};
use crate::sql::parse_kind;
use crate::{AuditStore, DocumentStore, StoreNode};
use crate::{ChangeNotice, ChunksAfter, Readiness, StoreError, StoredDocument, User};

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::Database(e.to_string())
    }
}

/// The channel writes are announced on (NOTIFY is delivered at commit).
const CHANNEL: &str = "sync_document_written";
/// The channel access revocations are announced on: `<node> <kind> <id>`.
const REVOKE_CHANNEL: &str = "sync_access_revoked";
const PRESENCE_CHANNEL: &str = "sync_presence";

#[derive(Clone)]
pub struct PostgresStore {
    pub(super) pool: Pool,
    /// This process's id in change notices, to skip its own writes.
    node_id: String,
    feed: broadcast::Sender<ChangeNotice>,
    stop_feed: watch::Sender<bool>,
}

/// Applies pending migrations (refusing edited history) with a blocking
/// client, off the async runtime.
pub async fn migrate(url: &str) -> Result<u32, StoreError> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls)
            .map_err(|e| StoreError::Database(format!("connecting to PostgreSQL: {e}")))?;
        let mut migrator = Migrator::new(&SERVER_POSTGRES, PostgresBackend::new(&mut client))?;
        migrator.up(None)?;
        Ok(migrator.current_version()?)
    })
    .await
    .map_err(|e| StoreError::Task(e.to_string()))?
}

impl PostgresStore {
    /// Connects, migrates, and opens a connection pool.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        migrate(url).await?;
        let mut config = deadpool_postgres::Config::new();
        config.url = Some(url.to_owned());
        let pool = config
            .create_pool(Some(Runtime::Tokio1), NoTls)
            .map_err(|e| StoreError::Database(format!("creating pool: {e}")))?;
        // Fail now, not at the first request, if the database is unreachable.
        drop(pool.get().await?);
        let node_id = uuid::Uuid::new_v4().simple().to_string();
        let (feed, _) = broadcast::channel(4096);
        let (stop_feed, stop_rx) = watch::channel(false);
        tokio::spawn(listen(
            url.to_owned(),
            node_id.clone(),
            feed.clone(),
            stop_rx,
        ));
        Ok(Self {
            pool,
            node_id,
            feed,
            stop_feed,
        })
    }

    /// What a document holds after `after_seq` (0: all of it), from one
    /// snapshot of both tables, so a concurrent compaction cannot slip
    /// between; `None` if the document was never stored.
    async fn read_since(
        &self,
        id: DocumentId,
        after_seq: u64,
    ) -> Result<Option<ChunksAfter>, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let key = id.to_string();
        let Some(row) = tx
            .query_opt(
                "SELECT snapshot, snapshot_seq FROM documents WHERE id = $1",
                &[&key],
            )
            .await?
        else {
            return Ok(None);
        };
        let snapshot_seq = row.get::<_, i64>(1) as u64;
        let mut out = ChunksAfter {
            through_seq: after_seq.max(snapshot_seq),
            ..ChunksAfter::default()
        };
        if after_seq == 0 || snapshot_seq > after_seq {
            out.snapshot = row.get(0);
        }
        let rows = tx
            .query(
                "SELECT seq, data FROM document_chunks WHERE document_id = $1 AND seq > $2 ORDER BY seq",
                &[&key, &(out.through_seq as i64)],
            )
            .await?;
        tx.commit().await?;
        for r in rows {
            let seq = r.get::<_, i64>(0) as u64;
            out.through_seq = seq;
            out.chunks.push((seq, r.get(1)));
        }
        Ok(Some(out))
    }

    fn timed(op: &'static str, started: Instant) {
        metrics::histogram!(crate::metrics::STORE_SECONDS, "op" => op)
            .record(started.elapsed().as_secs_f64());
    }
}

/// The columns of an audit entry, in the order [`audit_entry_from_row`] reads.
pub(super) const AUDIT_COLUMNS: &str =
    "seq, at, actor, device, address, action, target, result, details, prev_hash, hash";

pub(super) fn audit_entry_from_row(r: &tokio_postgres::Row) -> AuditEntry {
    let details: String = r.get(8);
    AuditEntry {
        seq: r.get::<_, i64>(0) as u64,
        at: r.get(1),
        entry: NewAuditEntry {
            actor: r.get(2),
            device: r.get(3),
            address: r.get(4),
            action: r.get(5),
            target: r.get(6),
            result: r.get(7),
            details: serde_json::from_str(&details).unwrap_or(serde_json::Value::String(details)),
        },
        prev_hash: r.get(9),
        hash: r.get(10),
    }
}

/// The columns [`user_from_row`] reads, in order.
/// A user from [`crate::sql::USER_COLUMNS`] starting at column `start`.
pub(super) fn user_from_row(r: &tokio_postgres::Row, start: usize) -> Result<User, StoreError> {
    let id: String = r.get(start);
    let role: String = r.get(start + 2);
    Ok(User {
        role: role
            .parse()
            .map_err(|_| StoreError::Database(format!("user {id} has unknown role {role}")))?,
        id,
        email: r.get(start + 1),
        password_hash: r.get(start + 3),
        totp_secret: r.get(start + 4),
        totp_confirmed: r.get(start + 5),
        totp_last_step: r.get::<_, Option<i64>>(start + 6).map(|s| s as u64),
        disabled: r.get(start + 7),
    })
}

fn parse_id(text: &str) -> Result<DocumentId, StoreError> {
    DocumentId::parse(text).map_err(|e| StoreError::Database(e.to_string()))
}

#[async_trait]
impl DocumentStore for PostgresStore {
    async fn load_document(&self, id: DocumentId) -> Result<Option<StoredDocument>, StoreError> {
        let started = Instant::now();
        let document = self.read_since(id, 0).await?.map(StoredDocument::from);
        Self::timed("load_document", started);
        Ok(document)
    }

    /// The two writes, one after the other: PostgreSQL's writes are
    /// committed per connection, with no group commit to share.
    async fn append_chunk_audited(
        &self,
        id: DocumentId,
        data: Vec<u8>,
        entry: NewAuditEntry,
    ) -> Result<u64, StoreError> {
        let seq = self.append_chunk(id, data).await?;
        if let Err(error) = self.append_audit(entry.with_seq(seq)).await {
            tracing::error!(%error, "audit log write failed");
        }
        Ok(seq)
    }

    async fn append_chunk(&self, id: DocumentId, data: Vec<u8>) -> Result<u64, StoreError> {
        let started = Instant::now();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let key = id.to_string();
        let seq: i64 = tx
            .query_one(
                "INSERT INTO documents (id, last_seq) VALUES ($1, 1)
                 ON CONFLICT (id) DO UPDATE SET last_seq = documents.last_seq + 1, updated_at = now()
                 RETURNING last_seq",
                &[&key],
            )
            .await?
            .get(0);
        tx.execute(
            "INSERT INTO document_chunks (document_id, seq, data) VALUES ($1, $2, $3)",
            &[&key, &seq, &data],
        )
        .await?;
        // Other nodes holding this document catch up from the store on this notice.
        let notice = format!("{} {key} {seq}", self.node_id);
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &notice])
            .await?;
        tx.commit().await?;
        Self::timed("append_chunk", started);
        Ok(seq as u64)
    }

    async fn compact(
        &self,
        id: DocumentId,
        snapshot: Vec<u8>,
        through_seq: u64,
    ) -> Result<(), StoreError> {
        let started = Instant::now();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let key = id.to_string();
        let through = through_seq as i64;
        // Another node may already have compacted further; its snapshot then
        // holds everything ours does.
        tx.execute(
            "UPDATE documents SET snapshot = $2, snapshot_seq = $3, updated_at = now()
             WHERE id = $1 AND snapshot_seq < $3",
            &[&key, &snapshot, &through],
        )
        .await?;
        tx.execute(
            "DELETE FROM document_chunks WHERE document_id = $1 AND seq <= $2",
            &[&key, &through],
        )
        .await?;
        tx.commit().await?;
        Self::timed("compact", started);
        Ok(())
    }

    async fn list_documents(&self) -> Result<Vec<DocumentId>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query("SELECT id FROM documents ORDER BY id", &[])
            .await?;
        rows.iter().map(|r| parse_id(r.get(0))).collect()
    }

    async fn chunk_count(&self, id: DocumentId) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM document_chunks WHERE document_id = $1",
                &[&id.to_string()],
            )
            .await?
            .get(0);
        Ok(n as u64)
    }

    async fn chunks_after(
        &self,
        id: DocumentId,
        after_seq: u64,
    ) -> Result<ChunksAfter, StoreError> {
        let started = Instant::now();
        let fetched = self.read_since(id, after_seq).await?.unwrap_or_default();
        Self::timed("chunks_after", started);
        Ok(fetched)
    }

    async fn register_document(
        &self,
        id: DocumentId,
        scope: &DocumentScope,
        created_by: &str,
        now_ms: i64,
    ) -> Result<DocumentScope, StoreError> {
        let client = self.pool.get().await?;
        let key = id.to_string();
        client
            .execute(
                "INSERT INTO document_scopes (document_id, kind, scope, created_by, created_ms)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                &[
                    &key,
                    &scope.kind.as_str(),
                    &scope.scope,
                    &created_by,
                    &now_ms,
                ],
            )
            .await?;
        drop(client);
        self.document_scope(id)
            .await?
            .ok_or_else(|| StoreError::Conflict(ORG_CONFIG_TAKEN.into()))
    }

    async fn document_scope(&self, id: DocumentId) -> Result<Option<DocumentScope>, StoreError> {
        let client = self.pool.get().await?;
        client
            .query_opt(
                "SELECT kind, scope FROM document_scopes WHERE document_id = $1",
                &[&id.to_string()],
            )
            .await?
            .map(|r| {
                Ok(DocumentScope {
                    kind: parse_kind(r.get(0))?,
                    scope: r.get(1),
                })
            })
            .transpose()
    }

    async fn documents_with_scope(
        &self,
        scope: &DocumentScope,
    ) -> Result<Vec<DocumentId>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT document_id FROM document_scopes WHERE kind = $1 AND scope = $2
                 ORDER BY created_ms, document_id",
                &[&scope.kind.as_str(), &scope.scope],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let text: &str = r.get(0);
                DocumentId::parse(text).map_err(|e| StoreError::Database(format!("{text}: {e}")))
            })
            .collect()
    }

    async fn documents_of_kind(
        &self,
        kind: DocumentKind,
    ) -> Result<Vec<(DocumentId, String)>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT document_id, scope FROM document_scopes WHERE kind = $1
                 ORDER BY created_ms, document_id",
                &[&kind.as_str()],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let text: &str = r.get(0);
                let id = DocumentId::parse(text)
                    .map_err(|e| StoreError::Database(format!("{text}: {e}")))?;
                Ok((id, r.get(1)))
            })
            .collect()
    }
}

#[async_trait]
impl AuditStore for PostgresStore {
    async fn append_audit(&self, entry: NewAuditEntry) -> Result<AuditEntry, StoreError> {
        let started = Instant::now();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // The head row lock orders appenders on every node into one chain.
        let head = tx
            .query_one(
                "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE",
                &[],
            )
            .await?;
        let at: String = tx
            .query_one(
                "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
                &[],
            )
            .await?
            .get(0);
        let stored = next_entry(head.get::<_, i64>(0) as u64, head.get(1), at, entry);
        let e = &stored.entry;
        tx.execute(
            "INSERT INTO audit_log (seq, at, actor, device, address, action, target, result, details, prev_hash, hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            &[
                &(stored.seq as i64),
                &stored.at,
                &e.actor,
                &e.device,
                &e.address,
                &e.action,
                &e.target,
                &e.result,
                &e.details.to_string(),
                &stored.prev_hash,
                &stored.hash,
            ],
        )
        .await?;
        tx.execute(
            "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1",
            &[&(stored.seq as i64), &stored.hash],
        )
        .await?;
        tx.commit().await?;
        Self::timed("append_audit", started);
        Ok(stored)
    }

    async fn audit_entries(
        &self,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT seq, at, actor, device, address, action, target, result, details, prev_hash, hash
                 FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&(after_seq as i64), &(limit as i64)],
            )
            .await?;
        Ok(rows.iter().map(audit_entry_from_row).collect())
    }

    async fn audit_head(&self) -> Result<(u64, String), StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_one("SELECT seq, hash FROM audit_head WHERE id = 1", &[])
            .await?;
        Ok((row.get::<_, i64>(0) as u64, row.get(1)))
    }

    async fn query_audit(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit_log
                     WHERE seq > $1 AND ($3::text IS NULL OR action = $3) AND ($4::text IS NULL OR actor = $4)
                       AND ($5::text IS NULL OR result = $5) AND ($6::text IS NULL OR at >= $6)
                     ORDER BY seq LIMIT $2"
                ),
                &[
                    &(q.after_seq as i64),
                    &i64::from(q.limit),
                    &q.action,
                    &q.actor,
                    &q.result,
                    &q.since,
                ],
            )
            .await?;
        Ok(rows.iter().map(audit_entry_from_row).collect())
    }
}

#[async_trait]
impl StoreNode for PostgresStore {
    async fn readiness(&self) -> Result<Readiness, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query("SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version", &[])
            .await?;
        let applied: Vec<AppliedMigration> = rows
            .iter()
            .map(|r| AppliedMigration {
                version: r.get::<_, i32>(0) as u32,
                name: r.get(1),
                checksum: r.get(2),
                applied_at: r.get(3),
            })
            .collect();
        check_applied(&SERVER_POSTGRES, &applied)?;
        Ok(Readiness {
            schema_version: applied.iter().map(|a| a.version).max().unwrap_or(0),
            expected_version: SERVER_POSTGRES.latest_version(),
        })
    }

    async fn close(&self) -> Result<(), StoreError> {
        let _ = self.stop_feed.send(true);
        self.pool.close();
        Ok(())
    }

    fn change_feed(&self) -> Option<broadcast::Receiver<ChangeNotice>> {
        Some(self.feed.subscribe())
    }

    async fn announce_revocation(&self, kind: &str, id: &str) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client
            .execute(
                &format!("SELECT pg_notify('{REVOKE_CHANNEL}', $1)"),
                &[&format!("{} {kind} {id}", self.node_id)],
            )
            .await?;
        Ok(())
    }

    fn throttle_ledger(&self) -> Option<&dyn crate::ThrottleLedger> {
        Some(self)
    }

    async fn announce_presence(&self, note: &str) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client
            .execute(
                &format!("SELECT pg_notify('{PRESENCE_CHANNEL}', $1)"),
                &[&format!("{} {note}", self.node_id)],
            )
            .await?;
        Ok(())
    }
}

/// Listens for other nodes' writes on a dedicated connection, reconnecting
/// with backoff; after any gap it announces `Resync`, since NOTIFYs sent
/// while disconnected are lost.
async fn listen(
    url: String,
    node_id: String,
    feed: broadcast::Sender<ChangeNotice>,
    mut stop: watch::Receiver<bool>,
) {
    let mut delay = Duration::from_millis(100);
    loop {
        let session = async {
            let (client, mut connection) = tokio_postgres::connect(&url, NoTls).await?;
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let driver = tokio::spawn(async move {
                let mut messages =
                    futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                while let Some(message) = messages.next().await {
                    match message {
                        Ok(AsyncMessage::Notification(n)) => {
                            if tx
                                .send((n.channel().to_owned(), n.payload().to_owned()))
                                .is_err()
                            {
                                break;
                            }
                        }
                        Ok(_) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            });
            client
                .batch_execute(&format!(
                    "LISTEN {CHANNEL}; LISTEN {REVOKE_CHANNEL}; LISTEN {PRESENCE_CHANNEL}"
                ))
                .await?;
            // Anything written before LISTEN took effect is picked up here.
            let _ = feed.send(ChangeNotice::Resync);
            while let Some((channel, payload)) = rx.recv().await {
                if channel == PRESENCE_CHANNEL {
                    if let Some((node, note)) = payload.split_once(' ')
                        && node != node_id
                    {
                        let _ = feed.send(ChangeNotice::Presence {
                            node: node.to_owned(),
                            note: note.to_owned(),
                        });
                    }
                    continue;
                }
                let mut parts = payload.split(' ');
                if channel == REVOKE_CHANNEL {
                    if let (Some(node), Some(kind), Some(id)) =
                        (parts.next(), parts.next(), parts.next())
                        && node != node_id
                    {
                        let _ = feed.send(ChangeNotice::AccessRevoked {
                            kind: kind.to_owned(),
                            id: id.to_owned(),
                        });
                    }
                    continue;
                }
                let (Some(node), Some(doc), Some(seq)) = (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                if node == node_id {
                    continue;
                }
                if let (Ok(document), Ok(seq)) = (DocumentId::parse(doc), seq.parse()) {
                    let _ = feed.send(ChangeNotice::Written { document, seq });
                }
            }
            driver
                .await
                .map_err(|e| StoreError::Task(e.to_string()))??;
            Ok::<(), StoreError>(())
        };
        tokio::select! {
            result = session => {
                if let Err(error) = result {
                    tracing::warn!(%error, "change feed connection lost; reconnecting");
                }
            }
            _ = stop.wait_for(|s| *s) => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

#[async_trait]
impl crate::ThrottleLedger for PostgresStore {
    async fn throttle_records(
        &self,
        keys: &[String],
    ) -> Result<Vec<Option<crate::ThrottleRecord>>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT key, failures, last_failure_ms, not_before_ms FROM sign_in_throttle
                 WHERE key = ANY($1)",
                &[&keys],
            )
            .await?;
        let found: std::collections::HashMap<String, crate::ThrottleRecord> = rows
            .iter()
            .map(|r| (r.get(0), throttle_record(r.get(1), r.get(2), r.get(3))))
            .collect();
        Ok(keys.iter().map(|k| found.get(k).copied()).collect())
    }

    async fn throttle_failure(
        &self,
        keys: &[String],
        policy: &crate::ThrottlePolicy,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // Sorted, so two nodes failing the same pair lock in the same order.
        let mut keys = keys.to_vec();
        keys.sort();
        keys.dedup();
        for key in &keys {
            tx.execute(
                "INSERT INTO sign_in_throttle (key, failures, last_failure_ms, not_before_ms)
                 VALUES ($1, 0, 0, 0) ON CONFLICT (key) DO NOTHING",
                &[key],
            )
            .await?;
            let row = tx
                .query_one(
                    "SELECT failures, last_failure_ms, not_before_ms FROM sign_in_throttle
                     WHERE key = $1 FOR UPDATE",
                    &[key],
                )
                .await?;
            let stored = throttle_record(row.get(0), row.get(1), row.get(2));
            let previous = (stored.failures > 0).then_some(stored);
            let next = policy.after_failure(previous, now_ms);
            tx.execute(
                "UPDATE sign_in_throttle SET failures = $2, last_failure_ms = $3, not_before_ms = $4
                 WHERE key = $1",
                &[
                    key,
                    &i64::from(next.failures),
                    &next.last_failure_ms,
                    &next.not_before_ms,
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn throttle_clear(&self, key: &str) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client
            .execute("DELETE FROM sign_in_throttle WHERE key = $1", &[&key])
            .await?;
        Ok(())
    }

    async fn throttle_prune(
        &self,
        policy: &crate::ThrottlePolicy,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let forget_ms = i64::try_from(policy.forget_after.as_millis()).unwrap_or(i64::MAX);
        let client = self.pool.get().await?;
        Ok(client
            .execute(
                "DELETE FROM sign_in_throttle WHERE last_failure_ms <= $1",
                &[&now_ms.saturating_sub(forget_ms)],
            )
            .await?)
    }
}

fn throttle_record(
    failures: i64,
    last_failure_ms: i64,
    not_before_ms: i64,
) -> crate::ThrottleRecord {
    crate::ThrottleRecord {
        failures: u32::try_from(failures).unwrap_or(u32::MAX),
        last_failure_ms,
        not_before_ms,
    }
}
