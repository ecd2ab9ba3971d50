//! SQLite tables kept in step with event documents (attendees with a
//! trigram full-text index, scans with their outcomes, presence per
//! attendee and list), so searches, counts and scan answers never walk a
//! large document. Updated after every local or remote change from what
//! changed since the heads the index last saw; rebuilt from scratch by
//! forgetting those heads.
//!
//! An update happens in two phases so that a large remote batch never
//! holds the store for long: [`IndexWork::read`] takes what changed out
//! of the document (it needs the document, not the store), and
//! [`IndexWork::write_step`] writes it in bounded steps, each a short
//! transaction of its own. A local change writes all steps inside its own
//! transaction ([`update_within`]). Every step is idempotent, so a crash
//! between steps only means the next update (or the next open) redoes
//! them: `indexed_heads` moves only with the last one.

use std::collections::HashMap;

use automerge::{Automerge, ChangeHash};
use event_model::calendar::Calendar;
use event_model::document::{self, Attendee, CheckinList, EventInfo};
use event_model::rules::{self, Annulment, Direction, ListRules, Scan, ScanOutcome, TicketType};
use rusqlite::{Connection, OptionalExtension, params};
use sync_protocol::DocumentId;

use crate::ClientError;
use crate::store::{decode_heads, encode_heads};

fn model_error(e: event_model::ModelError) -> ClientError {
    ClientError::Corrupt(e.to_string())
}

/// Above this many changed records of a kind, the whole map is read in one
/// pass (and, for attendees, the full-text index rebuilt once) instead of
/// record by record.
const BULK_RECORDS: usize = 2_000;

/// A step goes in slices of [`ATTENDEES_PER_SLICE`] attendee rows or
/// [`SCANNED_ATTENDEES_PER_SLICE`] attendees' scans (about a millisecond
/// each) and ends after the slice during which someone came for the
/// store's lock ([`StepEnd`]), so a door scan waits for one slice.
const ATTENDEES_PER_SLICE: usize = 200;
const SCANNED_ATTENDEES_PER_SLICE: usize = 25;

/// The longest a step goes on while nobody waits. Each step is a commit
/// (and each commit writes the pages it touched to the write-ahead log
/// again): steps of a fixed 4 ms spent a fifth of a reconnecting tablet's
/// CPU committing (BENCHMARKS.md, "Index steps that end when a scan
/// waits"). Under the store lock's long-hold log ([`crate::store_guard::LONG_HOLD`]).
const STEP_LIMIT: std::time::Duration = std::time::Duration::from_millis(40);

/// When a step of index work ends: once it has worked its time limit, or
/// after the slice during which `someone_waits` became true.
pub(crate) struct StepEnd<'a> {
    limit: std::time::Duration,
    someone_waits: &'a dyn Fn() -> bool,
}

impl<'a> StepEnd<'a> {
    /// A step for work beside scans: it yields the store when one waits.
    pub(crate) fn yielding(someone_waits: &'a dyn Fn() -> bool) -> Self {
        Self {
            limit: STEP_LIMIT,
            someone_waits,
        }
    }

    /// The whole work in one go (inside a caller's transaction).
    fn whole() -> StepEnd<'static> {
        StepEnd {
            limit: std::time::Duration::MAX,
            someone_waits: &|| false,
        }
    }
}

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
    let tx = crate::store::write_tx(conn)?;
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
    if let Some(mut work) = IndexWork::read(indexed_heads(conn, id)?, id, doc)? {
        while work.write_step(conn, &StepEnd::whole())? {}
    }
    Ok(())
}

/// The heads the index of `id` reflects, if it was ever built.
pub(crate) fn indexed_heads(
    conn: &Connection,
    id: DocumentId,
) -> Result<Option<Vec<ChangeHash>>, ClientError> {
    let indexed: Option<Vec<u8>> = conn
        .query_row(
            "SELECT indexed_heads FROM event_index WHERE document_id = ?1",
            params![id.to_string()],
            |r| r.get(0),
        )
        .optional()?;
    Ok(indexed.map(|bytes| decode_heads(&bytes)))
}

