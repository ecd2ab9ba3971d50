//! The embedded store: one SQLite file in WAL mode under the data directory.

mod accounts;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use migrations::{Migrator, SERVER_SQLITE, SqliteBackend};
use rusqlite::{Connection, OptionalExtension, params};
use sync_protocol::DocumentId;

use crate::audit::{AuditEntry, NewAuditEntry, next_entry};
use crate::records::{AuditQuery, DocumentKind, DocumentScope, ORG_CONFIG_TAKEN};
use crate::{AuditStore, DocumentStore, StoreNode};
use crate::{ChunksAfter, Readiness, StoreError, StoredDocument, User};
use accounts::read_scope;

const DB_FILE: &str = "sync.sqlite3";

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

/// SQLite store. Calls run on the blocking pool; one connection serialises
/// writes, which SQLite does anyway. Document writes go through one writer
/// thread that commits every write waiting at that moment together
/// (`group_commit`).
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Option<Connection>>>,
    writes: std::sync::mpsc::Sender<group_commit::Write>,
}

/// A document chunk and the next seq of its document, in `tx`.
fn insert_chunk(
    tx: &rusqlite::Transaction<'_>,
    id: DocumentId,
    data: &[u8],
) -> Result<u64, StoreError> {
    let id = id.to_string();
    // Cached statements: this is the hot path of every accepted write.
    tx.prepare_cached(&format!(
        "INSERT INTO documents (id, created_at, updated_at) VALUES (?1, {NOW}, {NOW})
         ON CONFLICT (id) DO UPDATE SET updated_at = excluded.updated_at"
    ))?
    .execute(params![id])?;
    let seq: i64 = tx
        .prepare_cached(
            "SELECT max(coalesce((SELECT max(seq) FROM document_chunks WHERE document_id = ?1), 0),
                        (SELECT snapshot_seq FROM documents WHERE id = ?1)) + 1",
        )?
        .query_row(params![id], |r| r.get(0))?;
    tx.prepare_cached("INSERT INTO document_chunks (document_id, seq, data) VALUES (?1, ?2, ?3)")?
        .execute(params![id, seq, data])?;
    Ok(seq as u64)
}

/// The next entry of the audit chain, in `tx`.
fn insert_audit(
    tx: &rusqlite::Transaction<'_>,
    entry: NewAuditEntry,
) -> Result<AuditEntry, StoreError> {
    let mut chain = AuditChainEnd::read(tx)?;
    let stored = chain.append(tx, entry)?;
    chain.write(tx)?;
    Ok(stored)
}

/// The end of the audit chain while a transaction appends to it: read
/// once, entries linked to it in memory, the head row written once (each
/// write of a group commit read and wrote it; groups average about ten
/// writes under the `writes` bench), every entry of the transaction stamped
/// with the one time.
struct AuditChainEnd {
    seq: u64,
    hash: String,
    at: String,
}

impl AuditChainEnd {
    fn read(tx: &rusqlite::Transaction<'_>) -> Result<Self, StoreError> {
        let (seq, hash): (i64, String) = tx
            .prepare_cached("SELECT seq, hash FROM audit_head WHERE id = 1")?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let at: String = tx
            .prepare_cached(&format!("SELECT {NOW}"))?
            .query_row([], |r| r.get(0))?;
        Ok(Self {
            seq: seq as u64,
            hash,
            at,
        })
    }

