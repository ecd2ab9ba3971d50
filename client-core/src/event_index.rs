//! SQLite tables kept in step with event documents (attendees with a
//! trigram full-text index, scans with their outcomes, presence per
//! attendee and list), so searches, counts and scan answers never walk a
//! large document. Updated after every local or remote change from what
//! changed since the heads the index last saw; rebuilt from scratch by
//! forgetting those heads.

use automerge::{Automerge, ChangeHash};
use event_model::document::{self, Attendee, Touched};
use event_model::rules::{self, Annulment, Direction, ListRules, Scan, ScanOutcome};
use rusqlite::{Connection, OptionalExtension, params};
use sync_protocol::DocumentId;

use crate::ClientError;
use crate::store::{decode_heads, encode_heads};

fn model_error(e: event_model::ModelError) -> ClientError {
    ClientError::Corrupt(e.to_string())
}

/// Above this many changed attendees, the full-text index is rebuilt in
/// one pass instead of row by row.
const BULK_ATTENDEES: usize = 2_000;

/// Rebuilds the full-text index of attendee names and emails from the table.
pub(crate) fn rebuild_search(conn: &Connection) -> Result<(), ClientError> {
    conn.execute(
        "INSERT INTO attendees_fts (attendees_fts) VALUES ('rebuild')",
        [],
    )?;
    Ok(())
}

/// Brings the index of document `id` up to `doc`'s heads, in its own
/// transaction. Does nothing for documents that are not event documents.
pub(crate) fn update(
    conn: &mut Connection,
    id: DocumentId,
    doc: &Automerge,
) -> Result<(), ClientError> {
    let tx = conn.transaction()?;
    update_within(&tx, id, doc)?;
    tx.commit()?;
    Ok(())
}

/// Like [`update`], inside the caller's transaction (so a change and its
/// index entries are committed, and synced to disk, together).
pub(crate) fn update_within(
    conn: &Connection,
    id: DocumentId,
    doc: &Automerge,
) -> Result<(), ClientError> {
    if document::check(doc).is_err() {
        return Ok(());
    }
    let annul_window_ms = document::read_info(doc)
        .map_err(model_error)?
        .annul_window_ms;
    let key = id.to_string();
    let heads = doc.get_heads();
    let indexed: Option<Vec<u8>> = conn
        .query_row(
            "SELECT indexed_heads FROM event_index WHERE document_id = ?1",
            params![key],
            |r| r.get(0),
        )
        .optional()?;
    let from: Vec<ChangeHash> = match &indexed {
        Some(bytes) => decode_heads(bytes)
            .into_iter()
            // Heads the document no longer knows (it was replaced): start over.
            .filter(|h| doc.get_change_meta_by_hash(h).is_some())
            .collect(),
        None => Vec::new(),
    };
    if indexed.is_some() && from == heads {
        return Ok(());
    }
    let touched = document::touched(doc, &from).map_err(model_error)?;
    apply(
        conn,
        &key,
        doc,
        &touched,
        indexed.is_none(),
        annul_window_ms,
    )?;
    conn.execute(
        "UPDATE event_index SET indexed_heads = ?2 WHERE document_id = ?1",
        params![key, encode_heads(&heads)],
    )?;
    Ok(())
}

/// Forgets what was indexed for `id`, so the next update rebuilds it.
pub(crate) fn forget(conn: &mut Connection, id: DocumentId) -> Result<(), ClientError> {
    let tx = conn.transaction()?;
    for table in [
        "presence",
        "annulments",
        "scans",
        "attendees",
        "checkin_lists",
        "event_index",
    ] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE document_id = ?1"),
            params![id.to_string()],
        )?;
    }
    rebuild_search(&tx)?;
    tx.commit()?;
    Ok(())
}

