//! The client's SQLite file: documents as snapshot + appended chunks, and
//! which heads the server has confirmed. `synchronous = FULL`: a tablet can
//! lose power, and a committed scan must survive that.

use std::path::Path;

use automerge::ChangeHash;
use migrations::{CLIENT_SQLITE, Migrator, SqliteBackend};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use sync_protocol::{DocumentId, doc_layout};

use crate::ClientError;

/// Chunks appended to a document before they are folded into a snapshot.
pub(crate) const COMPACT_AFTER_CHUNKS: u64 = 64;

pub(crate) struct StoredDocument {
    pub snapshot: Option<Vec<u8>>,
    pub chunks: Vec<Vec<u8>>,
    pub last_seq: u64,
    pub server_heads: Vec<ChangeHash>,
    pub wanted: bool,
}

pub(crate) struct LocalStore {
    conn: Connection,
}

impl Drop for LocalStore {
    /// Folds the write-ahead log into the database file before the writing
    /// connection closes, whatever other connection (the read-only one, a
    /// reader elsewhere) is still open: a closed store is then whole in its
    /// one file, as a copy or a backup of that file expects. SQLite does this
    /// by itself only when the last connection closes.
    fn drop(&mut self) {
        if let Err(e) = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
            tracing::warn!(error = %e, "store closed without folding its write-ahead log");
        }
    }
}

const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

/// A write transaction that takes the write lock when it begins. A
/// deferred one that reads first and then writes fails at once with
/// `SQLITE_BUSY` (without waiting) if another connection (the background
/// compaction) committed in between; this one waits its turn instead.
pub(crate) fn write_tx(conn: &mut Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
}

/// Runs `work` (its own transactions) with commits that do not wait for
/// the disk (`synchronous = NORMAL`: in WAL mode a commit is then written
/// but not synced; the next synced commit or checkpoint carries it). Only
/// for what can be rebuilt: a crash loses at most the last such commits,
/// never one made before a synced commit (the WAL is written in order).
/// The event index is such data: it catches up from its recorded heads.
pub(crate) fn without_disk_sync<T>(
    conn: &mut Connection,
    work: impl FnOnce(&mut Connection) -> Result<T, ClientError>,
) -> Result<T, ClientError> {
    // SQLite refuses to change this inside a transaction; these run
    // between the caller's transactions.
    conn.execute_batch("PRAGMA synchronous = NORMAL")?;
    let relaxed = SyncRestored(conn);
    work(relaxed.0)
}

/// Puts `synchronous = FULL` back however the work ended (a panic
/// included): every other commit of the store waits for the disk.
struct SyncRestored<'c>(&'c mut Connection);

impl Drop for SyncRestored<'_> {
    fn drop(&mut self) {
        if let Err(error) = self.0.execute_batch("PRAGMA synchronous = FULL") {
            tracing::error!(%error, "could not restore synchronous = FULL on the store");
        }
    }
}