/// What an update writes, read out of the document, in the order of its
/// steps: details and lists, attendees, then scans and annulments grouped
/// by attendee (so one step writes an attendee's records and re-evaluates
/// them together).
pub(crate) struct IndexWork {
    key: String,
    heads: Vec<ChangeHash>,
    first: bool,
    info: Option<EventInfo>,
    /// The ticket key and revocations, read with the details (`info`).
    signing: Option<Signing>,
    /// The ticket types' rules, read with the details (`info`).
    ticket_types: Option<Vec<TicketType>>,
    lists: Vec<CheckinList>,
    attendees: Vec<Attendee>,
    bulk: bool,
    /// Records by attendee; an annulment whose scan is not in this work is
    /// under the attendee the index already has for that scan (or none).
    records: Vec<AttendeeRecords>,
    /// Annulments of scans this work does not carry: their attendee comes
    /// from the index, in the first records step.
    loose_annulments: Vec<Annulment>,
    step: Step,
    /// The rules the scans of this work are judged by (from the lists'
    /// step on).
    rules: EventRules,
    /// Attendees whose outcome must be recomputed although none of their
    /// records is new (their list's rules changed).
    reevaluate_too: Vec<String>,
    /// Whether the event has annulments, known after the lists' step. It
    /// stays true between steps: every writer of annulments (a local
    /// `annul`, a remote batch) holds the document's lock, which the
    /// caller of the steps holds throughout.
    annulments: Annulments,
}

/// What checks a signed ticket code: the event's public key (empty for
/// none) and each revoked attendee with the time of the revocation.
struct Signing {
    key: String,
    revoked: std::collections::BTreeMap<String, i64>,
}

#[derive(Default)]
struct AttendeeRecords {
    attendee_id: String,
    scans: Vec<Scan>,
    annulments: Vec<Annulment>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Step {
    Lists,
    Attendees { from: usize },
    Records { from: usize },
    Finish,
    Done,
}

impl IndexWork {
    /// What changed in `doc` since `indexed` (the heads the index of `id`
    /// reflects, [`indexed_heads`]); `None` when it is up to date or `doc`
    /// is not an event document. Needs only the document, not the store.
    pub(crate) fn read(
        indexed: Option<Vec<ChangeHash>>,
        id: DocumentId,
        doc: &Automerge,
    ) -> Result<Option<Self>, ClientError> {
        if document::check(doc).is_err() {
            return Ok(None);
        }
        let heads = doc.get_heads();
        let from: Vec<ChangeHash> = match &indexed {
            Some(known) => known
                .iter()
                .copied()
                // Heads the document no longer knows (it was replaced): start over.
                .filter(|h| doc.get_change_meta_by_hash(h).is_some())
                .collect(),
            None => Vec::new(),
        };
        if indexed.is_some() && from == heads {
            return Ok(None);
        }
        let first = indexed.is_none();
        let touched = document::touched(doc, &from).map_err(model_error)?;
        let info = document::read_info(doc).map_err(model_error)?;
        let info = (touched.info || first).then_some(info);
        let signing = match info {
            Some(_) => Some(Signing {
                key: document::read_ticket_key(doc)
                    .map_err(model_error)?
                    .unwrap_or_default(),
                revoked: document::revoked_tickets(doc).map_err(model_error)?,
            }),
            None => None,
        };
        let ticket_types = match info {
            Some(_) => Some(document::ticket_types(doc).map_err(model_error)?),
            None => None,
        };
        let mut lists = Vec::with_capacity(touched.lists.len());
        for list_id in &touched.lists {
            lists.extend(document::read_list(doc, list_id).map_err(model_error)?);
        }
        // A first build (or a large import) reads whole maps in one pass
        // and rebuilds the full-text index once; small updates go record
        // by record.
        let bulk = first || touched.attendees.len() > BULK_RECORDS;
        let attendees = touched_records(
            bulk,
            first,
            &touched.attendees,
            |keep| document::attendees_where(doc, keep),
            |id| document::read_attendee(doc, id),
        )?;
        let scans = touched_records(
            first || touched.scans.len() > BULK_RECORDS,
            first,
            &touched.scans,
            |keep| document::scans_where(doc, keep),
            |id| document::read_scan(doc, id),
        )?;
        let mut annulments = Vec::with_capacity(touched.annulments.len());
        for annulment_id in &touched.annulments {
            annulments.extend(document::read_annulment(doc, annulment_id).map_err(model_error)?);
        }
        let mut by_attendee: HashMap<String, AttendeeRecords> = HashMap::new();
        let mut owner: HashMap<&str, &str> = HashMap::new();
        for scan in &scans {
            owner.insert(&scan.id, &scan.attendee_id);
        }
        let mut loose_annulments = Vec::new();
        for annulment in annulments {
            match owner.get(annulment.scan_id.as_str()) {
                Some(attendee) => by_attendee
                    .entry((*attendee).to_owned())
                    .or_default()
                    .annulments
                    .push(annulment),
                None => loose_annulments.push(annulment),
            }
        }
        for scan in scans {
            by_attendee
                .entry(scan.attendee_id.clone())
                .or_default()
                .scans
                .push(scan);
        }
        let mut records: Vec<AttendeeRecords> = by_attendee
            .into_iter()
            .map(|(attendee_id, mut r)| {
                r.attendee_id = attendee_id;
                r
            })
            .collect();
        records.sort_by(|a, b| a.attendee_id.cmp(&b.attendee_id));
        Ok(Some(Self {
            key: id.to_string(),
            heads,
            first,
            info,
            signing,
            ticket_types,
            lists,
            attendees,
            bulk,
            records,
            loose_annulments,
            step: Step::Lists,
            rules: EventRules::default(),
            reevaluate_too: Vec::new(),
            annulments: Annulments::NoneInEvent,
        }))
    }