fn apply(
    tx: &Connection,
    key: &str,
    doc: &Automerge,
    touched: &Touched,
    first: bool,
    annul_window_ms: i64,
) -> Result<(), ClientError> {
    if touched.info || first {
        let info = document::read_info(doc).map_err(model_error)?;
        tx.execute(
            "INSERT INTO event_index (document_id, event_id, name, starts_at, location, annul_window_ms, indexed_heads)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, x'')
             ON CONFLICT (document_id) DO UPDATE SET event_id = excluded.event_id,
                name = excluded.name, starts_at = excluded.starts_at, location = excluded.location,
                annul_window_ms = excluded.annul_window_ms",
            params![key, info.id, info.name, info.starts_at, info.location, info.annul_window_ms],
        )?;
    }
    let mut affected: Vec<String> = Vec::new();
    for list_id in &touched.lists {
        if let Some(list) = document::read_list(doc, list_id).map_err(model_error)? {
            tx.execute(
                "INSERT INTO checkin_lists (document_id, list_id, name, allow_multiple_entries, allow_entry_after_exit)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (document_id, list_id) DO UPDATE SET name = excluded.name,
                    allow_multiple_entries = excluded.allow_multiple_entries,
                    allow_entry_after_exit = excluded.allow_entry_after_exit",
                params![
                    key,
                    list.id,
                    list.name,
                    list.rules.allow_multiple_entries,
                    list.rules.allow_entry_after_exit
                ],
            )?;
            // New rules change everyone's outcome on that list.
            let mut stmt = tx.prepare_cached(
                "SELECT DISTINCT attendee_id FROM scans WHERE document_id = ?1 AND list_id = ?2",
            )?;
            let rows = stmt.query_map(params![key, list.id], |r| r.get::<_, String>(0))?;
            for row in rows {
                affected.push(row?);
            }
        }
    }
    // A first build (or a large import) reads whole maps in one pass and
    // rebuilds the full-text index once; small updates go record by record.
    let bulk = first || touched.attendees.len() > BULK_ATTENDEES;
    let attendees: Vec<Attendee> = if first {
        document::attendees(doc).map_err(model_error)?
    } else if bulk {
        let wanted: std::collections::HashSet<&str> =
            touched.attendees.iter().map(String::as_str).collect();
        document::attendees(doc)
            .map_err(model_error)?
            .into_iter()
            .filter(|a| wanted.contains(a.id.as_str()))
            .collect()
    } else {
        let mut out = Vec::with_capacity(touched.attendees.len());
        for attendee_id in &touched.attendees {
            out.extend(document::read_attendee(doc, attendee_id).map_err(model_error)?);
        }
        out
    };
    {
        let mut previous = tx.prepare_cached(
            "SELECT id, name, email FROM attendees WHERE document_id = ?1 AND attendee_id = ?2",
        )?;
        let mut fts_delete = tx.prepare_cached(
            "INSERT INTO attendees_fts (attendees_fts, rowid, name, email) VALUES ('delete', ?1, ?2, ?3)",
        )?;
        let mut upsert = tx.prepare_cached(
            "INSERT INTO attendees (document_id, attendee_id, ticket_code, name, email, ticket_type, revoked, lists)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (document_id, attendee_id) DO UPDATE SET ticket_code = excluded.ticket_code,
                name = excluded.name, email = excluded.email, ticket_type = excluded.ticket_type,
                revoked = excluded.revoked, lists = excluded.lists
             RETURNING id",
        )?;
        let mut fts_insert = tx
            .prepare_cached("INSERT INTO attendees_fts (rowid, name, email) VALUES (?1, ?2, ?3)")?;
        for a in &attendees {
            if !bulk
                && let Some((row, name, email)) = previous
                    .query_row(params![key, a.id], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                        ))
                    })
                    .optional()?
            {
                fts_delete.execute(params![row, name, email])?;
            }
            let lists = serde_json::to_string(&a.lists).unwrap_or_else(|_| "[]".into());
            let row: i64 = upsert.query_row(
                params![
                    key,
                    a.id,
                    a.ticket_code,
                    a.name,
                    a.email,
                    a.ticket_type,
                    a.revoked,
                    lists
                ],
                |r| r.get(0),
            )?;
            if !bulk {
                fts_insert.execute(params![row, a.name, a.email])?;
            }
        }
    }
    if bulk && !attendees.is_empty() {
        rebuild_search(tx)?;
    }
    {
        let scans: Vec<Scan> = if first {
            document::scans(doc).map_err(model_error)?
        } else {
            let mut out = Vec::with_capacity(touched.scans.len());
            for scan_id in &touched.scans {
                out.extend(document::read_scan(doc, scan_id).map_err(model_error)?);
            }
            out
        };
        let mut insert = tx.prepare_cached(
            "INSERT OR IGNORE INTO scans (document_id, scan_id, attendee_id, list_id, direction, device_id, staff_id, hlc, wall_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for s in scans {
            insert.execute(params![
                key,
                s.id,
                s.attendee_id,
                s.list_id,
                s.direction.as_str(),
                s.device_id,
                s.staff_id,
                s.hlc.to_string(),
                s.wall_ms
            ])?;
            affected.push(s.attendee_id);
        }
    }
    {
        let mut insert = tx.prepare_cached(
            "INSERT OR IGNORE INTO annulments (document_id, annulment_id, scan_id, record) VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut owner = tx.prepare_cached(
            "SELECT attendee_id FROM scans WHERE document_id = ?1 AND scan_id = ?2",
        )?;
        for annulment_id in &touched.annulments {
            let Some(a) = document::read_annulment(doc, annulment_id).map_err(model_error)? else {
                continue;
            };
            let record = serde_json::to_string(&a).unwrap_or_default();
            insert.execute(params![key, a.id, a.scan_id, record])?;
            if let Some(attendee) = owner
                .query_row(params![key, a.scan_id], |r| r.get::<_, String>(0))
                .optional()?
            {
                affected.push(attendee);
            }
        }
    }
    affected.sort();
    affected.dedup();
    for attendee in affected {
        reevaluate(tx, key, &attendee, annul_window_ms)?;
    }
    Ok(())
}

