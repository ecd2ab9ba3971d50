//! The check-in domain on top of the local store: events and their lists,
//! attendee import from CSV, search, check-in, annulment, counts and the
//! duplicates to review. Answers come from the SQLite index
//! (`event_index`), which follows every local and remote change; records go
//! into the event document through the shared `event_model` layout.

use std::io::Read;
use std::time::{Duration, Instant};

use automerge::Automerge;
use event_model::calendar::Calendar;
use event_model::document::{self, Attendee, CheckinList, EventInfo};
use event_model::rules::{
    self, Annulment, Answer, Counts, Direction, Door, ListRules, Presence, Scan, Ticket, TicketType,
};
use event_model::tickets::{self, TicketClaims, TicketCodeError};
use event_model::{Hlc, HlcClock};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use sync_protocol::DocumentId;

use crate::time::now_ms;
use crate::{ClientCore, ClientError, attendee_csv, event_index, journal_table};

/// A check-in answer slower than this is logged with where its time went.
const SLOW_ANSWER: Duration = Duration::from_millis(250);

/// Attendees written per document change during an import: small changes
/// keep later syncs incremental (a single giant change is resent whole).
const IMPORT_BATCH: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventSummary {
    pub document_id: String,
    pub event_id: String,
    pub name: String,
    pub starts_at: String,
    pub location: String,
}

pub use crate::attendee_csv::RowError;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ImportReport {
    pub imported: u64,
    pub rejected: Vec<RowError>,
}

/// Passed to the progress callback during an import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportProgress {
    /// Rows read and checked so far (nothing written yet).
    Read { rows: u64 },
    /// All rows read; writing `total` attendees.
    Writing { total: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttendeeView {
    pub attendee_id: String,
    pub ticket_code: String,
    pub name: String,
    pub email: String,
    pub ticket_type: String,
    pub revoked: bool,
    /// What staff must see when they come in.
    pub attention: Option<String>,
    /// Not paid yet (the first entry asks staff to confirm payment).
    pub unpaid: bool,
}

/// A scan as people see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScanView {
    pub scan_id: String,
    pub attendee_id: String,
    pub list_id: String,
    pub direction: Direction,
    pub device_id: String,
    pub staff_id: String,
    pub wall_ms: i64,
    pub outcome: String,
    /// Admitted on a signed code's word.
    pub by_signature: bool,
    /// Payment was taken at the door (an unpaid ticket, confirmed).
    pub payment_taken: bool,
}

/// What a scan at the door gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckInResult {
    pub answer: Answer,
    pub attendee: Option<AttendeeView>,
    /// The scan recorded (admitted or exited), if any.
    pub scan_id: Option<String>,
    /// For "already checked in": when, where, by whom.
    pub previous: Option<ScanView>,
    /// The code was a signed one whose signature held: the attendee was
    /// vouched for by the event's key (and may not be in this replica's
    /// list yet, in which case `attendee` is what the code says).
    pub verified_by_signature: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DuplicateView {
    pub scan: ScanView,
    pub original: Option<ScanView>,
    pub attendee_name: String,
    pub ticket_code: String,
}

/// Why an annulment was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnulError {
    #[error("no scan {0} in this event")]
    UnknownScan(String),
    #[error("the scan is older than the annulment window ({window_minutes} min)")]
    TooLate { window_minutes: i64 },
}

fn scan_view(row: &rusqlite::Row<'_>) -> rusqlite::Result<ScanView> {
    let direction: String = row.get(3)?;
    Ok(ScanView {
        scan_id: row.get(0)?,
        attendee_id: row.get(1)?,
        list_id: row.get(2)?,
        direction: Direction::parse(&direction).unwrap_or(Direction::Entry),
        device_id: row.get(4)?,
        staff_id: row.get(5)?,
        wall_ms: row.get(6)?,
        outcome: row.get(7)?,
        by_signature: row.get(8)?,
        payment_taken: row.get(9)?,
    })
}

/// The columns [`scan_view`] reads, in its order (the next free index is 10).
const SCAN_COLUMNS: &str = "scan_id, attendee_id, list_id, direction, device_id, staff_id, wall_ms, outcome, by_signature, payment_taken";