pub(crate) fn write_meta(conn: &Connection, key: &str, value: &str) -> Result<(), ClientError> {
    conn.prepare_cached(
        "INSERT INTO sync_meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![key, value])?;
    Ok(())
}

pub(crate) fn encode_heads(heads: &[ChangeHash]) -> Vec<u8> {
    heads.iter().flat_map(|h| h.0).collect()
}

/// Records the heads the server confirmed for `id` (in the caller's
/// transaction when given one: see `append_chunk_then`'s `also`).
pub(crate) fn write_server_heads(
    conn: &Connection,
    id: DocumentId,
    heads: &[ChangeHash],
) -> Result<(), ClientError> {
    conn.prepare_cached(
        // Like the UPDATE it replaces, nothing for a document not stored.
        "INSERT INTO document_server_heads (document_id, heads)
         SELECT ?1, ?2 WHERE EXISTS (SELECT 1 FROM documents WHERE id = ?1)
         ON CONFLICT (document_id) DO UPDATE SET heads = excluded.heads",
    )?
    .execute(params![id.to_string(), encode_heads(heads)])?;
    Ok(())
}

pub(crate) fn decode_heads(bytes: &[u8]) -> Vec<ChangeHash> {
    bytes
        .chunks_exact(32)
        .filter_map(|c| ChangeHash::try_from(c).ok())
        .collect()
}

/// The snapshot of the document `key`, if it has one. Snapshots live in a
/// table of their own so that the small `documents` row, which every
/// appended chunk reads and writes, never makes SQLite walk the blob.
fn read_snapshot(conn: &Connection, key: &str) -> Result<Option<Vec<u8>>, ClientError> {
    Ok(conn
        .query_row(
            "SELECT data FROM document_snapshots WHERE document_id = ?1",
            params![key],
            |r| r.get(0),
        )
        .optional()?)
}

fn write_snapshot(conn: &Connection, key: &str, snapshot: &[u8]) -> Result<(), ClientError> {
    conn.execute(
        "INSERT INTO document_snapshots (document_id, data) VALUES (?1, ?2)
         ON CONFLICT (document_id) DO UPDATE SET data = excluded.data",
        params![key, snapshot],
    )?;
    Ok(())
}

/// Folds the chunks of `id` into a new snapshot, on a connection of its
/// own: saving a large document takes long (150 ms for 100,000 attendees),
/// and scans must not wait behind it. Keeps going while full batches are
/// waiting, so a burst of changes ends compacted. Folds only once the
/// chunks are worth it ([`worth_folding`]). Returns whether it folded
/// anything.
///
/// What is saved is a copy of the live document, from `live` with the
/// last chunk it holds (taken under the document's lock, so the two
/// agree); `None` once the replica is gone, and then the store's snapshot
/// and chunks are loaded instead. The copy costs a clone (0.04 s for a
/// 30,000-attendee event); the load applied the chunks to a freshly loaded
/// snapshot, which held 200-260 MiB at its peak for that event after a
/// reconnect's 38,000 scans, in every replica compacting at once (the
/// reconnect bench's memory runaway, BENCHMARKS.md).
pub(crate) fn compact_in_background(
    path: &Path,
    id: DocumentId,
    at_least: u64,
    live: impl Fn() -> Option<(automerge::Automerge, u64)>,
) -> Result<bool, ClientError> {
    // Whatever is there if at least `at_least` chunks are; after that, only
    // full batches (more may arrive while this works).
    let mut threshold = at_least.max(1);
    let mut conn = Connection::open(path)?;
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;")?;
    let key = id.to_string();
    let mut folded = false;
    loop {
        // The snapshot's size first (SQLite answers `length` without reading
        // the blob): most checks end here, not worth a fold yet.
        let Some((snapshot_bytes, snapshot_seq)) = conn
            .query_row(
                "SELECT (SELECT length(data) FROM document_snapshots WHERE document_id = ?1),
                        snapshot_seq
                 FROM documents WHERE id = ?1",
                params![key],
                |r| Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, i64>(1)?)),
            )
            .optional()?
        else {
            return Ok(folded);
        };
        let (pending, through_seq, pending_bytes): (i64, Option<i64>, i64) = conn.query_row(
            "SELECT count(*), max(seq), coalesce(sum(length(data)), 0)
             FROM document_chunks WHERE document_id = ?1 AND seq > ?2",
            params![key, snapshot_seq],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let snapshot_bytes = snapshot_bytes.unwrap_or(0) as u64;
        let Some(through_seq) = through_seq.filter(|_| {
            pending as u64 >= threshold
                && worth_folding(pending as u64, pending_bytes as u64, snapshot_bytes)
        }) else {
            return Ok(folded);
        };
        threshold = threshold.max(COMPACT_AFTER_CHUNKS);
        // Taken outside any transaction of this connection: the replica's
        // writers hold the document's lock while they wait for SQLite's.
        let (doc, through_seq) = match live() {
            // Everything up to its last chunk, which may be past `through_seq`.
            Some((doc, seq)) if seq as i64 > snapshot_seq => (doc, seq as i64),
            Some(_) => return Ok(folded),
            None => {
                let snapshot = read_snapshot(&conn, &key)?;
                let chunks: Vec<Vec<u8>> = conn
                    .prepare(
                        "SELECT data FROM document_chunks WHERE document_id = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq",
                    )?
                    .query_map(params![key, snapshot_seq, through_seq], |r| {
                        r.get::<_, Vec<u8>>(0)
                    })?
                    .collect::<Result<_, _>>()?;
                // Laid out again after the first chunk: the rest would
                // otherwise make this copy hold up to ten times the
                // document's memory.
                let (doc, _) =
                    doc_layout::load(snapshot.as_deref(), chunks.iter().map(Vec::as_slice))?;
                (doc, through_seq)
            }
        };
        let saved = doc.save();
        drop(doc);
        let tx = write_tx(&mut conn)?;
        // Only forward: the document may have been replaced meanwhile.
        let updated = tx.execute(
            "UPDATE documents SET snapshot_seq = ?2 WHERE id = ?1 AND snapshot_seq = ?3",
            params![key, through_seq, snapshot_seq],
        )?;
        if updated == 1 {
            write_snapshot(&tx, &key, &saved)?;
            tx.execute(
                "DELETE FROM document_chunks WHERE document_id = ?1 AND seq <= ?2",
                params![key, through_seq],
            )?;
        }
        tx.commit()?;
        folded = true;
    }
}

