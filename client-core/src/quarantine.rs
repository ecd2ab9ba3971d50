//! Changes the server refused: taken out of the local document (with every
//! local change that builds on them), so the document is back to what the
//! server accepted and sync can go on; kept whole in the local store for
//! people to review. Accepted changes are never touched.

use std::collections::HashSet;

use automerge::{Automerge, ChangeHash};
use rusqlite::params;
use serde::Serialize;
use sync_protocol::{DocumentId, doc_layout};

use crate::{ClientCore, ClientError, DocEvent, event_index};

/// A refused change, as the app shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuarantinedChange {
    pub document_id: String,
    pub change_hash: String,
    pub reason: String,
    pub at_ms: i64,
    /// What the change did, when it is an event record (e.g. the scans).
    pub summary: String,
}

impl ClientCore {
    /// Sets aside `rejected` changes of `id` (hex hashes from the server) and
    /// those depending on them. Returns how many changes were set aside.
    pub(crate) fn quarantine(
        &self,
        id: DocumentId,
        rejected: &[String],
        reason: &str,
    ) -> Result<usize, ClientError> {
        let refused: HashSet<ChangeHash> = rejected
            .iter()
            .filter_map(|h| h.parse::<ChangeHash>().ok())
            .collect();
        let Some(slot) = self.slot(id) else {
            return Ok(0);
        };
        let mut doc_guard = crate::replica::lock_doc(&slot);
        let local = &mut *doc_guard;
        // Every change, in causal order; drop the refused ones and their
        // descendants. A descendant (the server lists those as refused too:
        // it cannot apply them) may well be allowed on its own.
        let all = local.doc.get_changes(&[]);
        let mut dropped: HashSet<ChangeHash> = HashSet::new();
        let mut kept = Vec::with_capacity(all.len());
        let (mut roots, mut descendants) = (Vec::new(), Vec::new());
        for change in all {
            let hash = change.hash();
            let builds_on_dropped = change.deps().iter().any(|d| dropped.contains(d));
            if builds_on_dropped || refused.contains(&hash) {
                dropped.insert(hash);
                if builds_on_dropped {
                    descendants.push(change);
                } else {
                    roots.push(change);
                }
            } else {
                kept.push(change);
            }
        }
        if dropped.is_empty() {
            return Ok(0);
        }
        let mut doc = Automerge::new();
        doc.apply_changes(kept)?;
        // Built in one call from nothing, so laid out as a load is.
        let mut layout = doc_layout::Layout::Settled;
        layout.changed(&mut doc, true);
        let before_carry = doc.get_heads();
        let carried_over = carry_over_records(&local.doc, &roots, &descendants, &mut doc)?;
        if doc.get_heads() != before_carry {
            layout.changed(&mut doc, false);
        }
        let quarantined: Vec<(String, Vec<u8>)> = roots
            .iter()
            .chain(&descendants)
            .filter(|change| !carried_over.contains(&change.hash()))
            .map(|change| (change.hash().to_string(), change.raw_bytes().to_vec()))
            .collect();
        let now = crate::time::now_ms();
        let mut guard = self.lock();
        let inner = &mut *guard;
        local.last_seq =
            inner
                .store
                .replace_with_quarantine(id, &doc.save(), &quarantined, reason, now)?;
        local.doc = doc;
        local.layout = layout;
        local.chunks_since_snapshot = 0;
        let pending = local.pending_changes();
        inner.pending.insert(id, pending);
        event_index::forget(inner.store.conn_mut(), id)?;
        event_index::update(inner.store.conn_mut(), id, &local.doc)?;
        // Scans answered here and not yet written are untouched by the
        // refusal; they go into the cleaned document later.
        event_index::index_journal(inner.store.conn_mut(), id)?;
        let count = inner.pending_count();
        let heads = local.doc.get_heads();
        // Before the lock goes: whoever sees the quarantined rows also sees
        // the new count and can already have the event.
        self.publish_pending(count, |_| {});
        let _ = self.events.send(DocEvent::Quarantined {
            document: id,
            changes: quarantined.len(),
            heads,
        });
        drop(guard);
        drop(doc_guard);
        tracing::warn!(doc = %id, count = quarantined.len(), reason, "changes set aside");
        Ok(quarantined.len())
    }