    fn append(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        entry: NewAuditEntry,
    ) -> Result<AuditEntry, StoreError> {
        let stored = next_entry(self.seq, &self.hash, self.at.clone(), entry);
        let e = &stored.entry;
        tx.prepare_cached(
            "INSERT INTO audit_log (seq, at, actor, device, address, action, target, result, details, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?
        .execute(params![
            stored.seq as i64,
            stored.at,
            e.actor,
            e.device,
            e.address,
            e.action,
            e.target,
            e.result,
            e.details.to_string(),
            stored.prev_hash,
            stored.hash
        ])?;
        self.seq = stored.seq;
        self.hash.clone_from(&stored.hash);
        Ok(stored)
    }

    fn write(&self, tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
        tx.prepare_cached("UPDATE audit_head SET seq = ?1, hash = ?2 WHERE id = 1")?
            .execute(params![self.seq as i64, self.hash])?;
        Ok(())
    }
}

/// Group commit: document writes from every document actor wait in one
/// queue; a thread of its own takes all that are waiting, writes each chunk
/// and its audit entry, and commits them in one transaction, then answers
/// each. Under load one commit (and one trip through the connection's lock)
/// serves many writes; alone, a write waits for nothing. A transaction that
/// fails is retried one write at a time, so one bad write fails only itself.
mod group_commit {
    use std::sync::{Arc, Mutex};

    use rusqlite::Connection;
    use sync_protocol::DocumentId;

    use super::{AuditChainEnd, insert_audit, insert_chunk};
    use crate::StoreError;
    use crate::audit::NewAuditEntry;

    /// Most writes in one transaction (bounds one commit's latency).
    const MAX_GROUP: usize = 256;

    pub struct Write {
        pub id: DocumentId,
        pub data: Vec<u8>,
        pub entry: NewAuditEntry,
        pub reply: tokio::sync::oneshot::Sender<Result<u64, StoreError>>,
    }

    pub fn start(conn: Arc<Mutex<Option<Connection>>>) -> std::sync::mpsc::Sender<Write> {
        let (tx, rx) = std::sync::mpsc::channel::<Write>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                // Ends when every store handle (and so every sender) is gone.
                while let Ok(first) = rx.recv() {
                    let mut group = vec![first];
                    while group.len() < MAX_GROUP {
                        match rx.try_recv() {
                            Ok(next) => group.push(next),
                            Err(_) => break,
                        }
                    }
                    commit(&conn, group);
                }
            })
            .expect("spawn the store's writer thread");
        tx
    }

    fn commit(conn: &Mutex<Option<Connection>>, group: Vec<Write>) {
        let mut guard = match conn.lock() {
            Ok(guard) => guard,
            Err(_) => return answer_all(group, || StoreError::Task("store mutex poisoned".into())),
        };
        let Some(conn) = guard.as_mut() else {
            return answer_all(group, || StoreError::Task("store is closed".into()));
        };
        metrics::histogram!(crate::metrics::STORE_GROUP_SIZE).record(group.len() as f64);
        match write_all(conn, &group) {
            Ok(seqs) => {
                for (write, seq) in group.into_iter().zip(seqs) {
                    let _ = write.reply.send(Ok(seq));
                }
            }
            Err(error) => {
                tracing::warn!(%error, writes = group.len(), "group commit failed; writing one at a time");
                for write in group {
                    let result = write_one(conn, &write);
                    let _ = write.reply.send(result);
                }
            }
        }
    }

    /// One write on its own: the chunk, then its audit entry, whose failure
    /// is logged and does not undo the durable chunk (as `append_audit`).
    fn write_one(conn: &mut Connection, write: &Write) -> Result<u64, StoreError> {
        let tx = conn.transaction()?;
        let seq = insert_chunk(&tx, write.id, &write.data)?;
        tx.commit()?;
        let audited = conn.transaction().map_err(StoreError::from).and_then(|tx| {
            insert_audit(&tx, write.entry.clone().with_seq(seq))?;
            tx.commit().map_err(StoreError::from)
        });
        if let Err(error) = audited {
            tracing::error!(%error, "audit log write failed");
        }
        Ok(seq)
    }

    fn write_all(conn: &mut Connection, group: &[Write]) -> Result<Vec<u64>, StoreError> {
        let tx = conn.transaction()?;
        let mut seqs = Vec::with_capacity(group.len());
        let mut chain = AuditChainEnd::read(&tx)?;
        for write in group {
            let seq = insert_chunk(&tx, write.id, &write.data)?;
            chain.append(&tx, write.entry.clone().with_seq(seq))?;
            seqs.push(seq);
        }
        chain.write(&tx)?;
        tx.commit()?;
        Ok(seqs)
    }

    fn answer_all(group: Vec<Write>, error: impl Fn() -> StoreError) {
        for write in group {
            let _ = write.reply.send(Err(error()));
        }
    }
}