fn attendee_view(row: &rusqlite::Row<'_>) -> rusqlite::Result<AttendeeView> {
    Ok(AttendeeView {
        attendee_id: row.get(0)?,
        ticket_code: row.get(1)?,
        name: row.get(2)?,
        email: row.get(3)?,
        ticket_type: row.get(4)?,
        revoked: row.get(5)?,
        attention: row.get(6)?,
        unpaid: row.get(7)?,
    })
}

const ATTENDEE_COLUMNS: &str =
    "attendee_id, ticket_code, name, email, ticket_type, revoked, attention, unpaid";

/// The attendee of event `key` whose `column` (`ticket_code` or
/// `attendee_id`, both indexed) is `value`, with the JSON of their lists.
fn find_attendee(
    conn: &rusqlite::Connection,
    key: &str,
    column: &'static str,
    value: &str,
) -> Result<Option<(AttendeeView, String)>, ClientError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {ATTENDEE_COLUMNS}, lists FROM attendees WHERE document_id = ?1 AND {column} = ?2"
        ))?
        .query_row(params![key, value], |r| {
            Ok((attendee_view(r)?, r.get::<_, String>(8)?))
        })
        .optional()?)
}

/// A signed code's claims where its signature holds under the event's key,
/// or the answer that refuses it. Without a key (the event has none, or it
/// has not reached this tablet) the code is unknown, as a plain one would be.
fn check_signed_code(
    conn: &rusqlite::Connection,
    key: &str,
    event: DocumentId,
    code: &str,
) -> Result<Result<TicketClaims, Answer>, ClientError> {
    let Some(text) = event_index::ticket_key(conn, key)? else {
        return Ok(Err(Answer::UnknownTicket));
    };
    let public = match tickets::parse_key(&text) {
        Ok(public) => public,
        Err(error) => {
            tracing::warn!(doc = %event, %error, "the event's ticket key is unreadable");
            return Ok(Err(Answer::UnknownTicket));
        }
    };
    Ok(match tickets::verify(&public, &event.to_string(), code) {
        Ok(claims) => Ok(claims),
        Err(TicketCodeError::OtherEvent) => Err(Answer::OtherEvent),
        Err(_) => Err(Answer::InvalidSignature),
    })
}

impl ClientCore {
    /// Creates an event document (administrators).
    pub fn create_event(&self, info: &EventInfo) -> Result<DocumentId, ClientError> {
        Calendar::named(&info.time_zone)?;
        let id = self.create_document()?;
        self.change(id, |tx| document::init(tx, info))?;
        Ok(id)
    }

    /// Changes an event's details; a time zone this app does not know is
    /// refused here (the server would refuse the change).
    pub fn update_event_info(
        &self,
        event: DocumentId,
        info: &EventInfo,
    ) -> Result<(), ClientError> {
        Calendar::named(&info.time_zone)?;
        self.change(event, |tx| document::set_info(tx, info))
    }

    /// Adds or replaces a ticket type's rules (administrators).
    pub fn put_ticket_type(
        &self,
        event: DocumentId,
        ticket_type: &TicketType,
    ) -> Result<(), ClientError> {
        self.change(event, |tx| document::put_ticket_type(tx, ticket_type))
    }

    /// The ticket types with rules, by name.
    pub fn ticket_types(&self, event: DocumentId) -> Result<Vec<TicketType>, ClientError> {
        let conn = self.index_reader();
        let mut stmt =
            conn.prepare("SELECT rules FROM ticket_types WHERE document_id = ?1 ORDER BY name")?;
        let rows = stmt.query_map(params![event.to_string()], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(
                serde_json::from_str(&row?)
                    .map_err(|e| ClientError::Corrupt(format!("ticket type: {e}")))?,
            );
        }
        Ok(out)
    }

    /// Adds or changes a check-in list (a door) and its rules.
    pub fn put_checkin_list(
        &self,
        event: DocumentId,
        list: &CheckinList,
    ) -> Result<(), ClientError> {
        self.change(event, |tx| document::put_list(tx, list))
    }

    /// Adds or replaces one attendee.
    pub fn put_attendee(&self, event: DocumentId, attendee: &Attendee) -> Result<(), ClientError> {
        self.change(event, |tx| document::put_attendee(tx, attendee))
    }