    /// Writes the next step; returns whether another one follows.
    pub(crate) fn write_step(
        &mut self,
        conn: &Connection,
        end: &StepEnd<'_>,
    ) -> Result<bool, ClientError> {
        self.step = match self.step {
            Step::Lists => {
                self.write_lists(conn)?;
                Step::Attendees { from: 0 }
            }
            Step::Attendees { from } => {
                let to = in_slices(
                    from,
                    self.attendees.len(),
                    ATTENDEES_PER_SLICE,
                    end,
                    |a, b| self.write_attendees(conn, a, b),
                )?;
                if to < self.attendees.len() {
                    Step::Attendees { from: to }
                } else {
                    Step::Records { from: 0 }
                }
            }
            // No new records, but attendees to judge again (their list's
            // rules or the event's time zone changed): one slice of none.
            Step::Records { from: 0 } if self.records.is_empty() => {
                self.write_records(conn, 0, 0)?;
                Step::Finish
            }
            Step::Records { from } => {
                let to = in_slices(
                    from,
                    self.records.len(),
                    SCANNED_ATTENDEES_PER_SLICE,
                    end,
                    |a, b| self.write_records(conn, a, b),
                )?;
                if to < self.records.len() {
                    Step::Records { from: to }
                } else {
                    Step::Finish
                }
            }
            Step::Finish => {
                if self.bulk && !self.attendees.is_empty() {
                    rebuild_search(conn)?;
                }
                conn.prepare_cached(
                    "UPDATE event_index SET indexed_heads = ?2 WHERE document_id = ?1",
                )?
                .execute(params![self.key, encode_heads(&self.heads)])?;
                Step::Done
            }
            Step::Done => Step::Done,
        };
        Ok(self.step != Step::Done)
    }