/// Opens the database file, applying the pragmas every connection needs.
fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    // WAL + synchronous=NORMAL: a committed transaction survives the process
    // being killed (it is in the WAL in the OS page cache); only a power loss
    // can take the last commits, which `synchronous_full` trades for speed.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA busy_timeout = 5000;",
    )?;
    Ok(conn)
}

/// Where the database of a data directory lives.
pub fn database_path(data_dir: &Path) -> PathBuf {
    data_dir.join(DB_FILE)
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `data_dir` and brings its schema
    /// up to date. An edited, already-applied migration is refused here. Before
    /// migrating a database that already has data, a copy is saved under
    /// `data_dir/backups/`.
    pub fn open(data_dir: &Path, synchronous_full: bool) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)?;
        let path = database_path(data_dir);
        let mut conn = open_connection(&path)?;
        if synchronous_full {
            conn.execute_batch("PRAGMA synchronous = FULL;")?;
        }
        {
            let mut migrator = Migrator::new(&SERVER_SQLITE, SqliteBackend::new(&mut conn))?;
            migrator.verify()?;
            let current = migrator.current_version()?;
            let latest = SERVER_SQLITE.latest_version();
            if current > 0 && current < latest {
                backup_before_migration(&conn, data_dir, current)?;
            }
            Migrator::new(&SERVER_SQLITE, SqliteBackend::new(&mut conn))?.up(None)?;
        }
        let conn = Arc::new(Mutex::new(Some(conn)));
        Ok(Self {
            writes: group_commit::start(conn.clone()),
            conn,
        })
    }

    pub(super) async fn with_conn<T, F>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        let started = Instant::now();
        let result = tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::Task("store mutex poisoned".into()))?;
            let conn = guard
                .as_mut()
                .ok_or_else(|| StoreError::Task("store is closed".into()))?;
            f(conn)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?;
        metrics::histogram!(crate::metrics::STORE_SECONDS, "op" => op)
            .record(started.elapsed().as_secs_f64());
        result
    }
}

/// `VACUUM INTO` gives a consistent copy of a live database in one statement.
fn backup_before_migration(
    conn: &Connection,
    data_dir: &Path,
    version: u32,
) -> Result<(), StoreError> {
    let dir = data_dir.join("backups");
    std::fs::create_dir_all(&dir)?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let target = dir.join(format!("pre-migrate-v{version}-{stamp}.sqlite3"));
    tracing::info!(target = %target.display(), "backing up the store before migrating");
    conn.execute("VACUUM INTO ?1", params![target.to_string_lossy()])?;
    Ok(())
}

/// An `audit_log` row selected as `seq, at, actor, device, address, action,
/// target, result, details, prev_hash, hash`.
/// The columns [`user_from_row`] reads, in order.
/// A user from [`crate::sql::USER_COLUMNS`] starting at column `start`.
pub(super) fn user_from_row(r: &rusqlite::Row<'_>, start: usize) -> rusqlite::Result<User> {
    let role: String = r.get(start + 2)?;
    Ok(User {
        id: r.get(start)?,
        email: r.get(start + 1)?,
        role: role.parse().map_err(|e: api_types::UnknownRole| {
            rusqlite::Error::FromSqlConversionFailure(
                start + 2,
                rusqlite::types::Type::Text,
                Box::new(e),
            )
        })?,
        password_hash: r.get(start + 3)?,
        totp_secret: r.get(start + 4)?,
        totp_confirmed: r.get(start + 5)?,
        totp_last_step: r.get::<_, Option<i64>>(start + 6)?.map(|s| s as u64),
        disabled: r.get(start + 7)?,
    })
}