    /// Sets the public key the event's signed ticket codes are checked
    /// with (its text form, as the server gives it: `Account::ticket_key`);
    /// an administrator's change to the document, so every tablet holding
    /// the event gets it. A malformed key is refused before anything is
    /// written.
    pub fn set_ticket_key(&self, event: DocumentId, key: &str) -> Result<(), ClientError> {
        tickets::parse_key(key)?;
        self.change(event, |tx| document::set_ticket_key(tx, key.trim()))
    }

    /// Keeps the event's ticket key learned from the server before the
    /// event's document arrives, so a fresh tablet admits signed codes
    /// during its download (the document's own key wins once it is here).
    /// Asks for the document too, as [`ClientCore::find`] does.
    pub fn learn_ticket_key(&self, event: DocumentId, key: &str) -> Result<(), ClientError> {
        tickets::parse_key(key)?;
        self.find(event)?;
        self.lock().store.conn().execute(
            "INSERT INTO learned_ticket_keys (document_id, public_key) VALUES (?1, ?2)
             ON CONFLICT (document_id) DO UPDATE SET public_key = excluded.public_key",
            params![event.to_string(), key.trim()],
        )?;
        Ok(())
    }

    /// The key this replica checks `event`'s signed codes with (the
    /// document's, or one learned from the server), if it has one.
    pub fn ticket_key(&self, event: DocumentId) -> Result<Option<String>, ClientError> {
        event_index::ticket_key(&self.index_reader(), &event.to_string())
    }

    /// Revokes every signed code of `attendee_id` issued until now, on
    /// every tablet, offline too once the change reaches it; a code issued
    /// afterwards (a replacement) is good.
    pub fn revoke_signed_codes(
        &self,
        event: DocumentId,
        attendee_id: &str,
    ) -> Result<(), ClientError> {
        let now = now_ms();
        self.change(event, |tx| document::revoke_ticket(tx, attendee_id, now))
    }

    /// The events in the local store.
    pub fn events(&self) -> Result<Vec<EventSummary>, ClientError> {
        let conn = self.index_reader();
        let mut stmt = conn.prepare(
            "SELECT document_id, event_id, name, starts_at, location FROM event_index ORDER BY starts_at, name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(EventSummary {
                document_id: r.get(0)?,
                event_id: r.get(1)?,
                name: r.get(2)?,
                starts_at: r.get(3)?,
                location: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn checkin_lists(&self, event: DocumentId) -> Result<Vec<CheckinList>, ClientError> {
        let conn = self.index_reader();
        let mut stmt = conn.prepare(
            "SELECT list_id, name, rules FROM checkin_lists
             WHERE document_id = ?1 ORDER BY name, list_id",
        )?;
        let rows = stmt.query_map(params![event.to_string()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get::<_, String>(2)?))
        })?;
        let mut lists = Vec::new();
        for row in rows {
            let (id, name, rules) = row?;
            lists.push(CheckinList {
                id,
                name,
                rules: event_index::list_rules_from(&rules)?,
            });
        }
        Ok(lists)
    }

    /// Imports attendees from CSV (header: `ticket_code,name,email[,ticket_type][,attendee_id][,lists][,revoked][,attention][,unpaid]`;
    /// `lists` is `;`-separated; see `attendee_csv::read`). Rows are read and checked first, streaming,
    /// reporting `ImportProgress::Read`; returning `false` from `progress`
    /// aborts with nothing written. Valid rows are then written in small
    /// changes, all committed to the local store in one transaction, so an
    /// import is never half there. Refused rows are reported with their line.
    pub fn import_attendees_csv(
        &self,
        event: DocumentId,
        input: impl Read,
        mut progress: impl FnMut(ImportProgress) -> bool,
    ) -> Result<Option<ImportReport>, ClientError> {
        let Some(read) = attendee_csv::read(input, |rows| progress(ImportProgress::Read { rows }))?
        else {
            return Ok(None);
        };
        let attendees = read.attendees;
        let mut report = ImportReport {
            imported: 0,
            rejected: read.rejected,
        };
        if !progress(ImportProgress::Writing {
            total: attendees.len() as u64,
        }) {
            return Ok(None);
        }
        self.change_many(event, |doc| {
            for batch in attendees.chunks(IMPORT_BATCH) {
                let mut tx = doc.transaction();
                document::put_attendees(&mut tx, batch)?;
                tx.commit();
            }
            Ok(())
        })?;
        report.imported = attendees.len() as u64;
        Ok(Some(report))
    }