    /// A sync message carrying every local change the server has not
    /// confirmed, or `None` if there is none.
    pub(crate) fn unconfirmed_changes_message(&self, id: DocumentId) -> Option<Vec<u8>> {
        let slot = self.slot(id)?;
        let local = crate::replica::lock_doc(&slot);
        let known: Vec<ChangeHash> = local
            .server_heads
            .iter()
            .copied()
            .filter(|h| local.doc.get_change_meta_by_hash(h).is_some())
            .collect();
        let changes = local.doc.get_changes(&known);
        if changes.is_empty() {
            return None;
        }
        let message = automerge::sync::Message {
            heads: local.doc.get_heads(),
            need: Vec::new(),
            have: Vec::new(),
            changes: changes
                .iter()
                .map(|c| c.raw_bytes().to_vec())
                .collect::<Vec<_>>()
                .into(),
            flags: None,
            version: automerge::sync::MessageVersion::V1,
        };
        Some(message.encode())
    }

    /// Changes the server refused for `id`, oldest first.
    pub fn quarantined_changes(
        &self,
        id: DocumentId,
    ) -> Result<Vec<QuarantinedChange>, ClientError> {
        let inner = self.lock();
        let mut stmt = inner.store.conn().prepare(
            "SELECT change_hash, data, reason, at_ms FROM quarantined_changes
             WHERE document_id = ?1 ORDER BY at_ms, change_hash",
        )?;
        let rows = stmt.query_map(params![id.to_string()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (change_hash, data, reason, at_ms) = row?;
            out.push(QuarantinedChange {
                document_id: id.to_string(),
                change_hash,
                reason,
                at_ms,
                summary: summarize(&data),
            });
        }
        Ok(out)
    }
}

/// A short description of a change: the record ids it put, by map.
fn summarize(data: &[u8]) -> String {
    let Ok(change) = automerge::Change::try_from(data) else {
        return "unreadable change".into();
    };
    let keys: Vec<String> = change
        .decode()
        .operations
        .iter()
        .filter_map(|op| match &op.key {
            automerge::legacy::Key::Map(key) => Some(key.to_string()),
            automerge::legacy::Key::Seq(_) => None,
        })
        .take(5)
        .collect();
    format!("{} operation(s) on {}", change.len(), keys.join(", "))
}

/// The scans and annulments that changes set aside only for building on a
/// refused one carry, written again into the `clean` document as one new
/// change: a door's answer is never lost to someone else's refused edit.
/// Records a refused change itself wrote stay out (and so does any record
/// the server refuses on its own when the new change arrives: it is then a
/// refused change of its own, set aside like any other). Returns the
/// descendants whose every operation was such a record: nothing of them is
/// left to review, so they are not kept in quarantine.
fn carry_over_records(
    before: &Automerge,
    roots: &[automerge::Change],
    descendants: &[automerge::Change],
    clean: &mut Automerge,
) -> Result<HashSet<ChangeHash>, ClientError> {
    use event_model::document;
    let mut carried_over = HashSet::new();
    if descendants.is_empty() || document::check(before).is_err() {
        return Ok(carried_over);
    }
    let refused = document::touched_by(before, roots)?;
    let mut tx = clean.transaction();
    for change in descendants {
        let written = document::touched_by(before, std::slice::from_ref(change))?;
        // One operation per record written (a record is one JSON string).
        let mut only_records = !written.info
            && written.lists.is_empty()
            && written.attendees.is_empty()
            && change.len() == written.scans.len() + written.annulments.len();
        // A record that cannot be read back or put again stays with its
        // change in quarantine (for review), and the refusal still goes
        // through: setting changes aside must not fail on one record.
        for id in &written.scans {
            let carried = !refused.scans.contains(id)
                && document::read_scan(before, id)
                    .and_then(|scan| match scan {
                        Some(scan) => document::put_scan(&mut tx, &scan).map(|_| true),
                        None => Ok(false),
                    })
                    .unwrap_or_else(|error| {
                        tracing::warn!(%error, scan = %id, "scan not carried over");
                        false
                    });
            only_records &= carried;
        }
        for id in &written.annulments {
            let carried = !refused.annulments.contains(id)
                && document::read_annulment(before, id)
                    .and_then(|annulment| match annulment {
                        Some(annulment) => {
                            document::put_annulment(&mut tx, &annulment).map(|_| true)
                        }
                        None => Ok(false),
                    })
                    .unwrap_or_else(|error| {
                        tracing::warn!(%error, annulment = %id, "annulment not carried over");
                        false
                    });
            only_records &= carried;
        }
        if only_records {
            carried_over.insert(change.hash());
        }
    }
    tx.commit();
    Ok(carried_over)
}