/// Chunks waiting before a fold is worth it whatever their size: bounds
/// what an app start applies on top of the snapshot.
pub(crate) const FOLD_CHUNKS_AT_MOST: u64 = 1024;

/// Whether `chunks` of `chunk_bytes` in all are worth folding into a snapshot
/// of `snapshot_bytes`: a fold loads and saves the whole document (for a
/// 30,000-attendee event, 400 KB and tens of milliseconds), so it waits until
/// the chunks add up to a quarter of the snapshot, which keeps its cost in
/// proportion to what arrived (folding every 64 one-scan chunks was a tenth
/// of a tablet's CPU at a busy door), or until there are too many of them.
pub(crate) fn worth_folding(chunks: u64, chunk_bytes: u64, snapshot_bytes: u64) -> bool {
    chunk_bytes.saturating_mul(4) >= snapshot_bytes || chunks >= FOLD_CHUNKS_AT_MOST
}

/// Chunks of `id` not yet folded into its snapshot.
pub(crate) fn uncompacted_chunks(path: &Path, id: DocumentId) -> Result<u64, ClientError> {
    let conn = Connection::open(path)?;
    conn.execute_batch("PRAGMA busy_timeout = 5000;")?;
    let count: i64 = conn.query_row(
        "SELECT count(*) FROM document_chunks c JOIN documents d ON d.id = c.document_id
         WHERE c.document_id = ?1 AND c.seq > d.snapshot_seq",
        params![id.to_string()],
        |r| r.get(0),
    )?;
    Ok(count as u64)
}