    /// Attendees whose ticket code starts with `query`, then those whose name
    /// or email contains it (any part, case-insensitive), at most `limit`.
    pub fn search_attendees(
        &self,
        event: DocumentId,
        query: &str,
        limit: usize,
    ) -> Result<Vec<AttendeeView>, ClientError> {
        let query = query.trim();
        if query.is_empty() {
            return Ok(Vec::new());
        }
        let key = event.to_string();
        let conn = self.index_reader();
        let mut found: Vec<AttendeeView> = Vec::new();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {ATTENDEE_COLUMNS} FROM attendees
             WHERE document_id = ?1 AND ticket_code >= ?2 AND ticket_code < ?2 || char(1114111)
             ORDER BY ticket_code LIMIT ?3"
        ))?;
        for row in stmt.query_map(params![key, query, limit as i64], attendee_view)? {
            found.push(row?);
        }
        if found.len() < limit {
            let rest = (limit - found.len()) as i64;
            let rows: Vec<AttendeeView> = if query.chars().count() >= 3 {
                // Trigram full-text search: any part of the name or email.
                let phrase = format!("\"{}\"", query.replace('"', "\"\""));
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {} FROM attendees_fts f JOIN attendees a ON a.id = f.rowid
                     WHERE attendees_fts MATCH ?2 AND a.document_id = ?1 ORDER BY a.name LIMIT ?3",
                    ATTENDEE_COLUMNS
                        .split(", ")
                        .map(|c| format!("a.{c}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))?;
                stmt.query_map(
                    params![key, phrase, rest + found.len() as i64],
                    attendee_view,
                )?
                .collect::<Result<_, _>>()?
            } else {
                let pattern = format!("%{}%", query.replace('%', "\\%").replace('_', "\\_"));
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {ATTENDEE_COLUMNS} FROM attendees
                     WHERE document_id = ?1 AND (name LIKE ?2 ESCAPE '\\' OR email LIKE ?2 ESCAPE '\\')
                     ORDER BY name LIMIT ?3"
                ))?;
                stmt.query_map(
                    params![key, pattern, rest + found.len() as i64],
                    attendee_view,
                )?
                .collect::<Result<_, _>>()?
            };
            for row in rows {
                if found.len() >= limit {
                    break;
                }
                if !found.iter().any(|f| f.attendee_id == row.attendee_id) {
                    found.push(row);
                }
            }
        }
        Ok(found)
    }

    /// Who operates this device: the signed-in user and the device id (set
    /// by `Account` at sign-in).
    fn operator(&self) -> Result<(String, String), ClientError> {
        let staff = self.meta("user_id")?.unwrap_or_default();
        Ok((self.device_id()?, staff))
    }

    /// This device: the id the server gave it at sign-in, else a stable id
    /// of this local store (made on first use).
    pub(crate) fn device_id(&self) -> Result<String, ClientError> {
        if let Some(device) = self.meta("device_id")?.filter(|d| !d.is_empty()) {
            return Ok(device);
        }
        if let Some(install) = self.meta("install_id")? {
            return Ok(install);
        }
        let id = uuid::Uuid::new_v4().to_string();
        self.set_meta("install_id", &id)?;
        Ok(id)
    }

    /// A scan at the door: looks the code up, applies the list's rules to
    /// what is known locally, and records the scan (durably, before
    /// returning) when it admits or lets out.
    pub fn check_in(
        &self,
        event: DocumentId,
        ticket_code: &str,
        list_id: &str,
        direction: Direction,
    ) -> Result<CheckInResult, ClientError> {
        self.check_in_with(event, ticket_code, list_id, direction, false)
    }

    /// The second step of [`Answer::ConfirmPayment`]: staff took payment
    /// for an unpaid ticket; the same scan again, now admitted.
    pub fn check_in_confirming_payment(
        &self,
        event: DocumentId,
        ticket_code: &str,
        list_id: &str,
        direction: Direction,
    ) -> Result<CheckInResult, ClientError> {
        self.check_in_with(event, ticket_code, list_id, direction, true)
    }

    fn check_in_with(
        &self,
        event: DocumentId,
        ticket_code: &str,
        list_id: &str,
        direction: Direction,
        payment_confirmed: bool,
    ) -> Result<CheckInResult, ClientError> {
        let asked = Instant::now();
        let cpu_before = crate::time::thread_cpu_time();
        // Who holds the store as this scan comes for it (for the slow log).
        let holder = self.store_last_taken_at();
        let (device, staff) = self.operator()?;
        let key = event.to_string();
        // One short transaction under the store's lock: the lookup, the
        // answer and, when a scan is recorded, its journal and index rows
        // (durable before the answer returns). The event document is
        // written later by the journal writer (`journal.rs`), so a scan
        // never waits for a document operation.
        let mut guard = self.lock();
        let locked = asked.elapsed();
        let inner = &mut *guard;
        let tx = crate::store::write_tx(inner.store.conn_mut())?;
        let begun = asked.elapsed();
        let event_rules = event_index::EventRules::of(&tx, &key)?;
        let now = now_ms();
        let (attendee, answer, last_hlc, previous, signed, payment_taken) = {
            let conn: &rusqlite::Connection = &tx;
            let code = ticket_code.trim();
            let mut attendee = find_attendee(conn, &key, "ticket_code", code)?;
            // A code no attendee here carries may be a signed one: it says
            // who it is for, and the event's key vouches for it.
            let signed = match attendee {
                None if tickets::looks_signed(code) => {
                    Some(check_signed_code(conn, &key, event, code)?)
                }
                _ => None,
            };
            if let Some(Ok(claims)) = &signed {
                attendee = find_attendee(conn, &key, "attendee_id", &claims.attendee_id)?;
            }
            // The ticket type's rules: the attendee's as held here, or
            // the one a signed code names.
            let ticket_type = match (&attendee, &signed) {
                (Some((view, _)), _) => Some(view.ticket_type.as_str()),
                (None, Some(Ok(claims))) => Some(claims.ticket_type.as_str()),
                _ => None,
            };
            let ticket_type = match ticket_type {
                Some(name) => event_index::ticket_type(conn, &key, name)?,
                None => None,
            };
            let type_note = ticket_type.as_ref().and_then(|t| t.attention.clone());
            let ticket = match (&attendee, &signed) {
                (Some((view, lists)), _) => Some(Ticket {
                    attendee_id: view.attendee_id.clone(),
                    revoked: view.revoked,
                    lists: serde_json::from_str(lists).unwrap_or_default(),
                    attention: rules::joined_notes(view.attention.as_deref(), type_note.as_deref()),
                    unpaid: view.unpaid,
                }),
                // Someone this replica does not hold: as the code says,
                // valid on every list, with their ticket type's note.
                (None, Some(Ok(claims))) => Some(Ticket {
                    attendee_id: claims.attendee_id.clone(),
                    attention: type_note.clone(),
                    ..Ticket::default()
                }),
                (None, _) => None,
            };
            let attendee_id = match (&ticket, &signed) {
                (Some(t), _) => Some(t.attendee_id.as_str()),
                (None, Some(Ok(claims))) => Some(claims.attendee_id.as_str()),
                _ => None,
            };
            let presence = match attendee_id {
                Some(attendee_id) => conn
                    .query_row(
                        "SELECT inside, first_entry, last_entry, exited, stay_ends_at_ms, entry_day,
                                entries_that_day FROM presence
                         WHERE document_id = ?1 AND attendee_id = ?2 AND list_id = ?3",
                        params![key, attendee_id, list_id],
                        |r| {
                            Ok(Presence {
                                inside: r.get(0)?,
                                first_entry: r.get(1)?,
                                last_entry: r.get(2)?,
                                exited: r.get(3)?,
                                stay_ends_at_ms: r.get(4)?,
                                entry_day: r.get(5)?,
                                entries_that_day: r.get(6)?,
                            })
                        },
                    )
                    .optional()?
                    .unwrap_or_default(),
                None => Presence::default(),
            };
            let door = |rules| Door {
                list_id,
                rules,
                ticket_window: ticket_type.as_ref().map(|t| t.window).unwrap_or_default(),
                now_ms: now,
                calendar: &event_rules.calendar,
                payment_confirmed,
            };
            let answer = match &signed {
                Some(Err(refused)) => refused.clone(),
                Some(Ok(claims)) => {
                    // Before the event's document has arrived this tablet
                    // knows no list: a signed code is admitted on the list
                    // the app scans for, under the strictest rules.
                    let list_rules = match event_rules.lists.get(list_id) {
                        Some(rules) => Some(*rules),
                        None if !event_index::is_indexed(conn, &key)? => Some(ListRules::default()),
                        None => None,
                    };
                    match list_rules {
                        Some(list_rules) => rules::decide_signed(
                            claims,
                            ticket.as_ref(),
                            event_index::revoked_at(conn, &key, &claims.attendee_id)?,
                            direction,
                            &presence,
                            &door(list_rules),
                        ),
                        None => Answer::NotValidOnList,
                    }
                }
                None => match event_rules.lists.get(list_id) {
                    Some(list_rules) => {
                        rules::decide(ticket.as_ref(), direction, &presence, &door(*list_rules))
                    }
                    None if ticket.is_none() => Answer::UnknownTicket,
                    None => Answer::NotValidOnList,
                },
            };
            let previous = match &answer {
                Answer::AlreadyCheckedIn { scan } => conn
                    .query_row(
                        &format!("SELECT {SCAN_COLUMNS} FROM scans WHERE document_id = ?1 AND scan_id = ?2"),
                        params![key, scan],
                        scan_view,
                    )
                    .optional()?,
                _ => None,
            };
            let last_hlc: Option<String> = conn.query_row(
                "SELECT max(hlc) FROM scans WHERE document_id = ?1",
                params![key],
                |r| r.get(0),
            )?;
            // An attendee this replica does not hold yet is shown as the
            // signed code describes them.
            let attendee = match (attendee, &signed) {
                (Some((view, _)), _) => Some(view),
                (None, Some(Ok(claims))) => Some(AttendeeView {
                    attendee_id: claims.attendee_id.clone(),
                    ticket_code: code.to_owned(),
                    name: String::new(),
                    email: String::new(),
                    ticket_type: claims.ticket_type.clone(),
                    revoked: false,
                    attention: type_note.clone(),
                    unpaid: false,
                }),
                (None, _) => None,
            };
            // What the first step asked for was confirmed: the scan says
            // the door took payment.
            let payment_taken = payment_confirmed
                && direction == Direction::Entry
                && ticket.as_ref().is_some_and(|t| t.unpaid)
                && !presence.checked_in();
            (
                attendee,
                answer,
                last_hlc,
                previous,
                signed.is_some_and(|s| s.is_ok()),
                payment_taken,
            )
        };
        let looked_up = asked.elapsed();
        let scan_id = match (&answer, &attendee) {
            (answer, Some(view)) if answer.records_scan() => {
                let mut clock = HlcClock::new(device.clone());
                if let Some(last) = last_hlc.and_then(|h| h.parse::<Hlc>().ok()) {
                    clock.observe(&last);
                }
                let scan = Scan {
                    id: uuid::Uuid::new_v4().to_string(),
                    attendee_id: view.attendee_id.clone(),
                    list_id: list_id.to_owned(),
                    direction,
                    device_id: device,
                    staff_id: staff,
                    hlc: clock.tick(now),
                    wall_ms: now,
                    by_signature: signed,
                    payment_taken,
                };
                // A fresh tablet may scan a signed code before the event's
                // document (and its annulment window) has arrived: the
                // rules then are the defaults (`EventRules::of`).
                journal_table::record(&tx, &key, &scan)?;
                event_index::insert_scan(&tx, &key, &scan)?;
                event_index::reevaluate(
                    &tx,
                    &key,
                    &scan.attendee_id,
                    &event_rules,
                    event_index::Annulments::MayExist,
                )?;
                Some(scan.id)
            }
            _ => None,
        };
        let decided = asked.elapsed();
        tx.commit()?;
        let answered = asked.elapsed();
        if answered >= SLOW_ANSWER {
            // Where a slow answer's time went: waiting for this replica's
            // store (another thread holds it), for SQLite's write lock (a
            // background compaction's transaction), the lookup, recording
            // the scan (journal and index rows), or the commit's sync to
            // disk; and how much of it this thread ran (the rest it waited,
            // or was not given the CPU).
            tracing::warn!(
                doc = %event,
                total_ms = answered.as_millis() as u64,
                cpu_ms = crate::time::thread_cpu_time().saturating_sub(cpu_before).as_millis() as u64,
                store_lock_ms = locked.as_millis() as u64,
                write_lock_ms = (begun - locked).as_millis() as u64,
                lookup_ms = (looked_up - begun).as_millis() as u64,
                record_ms = (decided - looked_up).as_millis() as u64,
                commit_ms = (answered - decided).as_millis() as u64,
                store_last_taken_at = %holder.map_or("-".into(), |at| format!("{}:{}", at.file(), at.line())),
                "slow check-in answer"
            );
        }
        if scan_id.is_some() {
            inner.journaled += 1;
            let count = inner.pending_count();
            drop(guard);
            self.publish_pending(count, |_| {});
            self.journal.wake();
        }
        Ok(CheckInResult {
            answer,
            attendee,
            scan_id,
            previous,
            verified_by_signature: signed,
        })
    }

    /// Undoes a scan made less than the event's annulment window ago.
    pub fn annul(
        &self,
        event: DocumentId,
        scan_id: &str,
    ) -> Result<Result<(), AnnulError>, ClientError> {
        let (device, staff) = self.operator()?;
        // The scan goes into the document before its annulment does.
        self.flush_journal_of(event)?;
        let key = event.to_string();
        let found: Option<(String, String, i64)> = self
            .lock()
            .store
            .conn()
            .query_row(
                "SELECT s.hlc, (SELECT max(hlc) FROM scans WHERE document_id = ?1), e.annul_window_ms
                 FROM scans s JOIN event_index e ON e.document_id = s.document_id
                 WHERE s.document_id = ?1 AND s.scan_id = ?2",
                params![key, scan_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((scan_hlc, last, window_ms)) = found else {
            return Ok(Err(AnnulError::UnknownScan(scan_id.to_owned())));
        };
        let scan_hlc: Hlc = scan_hlc
            .parse()
            .map_err(|e: event_model::hlc::HlcParseError| ClientError::Corrupt(e.to_string()))?;
        let mut clock = HlcClock::new(device.clone());
        if let Ok(last) = last.parse::<Hlc>() {
            clock.observe(&last);
        }
        let now = now_ms();
        let annulment = Annulment {
            id: uuid::Uuid::new_v4().to_string(),
            scan_id: scan_id.to_owned(),
            device_id: device,
            staff_id: staff,
            hlc: clock.tick(now),
            wall_ms: now,
        };
        if annulment.hlc.wall_ms - scan_hlc.wall_ms > window_ms {
            return Ok(Err(AnnulError::TooLate {
                window_minutes: window_ms / 60_000,
            }));
        }
        self.change(event, |tx| document::put_annulment(tx, &annulment))?;
        Ok(Ok(()))
    }

    /// How many scans this replica knows of an event (its own and every
    /// other device's, whatever their outcome).
    pub fn scan_count(&self, event: DocumentId) -> Result<u64, ClientError> {
        let n: i64 = self
            .index_reader()
            .prepare_cached("SELECT count(*) FROM scans WHERE document_id = ?1")?
            .query_row(params![event.to_string()], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// Counts for one list, or for the whole event (`None`: any list),
    /// now: a stay a list's check-out of everyone has ended is not inside.
    pub fn counts(&self, event: DocumentId, list_id: Option<&str>) -> Result<Counts, ClientError> {
        self.counts_at(event, list_id, now_ms())
    }

    /// Counts as they are (or were) at `at_ms`, as far as the check-out of
    /// everyone goes (the scans are the ones held now).
    pub fn counts_at(
        &self,
        event: DocumentId,
        list_id: Option<&str>,
        at_ms: i64,
    ) -> Result<Counts, ClientError> {
        let key = event.to_string();
        let conn = self.index_reader();
        // `?2` NULL: the whole event (any list).
        let counts = conn.query_row(
            "SELECT count(*),
                    coalesce(sum(EXISTS (SELECT 1 FROM presence p WHERE p.document_id = a.document_id
                        AND p.attendee_id = a.attendee_id AND (?2 IS NULL OR p.list_id = ?2)
                        AND p.checked_in)), 0),
                    coalesce(sum(EXISTS (SELECT 1 FROM presence p WHERE p.document_id = a.document_id
                        AND p.attendee_id = a.attendee_id AND (?2 IS NULL OR p.list_id = ?2)
                        AND p.inside AND (p.stay_ends_at_ms IS NULL OR p.stay_ends_at_ms > ?3))), 0)
             FROM attendees a
             WHERE a.document_id = ?1 AND NOT a.revoked
               AND (?2 IS NULL OR a.lists = '[]'
                    OR EXISTS (SELECT 1 FROM json_each(a.lists) WHERE value = ?2))",
            params![key, list_id, at_ms],
            |r| {
                Ok(Counts {
                    expected: r.get::<_, i64>(0)? as u64,
                    checked_in: r.get::<_, i64>(1)? as u64,
                    inside: r.get::<_, i64>(2)? as u64,
                })
            },
        )?;
        Ok(counts)
    }

    /// Duplicate entries to review, in scan order.
    pub fn duplicates(&self, event: DocumentId) -> Result<Vec<DuplicateView>, ClientError> {
        let key = event.to_string();
        let conn = self.index_reader();
        let mut stmt = conn.prepare(&format!(
            "SELECT {SCAN_COLUMNS}, duplicate_of FROM scans
             WHERE document_id = ?1 AND outcome = 'duplicate' ORDER BY hlc, scan_id"
        ))?;
        let rows: Vec<(ScanView, Option<String>)> = stmt
            .query_map(params![key], |r| Ok((scan_view(r)?, r.get(10)?)))?
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(rows.len());
        for (scan, of) in rows {
            let original = match &of {
                Some(of) => conn
                    .query_row(
                        &format!("SELECT {SCAN_COLUMNS} FROM scans WHERE document_id = ?1 AND scan_id = ?2"),
                        params![key, of],
                        scan_view,
                    )
                    .optional()?,
                None => None,
            };
            let (attendee_name, ticket_code) = conn
                .query_row(
                    "SELECT name, ticket_code FROM attendees WHERE document_id = ?1 AND attendee_id = ?2",
                    params![key, scan.attendee_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?
                .unwrap_or_default();
            out.push(DuplicateView {
                scan,
                original,
                attendee_name,
                ticket_code,
            });
        }
        Ok(out)
    }

    /// Scans of an event, newest first (for a "recent scans" view).
    pub fn recent_scans(
        &self,
        event: DocumentId,
        limit: usize,
    ) -> Result<Vec<ScanView>, ClientError> {
        let conn = self.index_reader();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {SCAN_COLUMNS} FROM scans WHERE document_id = ?1 ORDER BY hlc DESC, scan_id DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![event.to_string(), limit as i64], scan_view)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Scans indexed after position `after` (0 at first, then the position
    /// of the last one returned), oldest first, at most `limit`: a live view
    /// (an arrival chart, a door's recent list) reads only what is new
    /// instead of counting or reading every scan of the event again.
    /// Positions grow as scans enter the index, local or remote; rebuilding
    /// the index (`rebuild_event_index`) numbers them afresh, so a view reads
    /// again from 0 after one.
    pub fn scans_after(
        &self,
        event: DocumentId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, ScanView)>, ClientError> {
        let conn = self.index_reader();
        // `NOT INDEXED`: walk the table from the rowid on (the indexes would
        // have SQLite visit every scan of the event to find the new ones).
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {SCAN_COLUMNS}, rowid FROM scans NOT INDEXED
             WHERE rowid > ?2 AND document_id = ?1 ORDER BY rowid LIMIT ?3"
        ))?;
        let rows = stmt.query_map(
            params![event.to_string(), after as i64, limit as i64],
            |r| Ok((r.get::<_, i64>(10)? as u64, scan_view(r)?)),
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Rebuilds an event's index from its document.
    pub fn rebuild_event_index(&self, event: DocumentId) -> Result<(), ClientError> {
        let slot = self.slot(event).ok_or(ClientError::NotFound(event))?;
        let local = crate::replica::lock_doc(&slot);
        let mut inner = self.lock();
        event_index::forget(inner.store.conn_mut(), event)?;
        event_index::update(inner.store.conn_mut(), event, &local.doc)?;
        event_index::index_journal(inner.store.conn_mut(), event)
    }

    /// Reads the whole event from its document (not the index), with every
    /// scan answered here written into it first.
    pub fn read_event(&self, event: DocumentId) -> Result<event_model::EventData, ClientError> {
        self.flush_journal_of(event)?;
        Ok(self.read(event, |doc: &Automerge| document::read(doc))??)
    }
}