pub(crate) fn list_rules(
    conn: &Connection,
    key: &str,
    list_id: &str,
) -> Result<Option<ListRules>, ClientError> {
    Ok(conn
        .query_row(
            "SELECT allow_multiple_entries, allow_entry_after_exit FROM checkin_lists
             WHERE document_id = ?1 AND list_id = ?2",
            params![key, list_id],
            |r| {
                Ok(ListRules {
                    allow_multiple_entries: r.get(0)?,
                    allow_entry_after_exit: r.get(1)?,
                })
            },
        )
        .optional()?)
}

/// Every scan and annulment of one attendee (all lists).
pub(crate) fn attendee_records(
    conn: &Connection,
    key: &str,
    attendee: &str,
) -> Result<(Vec<Scan>, Vec<Annulment>), ClientError> {
    let mut stmt = conn.prepare_cached(
        "SELECT scan_id, list_id, direction, device_id, staff_id, hlc, wall_ms FROM scans
         WHERE document_id = ?1 AND attendee_id = ?2",
    )?;
    let scans = stmt
        .query_map(params![key, attendee], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, i64>(6)?,
            ))
        })?
        .map(|row| {
            let (id, list_id, direction, device_id, staff_id, hlc, wall_ms) = row?;
            Ok(Scan {
                direction: Direction::parse(&direction).ok_or_else(|| {
                    ClientError::Corrupt(format!("scan {id}: direction {direction}"))
                })?,
                hlc: hlc.parse().map_err(|e: event_model::hlc::HlcParseError| {
                    ClientError::Corrupt(e.to_string())
                })?,
                id,
                attendee_id: attendee.to_owned(),
                list_id,
                device_id,
                staff_id,
                wall_ms,
            })
        })
        .collect::<Result<Vec<_>, ClientError>>()?;
    let mut stmt = conn.prepare_cached(
        "SELECT a.record FROM annulments a JOIN scans s
            ON s.document_id = a.document_id AND s.scan_id = a.scan_id
         WHERE a.document_id = ?1 AND s.attendee_id = ?2",
    )?;
    let annulments = stmt
        .query_map(params![key, attendee], |r| r.get::<_, String>(0))?
        .filter_map(|row| row.ok())
        .filter_map(|json| serde_json::from_str(&json).ok())
        .collect();
    Ok((scans, annulments))
}

/// Recomputes one attendee's presence and scan outcomes from their records.
fn reevaluate(
    tx: &Connection,
    key: &str,
    attendee: &str,
    annul_window_ms: i64,
) -> Result<(), ClientError> {
    let (scans, annulments) = attendee_records(tx, key, attendee)?;
    let mut rules_by_list = std::collections::HashMap::new();
    for scan in &scans {
        if !rules_by_list.contains_key(&scan.list_id) {
            let rules = list_rules(tx, key, &scan.list_id)?.unwrap_or_default();
            rules_by_list.insert(scan.list_id.clone(), rules);
        }
    }
    let evaluation = rules::evaluate(
        &scans,
        &annulments,
        |list| rules_by_list.get(list).copied().unwrap_or_default(),
        annul_window_ms,
    );
    tx.execute(
        "DELETE FROM presence WHERE document_id = ?1 AND attendee_id = ?2",
        params![key, attendee],
    )?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO presence (document_id, attendee_id, list_id, inside, checked_in, first_entry, last_entry, exited)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for ((attendee_id, list_id), p) in &evaluation.presence {
        insert.execute(params![
            key,
            attendee_id,
            list_id,
            p.inside,
            p.checked_in(),
            p.first_entry,
            p.last_entry,
            p.exited
        ])?;
    }
    let mut outcome = tx.prepare_cached(
        "UPDATE scans SET outcome = ?3, duplicate_of = ?4 WHERE document_id = ?1 AND scan_id = ?2",
    )?;
    for (scan_id, result) in &evaluation.outcomes {
        let (name, of) = match result {
            ScanOutcome::Counted => ("counted", None),
            ScanOutcome::Duplicate { of } => ("duplicate", Some(of.as_str())),
            ScanOutcome::Annulled => ("annulled", None),
            ScanOutcome::NotInside => ("not_inside", None),
        };
        outcome.execute(params![key, scan_id, name, of])?;
    }
    Ok(())
}