    fn write_lists(&mut self, conn: &Connection) -> Result<(), ClientError> {
        if let Some(info) = &self.info {
            // Another time zone moves days and check-out times: every
            // attendee's stays are judged again (as for new list rules).
            let zone_before: Option<String> = conn
                .prepare_cached("SELECT time_zone FROM event_index WHERE document_id = ?1")?
                .query_row(params![self.key], |r| r.get(0))
                .optional()?;
            if zone_before.is_some_and(|zone| zone != info.time_zone) {
                let mut stmt = conn.prepare_cached(
                    "SELECT DISTINCT attendee_id FROM scans WHERE document_id = ?1",
                )?;
                let rows = stmt.query_map(params![self.key], |r| r.get::<_, String>(0))?;
                for row in rows {
                    self.reevaluate_too.push(row?);
                }
            }
            conn.execute(
                "INSERT INTO event_index (document_id, event_id, name, starts_at, location, annul_window_ms, time_zone, indexed_heads)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, x'')
                 ON CONFLICT (document_id) DO UPDATE SET event_id = excluded.event_id,
                    name = excluded.name, starts_at = excluded.starts_at, location = excluded.location,
                    annul_window_ms = excluded.annul_window_ms, time_zone = excluded.time_zone",
                params![
                    self.key,
                    info.id,
                    info.name,
                    info.starts_at,
                    info.location,
                    info.annul_window_ms,
                    info.time_zone
                ],
            )?;
        }
        if let Some(types) = &self.ticket_types {
            conn.execute(
                "DELETE FROM ticket_types WHERE document_id = ?1",
                params![self.key],
            )?;
            let mut insert = conn.prepare_cached(
                "INSERT INTO ticket_types (document_id, name, rules) VALUES (?1, ?2, ?3)",
            )?;
            for ticket_type in types {
                insert.execute(params![self.key, ticket_type.name, to_json(ticket_type)?])?;
            }
        }
        if let Some(signing) = &self.signing {
            conn.execute(
                "UPDATE event_index SET ticket_key = ?2 WHERE document_id = ?1",
                params![self.key, signing.key],
            )?;
            conn.execute(
                "DELETE FROM revoked_tickets WHERE document_id = ?1",
                params![self.key],
            )?;
            let mut insert = conn.prepare_cached(
                "INSERT INTO revoked_tickets (document_id, attendee_id, revoked_at_ms) VALUES (?1, ?2, ?3)",
            )?;
            for (attendee, at) in &signing.revoked {
                insert.execute(params![self.key, attendee, at])?;
            }
        }
        for list in &self.lists {
            conn.prepare_cached(
                "INSERT INTO checkin_lists (document_id, list_id, name, allow_multiple_entries, allow_entry_after_exit, rules)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (document_id, list_id) DO UPDATE SET name = excluded.name,
                    allow_multiple_entries = excluded.allow_multiple_entries,
                    allow_entry_after_exit = excluded.allow_entry_after_exit,
                    rules = excluded.rules",
            )?
            .execute(params![
                self.key,
                list.id,
                list.name,
                list.rules.allow_multiple_entries,
                list.rules.allow_entry_after_exit,
                to_json(&list.rules)?
            ])?;
            // New rules change everyone's outcome on that list.
            let mut stmt = conn.prepare_cached(
                "SELECT DISTINCT attendee_id FROM scans WHERE document_id = ?1 AND list_id = ?2",
            )?;
            let rows = stmt.query_map(params![self.key, list.id], |r| r.get::<_, String>(0))?;
            for row in rows {
                self.reevaluate_too.push(row?);
            }
        }
        // Every list's rules, once (the scans of this work are judged by them).
        self.rules = EventRules::of(conn, &self.key)?;
        // Annulments whose scan the index already has: their attendee is known now.
        if !self.loose_annulments.is_empty() {
            let mut owner = conn.prepare_cached(
                "SELECT attendee_id FROM scans WHERE document_id = ?1 AND scan_id = ?2",
            )?;
            let mut extra: HashMap<String, Vec<Annulment>> = HashMap::new();
            for a in std::mem::take(&mut self.loose_annulments) {
                match owner
                    .query_row(params![self.key, a.scan_id], |r| r.get::<_, String>(0))
                    .optional()?
                {
                    Some(attendee) => extra.entry(attendee).or_default().push(a),
                    // The scan is not here (yet): keep the record; its
                    // scan's arrival re-evaluates the attendee.
                    None => {
                        insert_annulment(conn, &self.key, &a)?;
                    }
                }
            }
            for (attendee_id, annulments) in extra {
                self.annulments = Annulments::MayExist;
                match self
                    .records
                    .binary_search_by(|r| r.attendee_id.cmp(&attendee_id))
                {
                    Ok(i) => self.records[i].annulments.extend(annulments),
                    Err(i) => self.records.insert(
                        i,
                        AttendeeRecords {
                            attendee_id,
                            scans: Vec::new(),
                            annulments,
                        },
                    ),
                }
            }
        }
        self.reevaluate_too.sort();
        self.reevaluate_too.dedup();
        if self.records.iter().any(|r| !r.annulments.is_empty()) {
            self.annulments = Annulments::MayExist;
        }
        if self.annulments == Annulments::NoneInEvent {
            // Annulments of earlier work, or put back from the journal.
            self.annulments = Annulments::in_index(conn, &self.key)?;
        }
        Ok(())
    }