/// An audit row as the embedded store keeps it (`backup` reads a copy's chain with it).
pub fn audit_entry_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEntry> {
    let details: String = r.get(8)?;
    Ok(AuditEntry {
        seq: r.get::<_, i64>(0)? as u64,
        at: r.get(1)?,
        entry: NewAuditEntry {
            actor: r.get(2)?,
            device: r.get(3)?,
            address: r.get(4)?,
            action: r.get(5)?,
            target: r.get(6)?,
            result: r.get(7)?,
            // Unparseable details keep their text, so verification reports the edit.
            details: serde_json::from_str(&details).unwrap_or(serde_json::Value::String(details)),
        },
        prev_hash: r.get(9)?,
        hash: r.get(10)?,
    })
}

/// What a document holds after `after_seq` (0: all of it), read in one
/// transaction; `None` if the document was never stored. The snapshot comes
/// along when it covers chunks past `after_seq` (or when everything is asked for).
fn read_since(
    conn: &mut Connection,
    id: DocumentId,
    after_seq: u64,
) -> Result<Option<ChunksAfter>, StoreError> {
    let key = id.to_string();
    let tx = conn.transaction()?;
    let row: Option<(Option<Vec<u8>>, i64)> = tx
        .query_row(
            "SELECT s.data, d.snapshot_seq FROM documents d
             LEFT JOIN document_snapshots s ON s.document_id = d.id WHERE d.id = ?1",
            params![key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((snapshot, snapshot_seq)) = row else {
        return Ok(None);
    };
    let snapshot_seq = snapshot_seq as u64;
    let mut out = ChunksAfter {
        through_seq: after_seq.max(snapshot_seq),
        ..ChunksAfter::default()
    };
    if after_seq == 0 || snapshot_seq > after_seq {
        out.snapshot = snapshot;
    }
    let mut stmt = tx.prepare_cached(
        "SELECT seq, data FROM document_chunks WHERE document_id = ?1 AND seq > ?2 ORDER BY seq",
    )?;
    for row in stmt.query_map(params![key, out.through_seq as i64], |r| {
        Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Vec<u8>>(1)?))
    })? {
        let (seq, data) = row?;
        out.through_seq = seq;
        out.chunks.push((seq, data));
    }
    drop(stmt);
    tx.commit()?;
    Ok(Some(out))
}

pub(super) const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

#[async_trait]
impl DocumentStore for SqliteStore {
    async fn load_document(&self, id: DocumentId) -> Result<Option<StoredDocument>, StoreError> {
        self.with_conn("load_document", move |conn| {
            Ok(read_since(conn, id, 0)?.map(StoredDocument::from))
        })
        .await
    }

    async fn append_chunk(&self, id: DocumentId, data: Vec<u8>) -> Result<u64, StoreError> {
        self.with_conn("append_chunk", move |conn| {
            let tx = conn.transaction()?;
            let seq = insert_chunk(&tx, id, &data)?;
            tx.commit()?;
            Ok(seq)
        })
        .await
    }

    async fn append_chunk_audited(
        &self,
        id: DocumentId,
        data: Vec<u8>,
        entry: NewAuditEntry,
    ) -> Result<u64, StoreError> {
        let started = Instant::now();
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.writes
            .send(group_commit::Write {
                id,
                data,
                entry,
                reply,
            })
            .map_err(|_| StoreError::Task("the store's writer has stopped".into()))?;
        let result = answer
            .await
            .map_err(|_| StoreError::Task("the store's writer has stopped".into()))?;
        metrics::histogram!(crate::metrics::STORE_SECONDS, "op" => "append_chunk")
            .record(started.elapsed().as_secs_f64());
        result
    }

