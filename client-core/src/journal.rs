//! The scan journal: a door scan is answered from the index and made
//! durable as one row here (plus its index rows) in one short SQLite
//! transaction, without touching its event document, so it never waits
//! behind a large document operation (a remote batch being applied, a
//! download). A background writer moves journaled scans into the document
//! in batches: online within a few milliseconds (other tablets see a scan
//! quickly), offline per [`OFFLINE_BATCH`] scans or [`OFFLINE_DELAY`], so a
//! long offline stretch is a few changes instead of one per scan. Each
//! batch is one Automerge change whose chunk is stored in the same
//! transaction that deletes the batch's rows; rows left by a crash are
//! written at the next open, idempotently by scan id
//! (`event_model::document::put_scan` skips a scan the document has).

use std::cell::Cell;
use std::time::{Duration, Instant};

use automerge::ChangeHash;
use event_model::document;
use event_model::rules::Scan;
use rusqlite::params;
use sync_protocol::DocumentId;

use crate::replica::WeakCore;
use crate::{ClientCore, ClientError};

/// Scans written into the document per change.
const SCANS_PER_CHANGE: usize = 500;
/// Online, the writer waits this long after a scan for others to join it.
const ONLINE_DELAY: Duration = Duration::from_millis(2);
/// Offline, the oldest journaled scan waits at most this long...
const OFFLINE_DELAY: Duration = Duration::from_secs(2);
/// ...or until this many have piled up.
const OFFLINE_BATCH: u64 = 200;
/// How often the writer looks without being woken (a connection coming up,
/// the replica being dropped).
const POLL: Duration = Duration::from_millis(100);

/// Starts the writer thread; it ends soon after the last clone of the
/// replica is dropped.
pub(crate) fn start_writer(weak: WeakCore) {
    let Some(signal) = weak.journal.upgrade() else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("scan-journal".into())
        .spawn(move || {
            let mut oldest: Option<Instant> = None;
            loop {
                let woken = signal.wait(POLL);
                let Some(core) = weak.upgrade() else {
                    return;
                };
                let journaled = core.lock().journaled;
                if journaled == 0 {
                    oldest = None;
                    continue;
                }
                let since = *oldest.get_or_insert_with(Instant::now);
                let connected = core.status.borrow().connected;
                if !(connected || journaled >= OFFLINE_BATCH || since.elapsed() >= OFFLINE_DELAY) {
                    continue;
                }
                if connected && woken {
                    std::thread::sleep(ONLINE_DELAY);
                }
                // A failure loses nothing: the rows stay and are tried again.
                if let Err(error) = core.flush_journal() {
                    tracing::warn!(%error, "journaled scans not yet written into their documents");
                }
                oldest = None;
            }
        });
    if let Err(error) = spawned {
        // Scans are still durable; they reach the documents at the next open.
        tracing::error!(%error, "no scan journal writer");
    }
}

impl ClientCore {
    /// Writes every journaled scan into its event document now (the
    /// background writer does this by itself); returns how many it wrote.
    pub fn flush_journal(&self) -> Result<usize, ClientError> {
        let documents: Vec<String> = {
            let inner = self.lock();
            let mut stmt = inner
                .store
                .conn()
                .prepare_cached("SELECT DISTINCT document_id FROM scan_journal")?;
            stmt.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<_, _>>()?
        };
        let mut written = 0;
        for key in documents {
            let id = DocumentId::parse(&key).map_err(|e| ClientError::Corrupt(e.to_string()))?;
            written += self.flush_journal_of(id)?;
        }
        Ok(written)
    }

    /// The document's heads, with every scan answered here written into it.
    pub fn heads(&self, id: DocumentId) -> Result<Vec<ChangeHash>, ClientError> {
        self.flush_journal_of(id)?;
        self.read(id, |d| d.get_heads())
    }

    /// Writes the journaled scans of one document into it.
    pub(crate) fn flush_journal_of(&self, id: DocumentId) -> Result<usize, ClientError> {
        let key = id.to_string();
        let mut written = 0;
        // A fresh tablet admits signed codes before the event's document
        // has arrived: their scans wait here, durable and indexed, until
        // there is a document to write them into.
        if !self.has_document(id) {
            return Ok(written);
        }
        loop {
            // Rows are chosen under the document's lock, so two writers
            // never take the same batch.
            let batch: Cell<Vec<String>> = Cell::new(Vec::new());
            let deleted = Cell::new(0usize);
            let more = Cell::new(false);
            let result = self.change_many_then(
                id,
                |doc| {
                    let rows: Vec<(String, String)> = {
                        let inner = self.lock();
                        let mut stmt = inner.store.conn().prepare_cached(
                            "SELECT scan_id, record FROM scan_journal WHERE document_id = ?1
                             ORDER BY rowid LIMIT ?2",
                        )?;
                        stmt.query_map(params![key, SCANS_PER_CHANGE as i64], |r| {
                            Ok((r.get(0)?, r.get(1)?))
                        })?
                        .collect::<Result<_, _>>()?
                    };
                    let mut scans = Vec::with_capacity(rows.len());
                    for (scan_id, json) in &rows {
                        let scan: Scan = serde_json::from_str(json).map_err(|e| {
                            ClientError::Corrupt(format!("journaled scan {scan_id}: {e}"))
                        })?;
                        // One change holds one staff member's scans: the
                        // server judges a change as a whole, by its writer.
                        if scans
                            .first()
                            .is_some_and(|s: &Scan| s.staff_id != scan.staff_id)
                        {
                            break;
                        }
                        scans.push(scan);
                    }
                    more.set(rows.len() == SCANS_PER_CHANGE || scans.len() < rows.len());
                    let mut tx = doc.transaction();
                    for scan in &scans {
                        if let Err(error) = document::put_scan(&mut tx, scan) {
                            tx.rollback();
                            return Err(error.into());
                        }
                    }
                    tx.commit();
                    batch.set(scans.into_iter().map(|scan| scan.id).collect());
                    Ok(())
                },
                |conn| {
                    let ids = batch.take();
                    let mut delete = conn.prepare_cached(
                        "DELETE FROM scan_journal WHERE document_id = ?1 AND scan_id = ?2",
                    )?;
                    let mut n = 0;
                    for scan_id in &ids {
                        n += delete.execute(params![key, scan_id])?;
                    }
                    deleted.set(n);
                    Ok(())
                },
            );
            if let Err(ClientError::NotFound(_)) = result {
                return Ok(written);
            }
            result?;
            let n = deleted.get();
            let count = {
                let mut inner = self.lock();
                inner.journaled = inner.journaled.saturating_sub(n as u64);
                inner.pending_count()
            };
            self.publish_pending(count, |_| {});
            written += n;
            if !more.get() {
                return Ok(written);
            }
        }
    }
}