    fn write_attendees(
        &self,
        conn: &Connection,
        from: usize,
        to: usize,
    ) -> Result<(), ClientError> {
        let bulk = self.bulk;
        let key = &self.key;
        let mut previous = conn.prepare_cached(
            "SELECT id, name, email FROM attendees WHERE document_id = ?1 AND attendee_id = ?2",
        )?;
        let mut fts_delete = conn.prepare_cached(
            "INSERT INTO attendees_fts (attendees_fts, rowid, name, email) VALUES ('delete', ?1, ?2, ?3)",
        )?;
        let mut upsert = conn.prepare_cached(
            "INSERT INTO attendees (document_id, attendee_id, ticket_code, name, email, ticket_type, revoked, lists,
                                    attention, unpaid, checked_in)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10,
                     -- Scans may come before their attendee (a signed code).
                     EXISTS (SELECT 1 FROM presence p WHERE p.document_id = ?1 AND p.attendee_id = ?2
                             AND p.checked_in))
             ON CONFLICT (document_id, attendee_id) DO UPDATE SET ticket_code = excluded.ticket_code,
                name = excluded.name, email = excluded.email, ticket_type = excluded.ticket_type,
                revoked = excluded.revoked, lists = excluded.lists, attention = excluded.attention,
                unpaid = excluded.unpaid
             RETURNING id",
        )?;
        let mut fts_insert = conn
            .prepare_cached("INSERT INTO attendees_fts (rowid, name, email) VALUES (?1, ?2, ?3)")?;
        for a in &self.attendees[from..to] {
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
                    lists,
                    a.attention,
                    a.unpaid
                ],
                |r| r.get(0),
            )?;
            if !bulk {
                fts_insert.execute(params![row, a.name, a.email])?;
            }
        }
        Ok(())
    }

    fn write_records(&self, conn: &Connection, from: usize, to: usize) -> Result<(), ClientError> {
        let mut affected: Vec<&str> = Vec::new();
        for records in &self.records[from..to] {
            let mut new = false;
            for scan in &records.scans {
                new |= insert_scan(conn, &self.key, scan)?;
            }
            for annulment in &records.annulments {
                new |= insert_annulment(conn, &self.key, annulment)?;
            }
            // A record already in the index was judged when it came in
            // (a scan answered here, now arriving in the document).
            if new || self.first {
                affected.push(&records.attendee_id);
            }
        }
        if from == 0 {
            affected.extend(self.reevaluate_too.iter().map(String::as_str));
        }
        for attendee in affected {
            reevaluate(conn, &self.key, attendee, &self.rules, self.annulments)?;
        }
        Ok(())
    }
}

/// Writes `from..end` in slices of `slice` until done or the step `end`s
/// (at least one slice); returns where it stopped.
fn in_slices(
    from: usize,
    to: usize,
    slice: usize,
    end: &StepEnd<'_>,
    mut write: impl FnMut(usize, usize) -> Result<(), ClientError>,
) -> Result<usize, ClientError> {
    let started = std::time::Instant::now();
    let mut at = from;
    while at < to {
        let next = (at + slice).min(to);
        write(at, next)?;
        at = next;
        if (end.someone_waits)() || started.elapsed() >= end.limit {
            break;
        }
    }
    Ok(at)
}

/// The records of one map that changed: the whole map walked in one pass
/// (much faster than a lookup per key on large maps), parsing only the
/// changed ones, when `bulk`; everything on a `first` build; else one
/// lookup per id. `ids` is sorted.
fn touched_records<T>(
    bulk: bool,
    first: bool,
    ids: &[String],
    all_where: impl FnOnce(&dyn Fn(&str) -> bool) -> Result<Vec<T>, event_model::ModelError>,
    one: impl Fn(&str) -> Result<Option<T>, event_model::ModelError>,
) -> Result<Vec<T>, ClientError> {
    if first {
        return all_where(&|_| true).map_err(model_error);
    }
    if bulk {
        let wanted = |id: &str| ids.binary_search_by(|t| t.as_str().cmp(id)).is_ok();
        return all_where(&wanted).map_err(model_error);
    }
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.extend(one(id).map_err(model_error)?);
    }
    Ok(out)
}

/// Inserts a scan unless the index has it; returns whether it was new.
pub(crate) fn insert_scan(conn: &Connection, key: &str, s: &Scan) -> Result<bool, ClientError> {
    let inserted = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO scans (document_id, scan_id, attendee_id, list_id, direction, device_id, staff_id, hlc, wall_ms,
                                          by_signature, payment_taken)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?
        .execute(params![
            key,
            s.id,
            s.attendee_id,
            s.list_id,
            s.direction.as_str(),
            s.device_id,
            s.staff_id,
            s.hlc.to_string(),
            s.wall_ms,
            s.by_signature,
            s.payment_taken
        ])?;
    Ok(inserted == 1)
}