impl LocalStore {
    pub fn open(path: &Path) -> Result<Self, ClientError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let mut conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;
             PRAGMA busy_timeout = 5000;
             -- Index upkeep of a large batch (a first download) spills
             -- sort and savepoint journals; keep them in memory, and keep
             -- the index's pages cached (64 MiB).
             PRAGMA temp_store = MEMORY;
             PRAGMA cache_size = -65536;",
        )?;
        Migrator::new(&CLIENT_SQLITE, SqliteBackend::new(&mut conn))?.up(None)?;
        Ok(Self { conn })
    }

    /// A second, read-only connection to the store at `path` (opened after
    /// [`LocalStore::open`] has migrated it). In WAL mode it reads the last
    /// commit while the writing connection is busy, so the queries a screen
    /// polls (counts, lists, search) never hold the lock a scan needs.
    pub fn open_reader(path: &Path) -> Result<Connection, ClientError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.execute_batch(
            "PRAGMA busy_timeout = 5000;
             PRAGMA temp_store = MEMORY;
             PRAGMA cache_size = -16384;",
        )?;
        Ok(conn)
    }

    pub fn document_ids(&self) -> Result<Vec<DocumentId>, ClientError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM documents ORDER BY created_at, id")?;
        let ids = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        ids.iter()
            .map(|s| DocumentId::parse(s).map_err(|e| ClientError::Corrupt(e.to_string())))
            .collect()
    }

    pub fn load(&self, id: DocumentId) -> Result<Option<StoredDocument>, ClientError> {
        let key = id.to_string();
        type Row = (Option<Vec<u8>>, i64, Option<Vec<u8>>, bool);
        let row: Option<Row> = self
            .conn
            .query_row(
                "SELECT s.data, d.snapshot_seq, h.heads, d.wanted FROM documents d
                 LEFT JOIN document_snapshots s ON s.document_id = d.id
                 LEFT JOIN document_server_heads h ON h.document_id = d.id WHERE d.id = ?1",
                params![key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let Some((snapshot, snapshot_seq, server_heads, wanted)) = row else {
            return Ok(None);
        };
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, data FROM document_chunks WHERE document_id = ?1 AND seq > ?2 ORDER BY seq",
        )?;
        let mut chunks = Vec::new();
        let mut last_seq = snapshot_seq as u64;
        for row in stmt.query_map(params![key, snapshot_seq], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
        })? {
            let (seq, data) = row?;
            last_seq = seq as u64;
            chunks.push(data);
        }
        Ok(Some(StoredDocument {
            snapshot,
            chunks,
            last_seq,
            server_heads: server_heads
                .as_deref()
                .map(decode_heads)
                .unwrap_or_default(),
            wanted,
        }))
    }

    /// Records a document the user created or asked for (no content yet).
    pub fn insert_document(&self, id: DocumentId, wanted: bool) -> Result<(), ClientError> {
        self.conn.execute(
            &format!(
                "INSERT INTO documents (id, wanted, created_at, updated_at) VALUES (?1, ?2, {NOW}, {NOW})
                 ON CONFLICT (id) DO NOTHING"
            ),
            params![id.to_string(), wanted],
        )?;
        Ok(())
    }

    /// Appends a chunk of changes and returns its sequence number; in the same
    /// transaction (one sync to disk), runs `also` (which must succeed with
    /// the chunk) and then `then` (index upkeep) under a savepoint: if
    /// `then` fails, its writes are rolled back and logged, and the chunk is
    /// still committed.
    pub fn append_chunk_then(
        &mut self,
        id: DocumentId,
        data: &[u8],
        also: impl FnOnce(&Connection) -> Result<(), ClientError>,
        then: impl FnOnce(&Connection) -> Result<(), ClientError>,
    ) -> Result<u64, ClientError> {
        let key = id.to_string();
        let mut tx = write_tx(&mut self.conn)?;
        tx.execute(
            &format!(
                "INSERT INTO documents (id, created_at, updated_at) VALUES (?1, {NOW}, {NOW})
                 ON CONFLICT (id) DO UPDATE SET updated_at = excluded.updated_at, wanted = 0"
            ),
            params![key],
        )?;
        let seq: i64 = tx.query_row(
            "SELECT max(coalesce((SELECT max(seq) FROM document_chunks WHERE document_id = ?1), 0),
                        (SELECT snapshot_seq FROM documents WHERE id = ?1)) + 1",
            params![key],
            |r| r.get(0),
        )?;
        tx.execute(
            "INSERT INTO document_chunks (document_id, seq, data) VALUES (?1, ?2, ?3)",
            params![key, seq, data],
        )?;
        also(&tx)?;
        {
            let savepoint = tx.savepoint()?;
            match then(&savepoint) {
                Ok(()) => savepoint.commit()?,
                Err(error) => {
                    // Dropping the savepoint rolls it back; the index catches
                    // up from its recorded heads later.
                    tracing::error!(%error, doc = %id, "index upkeep failed; it will catch up");
                }
            }
        }
        tx.commit()?;
        Ok(seq as u64)
    }

    /// Replaces a document's stored state with `snapshot` (all chunks folded
    /// in, as one transaction) and records the changes taken out of it.
    pub fn replace_with_quarantine(
        &mut self,
        id: DocumentId,
        snapshot: &[u8],
        quarantined: &[(String, Vec<u8>)],
        reason: &str,
        at_ms: i64,
    ) -> Result<u64, ClientError> {
        let key = id.to_string();
        let tx = write_tx(&mut self.conn)?;
        let seq: i64 = tx.query_row(
            "SELECT max(coalesce((SELECT max(seq) FROM document_chunks WHERE document_id = ?1), 0),
                        (SELECT snapshot_seq FROM documents WHERE id = ?1))",
            params![key],
            |r| r.get(0),
        )?;
        tx.execute(
            "UPDATE documents SET snapshot_seq = ?2 WHERE id = ?1",
            params![key, seq],
        )?;
        write_snapshot(&tx, &key, snapshot)?;
        tx.execute(
            "DELETE FROM document_chunks WHERE document_id = ?1",
            params![key],
        )?;
        for (hash, data) in quarantined {
            tx.execute(
                "INSERT OR IGNORE INTO quarantined_changes (document_id, change_hash, data, reason, at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![key, hash, data, reason, at_ms],
            )?;
        }
        tx.commit()?;
        Ok(seq as u64)
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    pub fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Deletes every document and its changes, in one transaction (a
    /// revoked device wiping its data).
    pub fn delete_all_documents(&mut self) -> Result<(), ClientError> {
        let tx = write_tx(&mut self.conn)?;
        tx.execute("DELETE FROM document_chunks", [])?;
        tx.execute("DELETE FROM documents", [])?;
        tx.commit()?;
        Ok(())
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>, ClientError> {
        Ok(self
            .conn
            .query_row(
                "SELECT value FROM sync_meta WHERE key = ?1",
                params![key],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), ClientError> {
        write_meta(&self.conn, key, value)
    }

    pub fn delete_meta(&self, key: &str) -> Result<(), ClientError> {
        self.conn
            .execute("DELETE FROM sync_meta WHERE key = ?1", params![key])?;
        Ok(())
    }
}