    async fn compact(
        &self,
        id: DocumentId,
        snapshot: Vec<u8>,
        through_seq: u64,
    ) -> Result<(), StoreError> {
        self.with_conn("compact", move |conn| {
            let id = id.to_string();
            let tx = conn.transaction()?;
            // The snapshot has a row of its own (migration 8), so the small
            // `documents` row every write touches never makes SQLite walk it.
            let updated = tx.execute(
                &format!(
                    "UPDATE documents SET snapshot_seq = ?2, updated_at = {NOW} WHERE id = ?1"
                ),
                params![id, through_seq as i64],
            )?;
            if updated == 1 {
                tx.execute(
                    "INSERT INTO document_snapshots (document_id, data) VALUES (?1, ?2)
                     ON CONFLICT (document_id) DO UPDATE SET data = excluded.data",
                    params![id, snapshot],
                )?;
            }
            tx.execute(
                "DELETE FROM document_chunks WHERE document_id = ?1 AND seq <= ?2",
                params![id, through_seq as i64],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn list_documents(&self) -> Result<Vec<DocumentId>, StoreError> {
        self.with_conn("list_documents", |conn| {
            let mut stmt = conn.prepare("SELECT id FROM documents ORDER BY id")?;
            let ids = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            ids.iter()
                .map(|s| DocumentId::parse(s).map_err(|e| StoreError::Database(e.to_string())))
                .collect()
        })
        .await
    }

    async fn chunk_count(&self, id: DocumentId) -> Result<u64, StoreError> {
        self.with_conn("chunk_count", move |conn| {
            let n: i64 = conn.query_row(
                "SELECT count(*) FROM document_chunks WHERE document_id = ?1",
                params![id.to_string()],
                |r| r.get(0),
            )?;
            Ok(n as u64)
        })
        .await
    }

    async fn chunks_after(
        &self,
        id: DocumentId,
        after_seq: u64,
    ) -> Result<ChunksAfter, StoreError> {
        self.with_conn("chunks_after", move |conn| {
            Ok(read_since(conn, id, after_seq)?.unwrap_or_default())
        })
        .await
    }

    async fn register_document(
        &self,
        id: DocumentId,
        scope: &DocumentScope,
        created_by: &str,
        now_ms: i64,
    ) -> Result<DocumentScope, StoreError> {
        let (scope, created_by) = (scope.clone(), created_by.to_owned());
        self.with_conn("register_document", move |conn| {
            conn.execute(
                "INSERT INTO document_scopes (document_id, kind, scope, created_by, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                params![
                    id.to_string(),
                    scope.kind.as_str(),
                    scope.scope,
                    created_by,
                    now_ms
                ],
            )?;
            read_scope(conn, id)?.ok_or_else(|| StoreError::Conflict(ORG_CONFIG_TAKEN.into()))
        })
        .await
    }

    async fn document_scope(&self, id: DocumentId) -> Result<Option<DocumentScope>, StoreError> {
        self.with_conn("document_scope", move |conn| read_scope(conn, id))
            .await
    }

    async fn documents_with_scope(
        &self,
        scope: &DocumentScope,
    ) -> Result<Vec<DocumentId>, StoreError> {
        let scope = scope.clone();
        self.with_conn("documents_with_scope", move |conn| {
            let mut stmt = conn.prepare(
                "SELECT document_id FROM document_scopes WHERE kind = ?1 AND scope = ?2
                 ORDER BY created_ms, document_id",
            )?;
            let rows = stmt.query_map(params![scope.kind.as_str(), scope.scope], |r| {
                r.get::<_, String>(0)
            })?;
            rows.map(|row| {
                let text = row?;
                DocumentId::parse(&text).map_err(|e| StoreError::Database(format!("{text}: {e}")))
            })
            .collect()
        })
        .await
    }

    async fn documents_of_kind(
        &self,
        kind: DocumentKind,
    ) -> Result<Vec<(DocumentId, String)>, StoreError> {
        self.with_conn("documents_of_kind", move |conn| {
            let mut stmt = conn.prepare(
                "SELECT document_id, scope FROM document_scopes WHERE kind = ?1
                 ORDER BY created_ms, document_id",
            )?;
            let rows = stmt.query_map(params![kind.as_str()], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?;
            rows.map(|row| {
                let (text, scope) = row?;
                let id = DocumentId::parse(&text)
                    .map_err(|e| StoreError::Database(format!("{text}: {e}")))?;
                Ok((id, scope))
            })
            .collect()
        })
        .await
    }
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit(&self, entry: NewAuditEntry) -> Result<AuditEntry, StoreError> {
        self.with_conn("append_audit", move |conn| {
            let tx = conn.transaction()?;
            let stored = insert_audit(&tx, entry)?;
            tx.commit()?;
            Ok(stored)
        })
        .await
    }

    async fn audit_entries(
        &self,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.with_conn("audit_entries", move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, at, actor, device, address, action, target, result, details, prev_hash, hash
                 FROM audit_log WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after_seq as i64, limit], audit_entry_from_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn audit_head(&self) -> Result<(u64, String), StoreError> {
        self.with_conn("audit_head", |conn| {
            Ok(
                conn.query_row("SELECT seq, hash FROM audit_head WHERE id = 1", [], |r| {
                    Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
                })?,
            )
        })
        .await
    }

    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let q = query.clone();
        self.with_conn("query_audit", move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, at, actor, device, address, action, target, result, details, prev_hash, hash
                 FROM audit_log
                 WHERE seq > ?1 AND (?3 IS NULL OR action = ?3) AND (?4 IS NULL OR actor = ?4)
                   AND (?5 IS NULL OR result = ?5) AND (?6 IS NULL OR at >= ?6)
                 ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt.query_map(
                params![
                    q.after_seq as i64,
                    q.limit,
                    q.action,
                    q.actor,
                    q.result,
                    q.since
                ],
                audit_entry_from_row,
            )?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }
}

#[async_trait]
impl StoreNode for SqliteStore {
    async fn readiness(&self) -> Result<Readiness, StoreError> {
        self.with_conn("readiness", |conn| {
            let mut migrator = Migrator::new(&SERVER_SQLITE, SqliteBackend::new(conn))?;
            migrator.verify()?;
            Ok(Readiness {
                schema_version: migrator.current_version()?,
                expected_version: SERVER_SQLITE.latest_version(),
            })
        })
        .await
    }

    async fn close(&self) -> Result<(), StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::Task("store mutex poisoned".into()))?;
            if let Some(conn) = guard.take() {
                conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
                conn.close().map_err(|(_, e)| StoreError::from(e))?;
            }
            Ok(())
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AccountStore;
    use api_types::Role;

    #[tokio::test]
    async fn chunks_append_in_order_and_compaction_folds_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), false).unwrap();
        let id = DocumentId::random();
        assert!(store.load_document(id).await.unwrap().is_none());
        assert_eq!(store.append_chunk(id, vec![1]).await.unwrap(), 1);
        assert_eq!(store.append_chunk(id, vec![2]).await.unwrap(), 2);
        let doc = store.load_document(id).await.unwrap().unwrap();
        assert_eq!(doc.chunks, vec![vec![1], vec![2]]);
        assert_eq!(doc.last_seq, 2);

        store.compact(id, vec![9, 9], 2).await.unwrap();
        assert_eq!(store.chunk_count(id).await.unwrap(), 0);
        // Sequence numbers keep growing after a compaction.
        assert_eq!(store.append_chunk(id, vec![3]).await.unwrap(), 3);
        let doc = store.load_document(id).await.unwrap().unwrap();
        assert_eq!(doc.snapshot, Some(vec![9, 9]));
        assert_eq!(doc.chunks, vec![vec![3]]);
        assert_eq!(store.list_documents().await.unwrap(), vec![id]);
    }

    /// A store from before snapshots had a table of their own (migration 8)
    /// keeps its documents, and the migration's backup is taken first.
    #[tokio::test]
    async fn a_snapshot_stored_before_migration_8_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let id = DocumentId::random();
        {
            let mut conn = open_connection(&database_path(dir.path())).unwrap();
            Migrator::new(&SERVER_SQLITE, SqliteBackend::new(&mut conn))
                .unwrap()
                .up(Some(7))
                .unwrap();
            conn.execute(
                "INSERT INTO documents (id, snapshot, snapshot_seq, created_at, updated_at)
                 VALUES (?1, X'0909', 2, 'then', 'then')",
                params![id.to_string()],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO document_chunks (document_id, seq, data) VALUES (?1, 3, X'03')",
                params![id.to_string()],
            )
            .unwrap();
        }
        let store = SqliteStore::open(dir.path(), false).unwrap();
        let backups: Vec<_> = std::fs::read_dir(dir.path().join("backups"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            backups
                .iter()
                .any(|name| name.starts_with("pre-migrate-v7-")),
            "{backups:?}"
        );
        let doc = store.load_document(id).await.unwrap().unwrap();
        assert_eq!(doc.snapshot, Some(vec![9, 9]));
        assert_eq!(doc.chunks, vec![vec![3]]);
        assert_eq!(store.append_chunk(id, vec![4]).await.unwrap(), 4);
        let left: Option<Vec<u8>> = store
            .with_conn("test", move |conn| {
                Ok(conn.query_row(
                    "SELECT snapshot FROM documents WHERE id = ?1",
                    params![id.to_string()],
                    |r| r.get(0),
                )?)
            })
            .await
            .unwrap();
        assert_eq!(left, None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_are_committed_together_each_with_its_audit_entry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path(), false).unwrap());
        let docs: Vec<DocumentId> = (0..5).map(|_| DocumentId::random()).collect();
        let mut tasks = Vec::new();
        for round in 0..10u8 {
            for (d, id) in docs.iter().enumerate() {
                let (store, id) = (store.clone(), *id);
                tasks.push(tokio::spawn(async move {
                    let entry = NewAuditEntry::new("test", "document.write", "ok")
                        .target(id.to_string())
                        .details(serde_json::json!({ "round": round, "doc": d }));
                    store.append_chunk_audited(id, vec![round], entry).await
                }));
            }
        }
        let mut seqs = Vec::new();
        for task in tasks {
            seqs.push(task.await.unwrap().unwrap());
        }
        // Every document got seqs 1..=10 exactly once, its chunks all there.
        for id in &docs {
            let doc = store.load_document(*id).await.unwrap().unwrap();
            assert_eq!(doc.chunks.len(), 10);
            assert_eq!(doc.last_seq, 10);
        }
        seqs.sort();
        assert_eq!(seqs, (1..=10).flat_map(|s| [s; 5]).collect::<Vec<u64>>());
        // One audit entry per write, with its seq, and the chain intact.
        let entries = store.audit_entries(0, 1000).await.unwrap();
        let writes: Vec<_> = entries
            .iter()
            .filter(|e| e.entry.action == "document.write")
            .collect();
        assert_eq!(writes.len(), 50);
        assert!(
            writes
                .iter()
                .all(|e| e.entry.details["seq"].as_u64().is_some())
        );
        assert_eq!(
            crate::audit_verify::verify_store(store.as_ref())
                .await
                .unwrap(),
            entries.len() as u64
        );
    }

    #[tokio::test]
    async fn api_keys_authenticate_by_hash_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), false).unwrap();
        let key = store
            .create_api_key("ci", Role::Admin, "abc")
            .await
            .unwrap();
        assert_eq!(store.authenticate_api_key("abc").await.unwrap(), Some(key));
        assert_eq!(store.authenticate_api_key("abd").await.unwrap(), None);
    }

    #[tokio::test]
    async fn reopening_keeps_data_and_readiness_reports_the_schema() {
        let dir = tempfile::tempdir().unwrap();
        let id = DocumentId::random();
        {
            let store = SqliteStore::open(dir.path(), false).unwrap();
            store.append_chunk(id, vec![5]).await.unwrap();
            store.close().await.unwrap();
        }
        let store = SqliteStore::open(dir.path(), true).unwrap();
        assert_eq!(
            store.load_document(id).await.unwrap().unwrap().chunks,
            vec![vec![5]]
        );
        let ready = store.readiness().await.unwrap();
        assert_eq!(ready.schema_version, ready.expected_version);
    }
}