fn insert_annulment(conn: &Connection, key: &str, a: &Annulment) -> Result<bool, ClientError> {
    let record = serde_json::to_string(a).unwrap_or_default();
    let inserted = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO annulments (document_id, annulment_id, scan_id, record) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![key, a.id, a.scan_id, record])?;
    Ok(inserted == 1)
}

/// Whether the event `key` has been indexed (its document has arrived).
pub(crate) fn is_indexed(conn: &Connection, key: &str) -> Result<bool, ClientError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM event_index WHERE document_id = ?1")?
        .exists(params![key])?)
}

/// The public key that checks the signed codes of event `key`: the event
/// document's, or one learned from the server before the document arrived.
pub(crate) fn ticket_key(conn: &Connection, key: &str) -> Result<Option<String>, ClientError> {
    Ok(conn
        .prepare_cached(
            "SELECT coalesce(
                (SELECT nullif(ticket_key, '') FROM event_index WHERE document_id = ?1),
                (SELECT public_key FROM learned_ticket_keys WHERE document_id = ?1))",
        )?
        .query_row(params![key], |r| r.get(0))?)
}

/// When `attendee_id`'s signed codes of event `key` were last revoked.
pub(crate) fn revoked_at(
    conn: &Connection,
    key: &str,
    attendee_id: &str,
) -> Result<Option<i64>, ClientError> {
    Ok(conn
        .prepare_cached(
            "SELECT revoked_at_ms FROM revoked_tickets WHERE document_id = ?1 AND attendee_id = ?2",
        )?
        .query_row(params![key, attendee_id], |r| r.get(0))
        .optional()?)
}

fn to_json<V: serde::Serialize>(value: &V) -> Result<String, ClientError> {
    serde_json::to_string(value).map_err(|e| ClientError::Corrupt(e.to_string()))
}

/// A list's rules as the index holds them (JSON of [`ListRules`]).
pub(crate) fn list_rules_from(json: &str) -> Result<ListRules, ClientError> {
    serde_json::from_str(json).map_err(|e| ClientError::Corrupt(format!("list rules: {e}")))
}

/// What the recorded scans of one event are judged by: every list's
/// rules, the annulment window and the event's calendar.
#[derive(Debug, Clone)]
pub(crate) struct EventRules {
    pub(crate) lists: HashMap<String, ListRules>,
    pub(crate) annul_window_ms: i64,
    pub(crate) calendar: Calendar,
}

impl Default for EventRules {
    fn default() -> Self {
        Self {
            lists: HashMap::new(),
            annul_window_ms: rules::DEFAULT_ANNUL_WINDOW_MS,
            calendar: Calendar::utc(),
        }
    }
}

impl EventRules {
    /// As the index holds them; before the event's details arrive, no
    /// list, the default window and UTC.
    pub(crate) fn of(conn: &Connection, key: &str) -> Result<Self, ClientError> {
        let mut stmt =
            conn.prepare_cached("SELECT list_id, rules FROM checkin_lists WHERE document_id = ?1")?;
        let rows = stmt.query_map(params![key], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut lists = HashMap::new();
        for row in rows {
            let (list_id, json) = row?;
            lists.insert(list_id, list_rules_from(&json)?);
        }
        let (annul_window_ms, time_zone) = conn
            .prepare_cached(
                "SELECT annul_window_ms, time_zone FROM event_index WHERE document_id = ?1",
            )?
            .query_row(params![key], |r| Ok((r.get(0)?, r.get::<_, String>(1)?)))
            .optional()?
            .unwrap_or((rules::DEFAULT_ANNUL_WINDOW_MS, String::new()));
        Ok(Self {
            lists,
            annul_window_ms,
            // UTC for a zone this app does not know (see `EventInfo::calendar`).
            calendar: Calendar::named(&time_zone).unwrap_or_default(),
        })
    }
}

/// The rules of a ticket type of event `key`, where it has some.
pub(crate) fn ticket_type(
    conn: &Connection,
    key: &str,
    ticket_type: &str,
) -> Result<Option<TicketType>, ClientError> {
    let json: Option<String> = conn
        .prepare_cached("SELECT rules FROM ticket_types WHERE document_id = ?1 AND name = ?2")?
        .query_row(params![key, ticket_type], |r| r.get(0))
        .optional()?;
    json.map(|json| {
        serde_json::from_str::<TicketType>(&json)
            .map_err(|e| ClientError::Corrupt(format!("ticket type `{ticket_type}`: {e}")))
    })
    .transpose()
}

/// Forgets what was indexed for `id`, so the next update rebuilds it.
/// Scans answered here but not yet in the document (the scan journal) are
/// put back at once: they are known only to the index and the journal.
pub(crate) fn forget(conn: &mut Connection, id: DocumentId) -> Result<(), ClientError> {
    let tx = crate::store::write_tx(conn)?;
    for table in [
        "revoked_tickets",
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

/// Indexes the journal's scans of `id` again (after [`forget`] and a
/// rebuild from the document, which does not hold them yet).
pub(crate) fn index_journal(conn: &mut Connection, id: DocumentId) -> Result<(), ClientError> {
    let key = id.to_string();
    let tx = crate::store::write_tx(conn)?;
    let scans: Vec<Scan> = {
        let mut stmt = tx.prepare_cached(
            "SELECT record FROM scan_journal WHERE document_id = ?1 ORDER BY rowid",
        )?;
        let rows = stmt.query_map(params![key], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for row in rows {
            let json = row?;
            out.push(
                serde_json::from_str(&json)
                    .map_err(|e| ClientError::Corrupt(format!("journaled scan: {e}")))?,
            );
        }
        out
    };
    if !scans.is_empty() {
        let rules = EventRules::of(&tx, &key)?;
        for scan in &scans {
            if insert_scan(&tx, &key, scan)? {
                reevaluate(&tx, &key, &scan.attendee_id, &rules, Annulments::MayExist)?;
            }
        }
    }
    tx.commit()?;
    Ok(())
}

/// A scan as the index holds it, with the outcome it was last given.
struct IndexedScan {
    scan: Scan,
    outcome: String,
    duplicate_of: Option<String>,
}

/// Every scan and annulment of one attendee (all lists); the annulments
/// are looked for only where the event may have some.
fn attendee_records(
    conn: &Connection,
    key: &str,
    attendee: &str,
    annulments: Annulments,
) -> Result<(Vec<IndexedScan>, Vec<Annulment>), ClientError> {
    let mut stmt = conn.prepare_cached(
        "SELECT scan_id, list_id, direction, device_id, staff_id, hlc, wall_ms, outcome, duplicate_of FROM scans
         WHERE document_id = ?1 AND attendee_id = ?2",
    )?;
    type Row = (
        String,
        String,
        String,
        String,
        String,
        String,
        i64,
        String,
        Option<String>,
    );
    let scans = stmt
        .query_map(params![key, attendee], |r| {
            Ok::<Row, _>((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
            ))
        })?
        .map(|row| {
            let (id, list_id, direction, device_id, staff_id, hlc, wall_ms, outcome, duplicate_of) =
                row?;
            Ok(IndexedScan {
                scan: Scan {
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
                    by_signature: false,
                    payment_taken: false,
                },
                outcome,
                duplicate_of,
            })
        })
        .collect::<Result<Vec<_>, ClientError>>()?;
    if annulments == Annulments::NoneInEvent {
        return Ok((scans, Vec::new()));
    }
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

/// Whether an event's index may hold annulments: a re-evaluation looks
/// them up per attendee only then (most events have none, and the lookup
/// is a join for every scan of the attendee).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Annulments {
    MayExist,
    NoneInEvent,
}

impl Annulments {
    /// Whether the index holds an annulment of event `key` now.
    fn in_index(conn: &Connection, key: &str) -> Result<Self, ClientError> {
        let any: bool = conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM annulments WHERE document_id = ?1)")?
            .query_row(params![key], |r| r.get(0))?;
        Ok(if any {
            Self::MayExist
        } else {
            Self::NoneInEvent
        })
    }
}

/// Recomputes one attendee's presence and scan outcomes from their
/// records; writes only the outcomes that changed.
pub(crate) fn reevaluate(
    conn: &Connection,
    key: &str,
    attendee: &str,
    rules: &EventRules,
    annulments: Annulments,
) -> Result<(), ClientError> {
    let (indexed, annulments) = attendee_records(conn, key, attendee, annulments)?;
    let evaluation = rules::evaluate(
        indexed.iter().map(|s| &s.scan),
        &annulments,
        |list| rules.lists.get(list).copied().unwrap_or_default(),
        rules.annul_window_ms,
        &rules.calendar,
    );
    // Scans leave the index only with the whole event (`forget`), so
    // without annulments every list the attendee had a presence on is in
    // this evaluation too, and the rows are updated where they are. An
    // annulled scan counts on no list: then the rows are written afresh.
    if !annulments.is_empty() {
        conn.prepare_cached("DELETE FROM presence WHERE document_id = ?1 AND attendee_id = ?2")?
            .execute(params![key, attendee])?;
    }
    let mut insert = conn.prepare_cached(
        "INSERT INTO presence (document_id, attendee_id, list_id, inside, checked_in, first_entry, last_entry, exited,
                               stay_ends_at_ms, entry_day, entries_that_day)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (document_id, attendee_id, list_id) DO UPDATE SET inside = excluded.inside,
            checked_in = excluded.checked_in, first_entry = excluded.first_entry,
            last_entry = excluded.last_entry, exited = excluded.exited,
            stay_ends_at_ms = excluded.stay_ends_at_ms, entry_day = excluded.entry_day,
            entries_that_day = excluded.entries_that_day",
    )?;
    // Checked in on any list: kept on the attendee's row for the report
    // (`analytics`); every list they have a presence on is in this
    // evaluation (above).
    let checked_in = evaluation.presence.values().any(|p| p.checked_in());
    conn.prepare_cached(
        "UPDATE attendees SET checked_in = ?3
         WHERE document_id = ?1 AND attendee_id = ?2 AND checked_in != ?3",
    )?
    .execute(params![key, attendee, checked_in])?;
    for ((attendee_id, list_id), p) in &evaluation.presence {
        insert.execute(params![
            key,
            attendee_id,
            list_id,
            p.inside,
            p.checked_in(),
            p.first_entry,
            p.last_entry,
            p.exited,
            p.stay_ends_at_ms,
            p.entry_day,
            p.entries_that_day
        ])?;
    }
    let before: HashMap<&str, (&str, Option<&str>)> = indexed
        .iter()
        .map(|s| {
            (
                s.scan.id.as_str(),
                (s.outcome.as_str(), s.duplicate_of.as_deref()),
            )
        })
        .collect();
    let mut outcome = conn.prepare_cached(
        "UPDATE scans SET outcome = ?3, duplicate_of = ?4 WHERE document_id = ?1 AND scan_id = ?2",
    )?;
    for (scan_id, result) in &evaluation.outcomes {
        let (name, of) = match result {
            ScanOutcome::Counted => ("counted", None),
            ScanOutcome::Duplicate { of } => ("duplicate", Some(of.as_str())),
            ScanOutcome::Annulled => ("annulled", None),
            ScanOutcome::NotInside => ("not_inside", None),
        };
        if before.get(scan_id.as_str()) != Some(&(name, of)) {
            outcome.execute(params![key, scan_id, name, of])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod step_tests {
    use super::*;

    #[test]
    fn a_step_stops_at_its_time_limit_or_when_someone_waits_never_before_one_slice() {
        let mut written = Vec::new();
        let to = in_slices(0, 95, 10, &StepEnd::whole(), |a, b| {
            written.push((a, b));
            Ok(())
        })
        .unwrap();
        assert_eq!(to, 95, "nobody waits, no limit: the whole range");
        assert_eq!(written.len(), 10);
        assert_eq!(written.last(), Some(&(90, 95)));

        written.clear();
        let spent = StepEnd {
            limit: std::time::Duration::ZERO,
            someone_waits: &|| false,
        };
        let to = in_slices(20, 100, 10, &spent, |a, b| {
            written.push((a, b));
            Ok(())
        })
        .unwrap();
        assert_eq!(to, 30, "a spent limit ends the step after one slice");
        assert_eq!(written, vec![(20, 30)]);

        // Someone comes for the store during the third slice.
        written.clear();
        let slices = std::cell::Cell::new(0);
        let waits = || slices.get() >= 3;
        let to = in_slices(0, 100, 10, &StepEnd::yielding(&waits), |a, b| {
            slices.set(slices.get() + 1);
            written.push((a, b));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            to, 30,
            "the step ends after the slice someone waited during"
        );
        assert_eq!(written.len(), 3);
        assert!(STEP_LIMIT < crate::store_guard::LONG_HOLD);
    }
}
