//! The layout of an event document, shared by every client and the server:
//!
//! ```text
//! ROOT
//!   kind: "event", schema: 2
//!   event:       { id, name, starts_at, location, annul_window_ms, time_zone }
//!   lists:       { <list id>: { name, allow_multiple_entries, allow_entry_after_exit,
//!                               valid_from_ms?, valid_until_ms?, weekdays?,
//!                               max_entries_per_day?, exit_all_at? } }
//!   attendees:   { "00".."ff": { <attendee id>: "<JSON of Attendee>" } }
//!   scans:       { "00".."ff": { <scan id>: "<JSON of Scan>" } }
//!   annulments:  { "00".."ff": { <annulment id>: "<JSON of Annulment>" } }
//!   revoked_tickets: { <attendee id>: <revoked at, Unix ms> }
//!   ticket_types: { <ticket type>: "<JSON of TicketType>" }
//! ```
//!
//! A list's time and count rules are fields of its own (absent: no such
//! rule), so two administrators changing different rules both win;
//! `weekdays` is text (`sat,sun`), `exit_all_at` a local time (`04:00`),
//! both read in the event's `time_zone` (an IANA name; empty is UTC).
//! `ticket_types` is made and read like `revoked_tickets` (below).
//!
//! The event map may also hold `ticket_key`, the public key that signs the
//! event's ticket codes (`tickets`), and `revoked_tickets` refuses, offline,
//! the signed codes of attendees a tablet may not hold (a code issued at or
//! before its attendee's revocation). Events made before it have no
//! `revoked_tickets` map until an administrator revokes a ticket; two who
//! do so at once make two maps under one key, so it is read as the union
//! of every conflicting map (`get_all`), and nothing written into the
//! losing one is lost.
//!
//! Attendees, scans and annulments are one JSON string each rather than a
//! map of fields: an event holds up to 100,000 of them, and one operation
//! per record (instead of seven) is what keeps loading and syncing such a
//! document fast. They are written whole (attendees by administrators,
//! last writer wins; scans and annulments once, never edited). Lists stay
//! maps, so two administrators toggling different rules both win.
//!
//! Each record lives in one of 256 buckets, by the first byte of its id's
//! SHA-256 ([`bucket_of`]). Automerge 0.12 applies a change to a map by
//! walking that map's operations up to the new key, so adding one scan to
//! a map of 30,000 costs every replica ~5.8 ms and 100,000 ~20 ms (measured,
//! a release build here); in a bucket of a 256th of that it is ~0.1 ms.
//! The buckets are made by the event's creator in the first change: a map
//! two replicas created concurrently under one key would be two objects,
//! and the records written into the losing one would vanish.
//! Schema 1 documents (one flat map per kind) are still read and written
//! in their own layout; a document's layout never changes.

use automerge::transaction::Transactable;
use automerge::{Automerge, ChangeHash, ObjId, ObjType, ROOT, ReadDoc, Value};
use serde::{Deserialize, Serialize};

use crate::calendar::{Calendar, TimeOfDay, Weekdays};
use crate::rules::{Annulment, EntryWindow, ListRules, Scan, Ticket, TicketType};

pub const KIND: &str = "event";
pub const SCHEMA_VERSION: i64 = 2;
/// The first schema with record buckets.
const BUCKETED_SCHEMA: i64 = 2;
/// How many buckets each kind of record is spread over (schema 2).
pub const RECORD_BUCKETS: usize = 256;

const EVENT: &str = "event";
const LISTS: &str = "lists";
const ATTENDEES: &str = "attendees";
const SCANS: &str = "scans";
const ANNULMENTS: &str = "annulments";
const REVOKED_TICKETS: &str = "revoked_tickets";
const TICKET_KEY: &str = "ticket_key";
const TICKET_TYPES: &str = "ticket_types";
const TIME_ZONE: &str = "time_zone";

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("not an event document: {0}")]
    NotAnEvent(String),
    #[error("event document schema {found} is newer than this app understands ({SCHEMA_VERSION})")]
    NewerSchema { found: i64 },
    #[error("malformed {what} `{id}`: {reason}")]
    Malformed {
        what: &'static str,
        id: String,
        reason: String,
    },
    #[error("event document has no bucket `{bucket}` in `{map}`")]
    NoBucket { map: &'static str, bucket: String },
    #[error("document error: {0}")]
    Automerge(#[from] automerge::AutomergeError),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventInfo {
    pub id: String,
    pub name: String,
    /// RFC 3339, or empty.
    pub starts_at: String,
    pub location: String,
    /// How long after a scan it may be annulled (the same on every replica,
    /// so it lives in the document).
    pub annul_window_ms: i64,
    /// The IANA name of the event's time zone, in which the door rules
    /// read days and times of day; empty is UTC.
    #[serde(default)]
    pub time_zone: String,
}

impl EventInfo {
    pub fn new(id: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            starts_at: String::new(),
            location: String::new(),
            annul_window_ms: crate::rules::DEFAULT_ANNUL_WINDOW_MS,
            time_zone: String::new(),
        }
    }

    /// The event's calendar; UTC where the zone is unknown to this app (a
    /// newer app's zone: the server refuses names it does not know).
    pub fn calendar(&self) -> Calendar {
        Calendar::named(&self.time_zone).unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckinList {
    pub id: String,
    pub name: String,
    pub rules: ListRules,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Attendee {
    pub id: String,
    pub ticket_code: String,
    pub name: String,
    pub email: String,
    pub ticket_type: String,
    #[serde(default)]
    pub revoked: bool,
    /// Lists the ticket is valid on; empty means every list.
    #[serde(default)]
    pub lists: Vec<String>,
    /// What staff must see when they come in ("ID check", "VIP").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention: Option<String>,
    /// Not paid yet: their first entry waits for staff to confirm payment.
    #[serde(default, skip_serializing_if = "is_false")]
    pub unpaid: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

impl Attendee {
    /// As the rules need them, with their ticket type's rules where it has
    /// some (its note joins theirs).
    pub fn ticket(&self, ticket_type: Option<&TicketType>) -> Ticket {
        Ticket {
            attendee_id: self.id.clone(),
            revoked: self.revoked,
            lists: self.lists.clone(),
            attention: crate::rules::joined_notes(
                self.attention.as_deref(),
                ticket_type.and_then(|t| t.attention.as_deref()),
            ),
            unpaid: self.unpaid,
        }
    }
}

/// Everything an event document holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventData {
    pub info: EventInfo,
    pub lists: Vec<CheckinList>,
    pub attendees: Vec<Attendee>,
    pub scans: Vec<Scan>,
    pub annulments: Vec<Annulment>,
    pub ticket_types: Vec<TicketType>,
}

/// Makes an empty document an event document. Call once, by the creator.
pub fn init<T: Transactable>(tx: &mut T, info: &EventInfo) -> Result<(), ModelError> {
    tx.put(ROOT, "kind", KIND)?;
    tx.put(ROOT, "schema", SCHEMA_VERSION)?;
    tx.put_object(ROOT, EVENT, ObjType::Map)?;
    tx.put_object(ROOT, LISTS, ObjType::Map)?;
    for map in RECORD_MAPS {
        let records = tx.put_object(ROOT, map, ObjType::Map)?;
        for bucket in 0..RECORD_BUCKETS {
            tx.put_object(&records, bucket_name(bucket), ObjType::Map)?;
        }
    }
    tx.put_object(ROOT, REVOKED_TICKETS, ObjType::Map)?;
    tx.put_object(ROOT, TICKET_TYPES, ObjType::Map)?;
    set_info(tx, info)
}

/// Makes an empty document an event document in the layout of schema 1
/// (one flat map per kind of record), as documents made before schema 2
/// are: for tests that such documents still work.
#[doc(hidden)]
pub fn init_schema_1<T: Transactable>(tx: &mut T, info: &EventInfo) -> Result<(), ModelError> {
    tx.put(ROOT, "kind", KIND)?;
    tx.put(ROOT, "schema", 1)?;
    for map in [EVENT, LISTS, ATTENDEES, SCANS, ANNULMENTS] {
        tx.put_object(ROOT, map, ObjType::Map)?;
    }
    set_info(tx, info)
}

/// The maps that hold records (one JSON string per record), bucketed.
const RECORD_MAPS: [&str; 3] = [ATTENDEES, SCANS, ANNULMENTS];

/// How a document keeps its records, by its schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Schema 1: one map of records per kind.
    Flat,
    /// Schema 2: each kind's map holds [`RECORD_BUCKETS`] maps of records.
    Bucketed,
}

/// The layout of an event document (see [`check`] for whether it is one).
pub fn layout<R: ReadDoc>(doc: &R) -> Result<Layout, ModelError> {
    match doc.get(ROOT, "schema")? {
        Some((Value::Scalar(s), _)) => match s.as_i64() {
            Some(v) if v >= BUCKETED_SCHEMA => Ok(Layout::Bucketed),
            Some(_) => Ok(Layout::Flat),
            None => Err(ModelError::NotAnEvent("schema is not a number".into())),
        },
        _ => Err(ModelError::NotAnEvent("no schema version".into())),
    }
}

fn bucket_name(bucket: usize) -> String {
    format!("{bucket:02x}")
}

/// The bucket a record id belongs in: the first byte of the id's SHA-256
/// as two hex digits (the same on every platform and in every version).
pub fn bucket_of(id: &str) -> String {
    use sha2::Digest;
    bucket_name(usize::from(sha2::Sha256::digest(id.as_bytes())[0]))
}

/// The map that holds (or will hold) the record `id` of `map`.
pub(crate) fn record_map_for<R: ReadDoc>(
    doc: &R,
    map: &'static str,
    id: &str,
) -> Result<ObjId, ModelError> {
    let records = map_id(doc, map)?;
    match layout(doc)? {
        Layout::Flat => Ok(records),
        Layout::Bucketed => bucket_map(doc, &records, map, bucket_of(id)),
    }
}

/// The bucket map `bucket` in `records`, the map of `map`'s records.
fn bucket_map<R: ReadDoc>(
    doc: &R,
    records: &ObjId,
    map: &'static str,
    bucket: String,
) -> Result<ObjId, ModelError> {
    match doc.get(records, &bucket)? {
        Some((Value::Object(ObjType::Map), obj)) => Ok(obj),
        _ => Err(ModelError::NoBucket { map, bucket }),
    }
}

/// Every map that holds records of `map`, in key order.
fn record_maps<R: ReadDoc>(doc: &R, map: &str) -> Result<Vec<ObjId>, ModelError> {
    let records = map_id(doc, map)?;
    Ok(match layout(doc)? {
        Layout::Flat => vec![records],
        Layout::Bucketed => doc
            .map_range(&records, ..)
            .filter_map(|item| match item.value {
                automerge::ValueRef::Object(ObjType::Map) => Some(item.id()),
                _ => None,
            })
            .collect(),
    })
}

/// What kind of record an event document holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum RecordKind {
    Attendee,
    Scan,
    Annulment,
}

impl RecordKind {
    const ALL: [RecordKind; 3] = [
        RecordKind::Attendee,
        RecordKind::Scan,
        RecordKind::Annulment,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            RecordKind::Attendee => "attendee",
            RecordKind::Scan => "scan",
            RecordKind::Annulment => "annulment",
        }
    }

    fn map(self) -> &'static str {
        match self {
            RecordKind::Attendee => ATTENDEES,
            RecordKind::Scan => SCANS,
            RecordKind::Annulment => ANNULMENTS,
        }
    }
}

/// Tells which record an operation writes, from the text form of its
/// object id and its key: the maps are looked up once, the buckets as
/// operations name them.
pub(crate) struct RecordObjects<'a> {
    doc: &'a Automerge,
    layout: Layout,
    /// Each kind's map: its id and that id's text form.
    maps: Vec<(RecordKind, ObjId, String)>,
    /// Buckets looked up so far, by kind and bucket name.
    buckets: std::collections::HashMap<(RecordKind, String), Option<(ObjId, String)>>,
}

impl<'a> RecordObjects<'a> {
    pub(crate) fn new(doc: &'a Automerge) -> Result<Self, ModelError> {
        let maps = RecordKind::ALL
            .into_iter()
            .map(|kind| map_id(doc, kind.map()).map(|id| (kind, id.clone(), id.to_string())))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            doc,
            layout: layout(doc)?,
            maps,
            buckets: Default::default(),
        })
    }

    /// The kind of record and the map it lives in, when an operation on
    /// `obj` at `key` writes record `key` where that record belongs.
    pub(crate) fn record_at(&mut self, obj: &str, key: &str) -> Option<(RecordKind, ObjId)> {
        match self.layout {
            Layout::Flat => self
                .maps
                .iter()
                .find(|(_, _, text)| text == obj)
                .map(|(kind, id, _)| (*kind, id.clone())),
            Layout::Bucketed => {
                let bucket = bucket_of(key);
                for (kind, records, _) in &self.maps {
                    let found = self
                        .buckets
                        .entry((*kind, bucket.clone()))
                        .or_insert_with(|| match self.doc.get(records, &bucket) {
                            Ok(Some((Value::Object(ObjType::Map), id))) => {
                                let text = id.to_string();
                                Some((id, text))
                            }
                            _ => None,
                        });
                    if let Some((id, text)) = found
                        && text == obj
                    {
                        return Some((*kind, id.clone()));
                    }
                }
                None
            }
        }
    }

    /// The kind whose map of buckets `obj` is (schema 2; never in schema
    /// 1, where that map holds the records themselves).
    pub(crate) fn bucket_map(&self, obj: &str) -> Option<RecordKind> {
        (self.layout == Layout::Bucketed)
            .then(|| self.maps.iter().find(|(_, _, text)| text == obj))
            .flatten()
            .map(|(kind, _, _)| *kind)
    }

    /// Whether `obj` is a bucket of records (of any kind, for any key).
    pub(crate) fn is_bucket(&self, obj: &str) -> bool {
        if self.layout != Layout::Bucketed {
            return false;
        }
        let Ok(id) = self.doc.import_obj(obj) else {
            return false;
        };
        let Ok(mut parents) = self.doc.parents(&id) else {
            return false;
        };
        parents
            .next()
            .is_some_and(|parent| self.maps.iter().any(|(_, map, _)| *map == parent.obj))
    }
}

/// Checks that `doc` is an event document this code can read.
pub fn check<R: ReadDoc>(doc: &R) -> Result<(), ModelError> {
    match doc.get(ROOT, "kind")? {
        Some((Value::Scalar(s), _)) if s.as_str() == Some(KIND) => {}
        other => {
            return Err(ModelError::NotAnEvent(format!(
                "kind is {:?}",
                other.map(|(v, _)| v.to_string())
            )));
        }
    }
    match doc.get(ROOT, "schema")? {
        Some((Value::Scalar(s), _)) => match s.as_i64() {
            Some(found) if found > SCHEMA_VERSION => Err(ModelError::NewerSchema { found }),
            Some(_) => Ok(()),
            None => Err(ModelError::NotAnEvent("schema is not a number".into())),
        },
        _ => Err(ModelError::NotAnEvent("no schema version".into())),
    }
}

fn map_id<R: ReadDoc>(doc: &R, key: &str) -> Result<ObjId, ModelError> {
    match doc.get(ROOT, key)? {
        Some((Value::Object(ObjType::Map), id)) => Ok(id),
        _ => Err(ModelError::NotAnEvent(format!("no `{key}` map"))),
    }
}

fn text<R: ReadDoc>(doc: &R, obj: &ObjId, key: &str) -> Result<Option<String>, ModelError> {
    Ok(match doc.get(obj, key)? {
        Some((Value::Scalar(s), _)) => s.as_str().map(str::to_owned),
        _ => None,
    })
}

fn flag<R: ReadDoc>(doc: &R, obj: &ObjId, key: &str) -> Result<bool, ModelError> {
    Ok(match doc.get(obj, key)? {
        Some((Value::Scalar(s), _)) => matches!(s.as_ref(), automerge::ScalarValue::Boolean(true)),
        _ => false,
    })
}

pub fn set_info<T: Transactable>(tx: &mut T, info: &EventInfo) -> Result<(), ModelError> {
    let event = map_id(tx, EVENT)?;
    tx.put(&event, "id", info.id.as_str())?;
    tx.put(&event, "name", info.name.as_str())?;
    tx.put(&event, "starts_at", info.starts_at.as_str())?;
    tx.put(&event, "location", info.location.as_str())?;
    tx.put(&event, "annul_window_ms", info.annul_window_ms)?;
    if !info.time_zone.is_empty() || text(tx, &event, TIME_ZONE)?.is_some() {
        tx.put(&event, TIME_ZONE, info.time_zone.as_str())?;
    }
    Ok(())
}

/// Sets the public key the event's ticket codes are signed with (its text
/// form, `tickets::key_text`); an empty text removes it.
pub fn set_ticket_key<T: Transactable>(tx: &mut T, key: &str) -> Result<(), ModelError> {
    let event = map_id(tx, EVENT)?;
    tx.put(&event, TICKET_KEY, key)?;
    Ok(())
}

/// The public key of the event's ticket codes, if it has one.
pub fn read_ticket_key<R: ReadDoc>(doc: &R) -> Result<Option<String>, ModelError> {
    Ok(text(doc, &map_id(doc, EVENT)?, TICKET_KEY)?.filter(|key| !key.is_empty()))
}

/// Every map under `revoked_tickets` (more than one where two
/// administrators made it at once; see the module's comment).
fn revocation_maps<R: ReadDoc>(doc: &R) -> Result<Vec<ObjId>, ModelError> {
    root_maps(doc, REVOKED_TICKETS)
}

/// Every map under the root's `key`, the winner first.
fn root_maps<R: ReadDoc>(doc: &R, key: &str) -> Result<Vec<ObjId>, ModelError> {
    Ok(doc
        .get_all(ROOT, key)?
        .into_iter()
        .filter_map(|(value, id)| matches!(value, Value::Object(ObjType::Map)).then_some(id))
        .collect())
}

/// The root map `key`, made if the event (older than it) has none yet.
fn root_map_made<T: Transactable>(tx: &mut T, key: &str) -> Result<ObjId, ModelError> {
    Ok(match tx.get(ROOT, key)? {
        Some((Value::Object(ObjType::Map), id)) => id,
        _ => tx.put_object(ROOT, key, ObjType::Map)?,
    })
}

/// Adds or replaces a ticket type's rules (written whole).
pub fn put_ticket_type<T: Transactable>(
    tx: &mut T,
    ticket_type: &TicketType,
) -> Result<(), ModelError> {
    let map = root_map_made(tx, TICKET_TYPES)?;
    put_json_in(tx, &map, &ticket_type.name, ticket_type)
}

/// Every ticket type with rules, by name. Where two administrators made
/// the map at once, a type in both is read from the winning map.
pub fn ticket_types<R: ReadDoc>(doc: &R) -> Result<Vec<TicketType>, ModelError> {
    let mut out = std::collections::BTreeMap::new();
    for map in root_maps(doc, TICKET_TYPES)? {
        for name in doc.keys(&map) {
            if out.contains_key(&name) {
                continue;
            }
            if let Some(ticket_type) = read_json::<_, TicketType>(doc, &map, "ticket type", &name)?
            {
                out.insert(name, ticket_type);
            }
        }
    }
    Ok(out.into_values().collect())
}

/// Revokes the signed codes of `attendee_id` issued at or before
/// `revoked_at_ms` (a later revocation of the same attendee keeps the later
/// time). Codes issued afterwards stay good: that is how a lost ticket is
/// replaced.
pub fn revoke_ticket<T: Transactable>(
    tx: &mut T,
    attendee_id: &str,
    revoked_at_ms: i64,
) -> Result<(), ModelError> {
    let map = root_map_made(tx, REVOKED_TICKETS)?;
    let earlier = revoked_tickets(tx)?.get(attendee_id).copied();
    tx.put(
        &map,
        attendee_id,
        revoked_at_ms.max(earlier.unwrap_or(i64::MIN)),
    )?;
    Ok(())
}

/// Each revoked attendee with the time of their latest revocation.
pub fn revoked_tickets<R: ReadDoc>(
    doc: &R,
) -> Result<std::collections::BTreeMap<String, i64>, ModelError> {
    let mut out = std::collections::BTreeMap::new();
    for map in revocation_maps(doc)? {
        for key in doc.keys(&map) {
            // Concurrent revocations of one attendee: the latest counts.
            for (value, _) in doc.get_all(&map, &key)? {
                if let Value::Scalar(s) = value
                    && let Some(at) = s.as_i64()
                {
                    let latest = out.entry(key.clone()).or_insert(at);
                    *latest = (*latest).max(at);
                }
            }
        }
    }
    Ok(out)
}

pub fn put_list<T: Transactable>(tx: &mut T, list: &CheckinList) -> Result<(), ModelError> {
    let lists = map_id(tx, LISTS)?;
    let obj = match tx.get(&lists, &list.id)? {
        Some((Value::Object(ObjType::Map), id)) => id,
        _ => tx.put_object(&lists, &list.id, ObjType::Map)?,
    };
    tx.put(&obj, "name", list.name.as_str())?;
    tx.put(
        &obj,
        "allow_multiple_entries",
        list.rules.allow_multiple_entries,
    )?;
    tx.put(
        &obj,
        "allow_entry_after_exit",
        list.rules.allow_entry_after_exit,
    )?;
    let rules = &list.rules;
    put_or_remove(tx, &obj, "valid_from_ms", rules.window.valid_from_ms)?;
    put_or_remove(tx, &obj, "valid_until_ms", rules.window.valid_until_ms)?;
    put_or_remove(
        tx,
        &obj,
        "weekdays",
        (!rules.window.weekdays.is_every_day()).then(|| rules.window.weekdays.to_string()),
    )?;
    put_or_remove(
        tx,
        &obj,
        "max_entries_per_day",
        rules.max_entries_per_day.map(|n| i64::from(n.get())),
    )?;
    put_or_remove(
        tx,
        &obj,
        "exit_all_at",
        rules.exit_all_at.map(|t| t.to_string()),
    )?;
    Ok(())
}

/// Puts `value` under `key`, or removes the key for `None` (where it is
/// there: a rule not set is a key absent).
fn put_or_remove<T: Transactable, V: Into<automerge::ScalarValue>>(
    tx: &mut T,
    obj: &ObjId,
    key: &str,
    value: Option<V>,
) -> Result<(), ModelError> {
    match value {
        Some(value) => tx.put(obj, key, value)?,
        None if tx.get(obj, key)?.is_some() => tx.delete(obj, key)?,
        None => {}
    }
    Ok(())
}

fn put_json<T: Transactable, V: Serialize>(
    tx: &mut T,
    map: &'static str,
    id: &str,
    value: &V,
) -> Result<(), ModelError> {
    let obj = record_map_for(tx, map, id)?;
    put_json_in(tx, &obj, id, value)
}

/// Puts the record `id` as JSON into `obj`, the map that holds it.
fn put_json_in<T: Transactable, V: Serialize>(
    tx: &mut T,
    obj: &ObjId,
    id: &str,
    value: &V,
) -> Result<(), ModelError> {
    let json = serde_json::to_string(value).map_err(|e| ModelError::Malformed {
        what: "record",
        id: id.to_owned(),
        reason: e.to_string(),
    })?;
    tx.put(obj, id, json)?;
    Ok(())
}

/// Adds or replaces an attendee.
pub fn put_attendee<T: Transactable>(tx: &mut T, attendee: &Attendee) -> Result<(), ModelError> {
    put_json(tx, ATTENDEES, &attendee.id, attendee)
}

/// Adds or replaces many attendees in one transaction (an import), with
/// each bucket map looked up once for all its attendees instead of once per
/// attendee. For an id given twice, the later one wins, as with
/// [`put_attendee`].
pub fn put_attendees<T: Transactable>(
    tx: &mut T,
    attendees: &[Attendee],
) -> Result<(), ModelError> {
    let records = map_id(tx, ATTENDEES)?;
    let mut keyed: Vec<(Option<String>, &Attendee)> = match layout(tx)? {
        Layout::Flat => attendees.iter().map(|a| (None, a)).collect(),
        Layout::Bucketed => attendees
            .iter()
            .map(|a| (Some(bucket_of(&a.id)), a))
            .collect(),
    };
    // Stable: an id given twice keeps its order, so the later one wins.
    keyed.sort_by(|(a, _), (b, _)| a.cmp(b));
    for group in keyed.chunk_by(|(a, _), (b, _)| a == b) {
        let obj = match &group[0].0 {
            None => records.clone(),
            Some(bucket) => bucket_map(tx, &records, ATTENDEES, bucket.clone())?,
        };
        for (_, attendee) in group {
            put_json_in(tx, &obj, &attendee.id, *attendee)?;
        }
    }
    Ok(())
}

/// Records a scan (once: a scan id already present is left as it is).
pub fn put_scan<T: Transactable>(tx: &mut T, scan: &Scan) -> Result<bool, ModelError> {
    let scans = record_map_for(tx, SCANS, &scan.id)?;
    if tx.get(&scans, &scan.id)?.is_some() {
        return Ok(false);
    }
    put_json(tx, SCANS, &scan.id, scan)?;
    Ok(true)
}

/// Records an annulment (once).
pub fn put_annulment<T: Transactable>(
    tx: &mut T,
    annulment: &Annulment,
) -> Result<bool, ModelError> {
    let annulments = record_map_for(tx, ANNULMENTS, &annulment.id)?;
    if tx.get(&annulments, &annulment.id)?.is_some() {
        return Ok(false);
    }
    put_json(tx, ANNULMENTS, &annulment.id, annulment)?;
    Ok(true)
}

fn read_json<R: ReadDoc, V: for<'de> Deserialize<'de>>(
    doc: &R,
    obj: &ObjId,
    what: &'static str,
    id: &str,
) -> Result<Option<V>, ModelError> {
    let Some(json) = text(doc, obj, id)? else {
        return Ok(None);
    };
    serde_json::from_str(&json)
        .map(Some)
        .map_err(|e| ModelError::Malformed {
            what,
            id: id.to_owned(),
            reason: e.to_string(),
        })
}

pub fn read_info<R: ReadDoc>(doc: &R) -> Result<EventInfo, ModelError> {
    let event = map_id(doc, EVENT)?;
    Ok(EventInfo {
        id: text(doc, &event, "id")?.unwrap_or_default(),
        name: text(doc, &event, "name")?.unwrap_or_default(),
        starts_at: text(doc, &event, "starts_at")?.unwrap_or_default(),
        location: text(doc, &event, "location")?.unwrap_or_default(),
        annul_window_ms: match doc.get(&event, "annul_window_ms")? {
            Some((Value::Scalar(s), _)) => s.as_i64(),
            _ => None,
        }
        .unwrap_or(crate::rules::DEFAULT_ANNUL_WINDOW_MS),
        time_zone: text(doc, &event, TIME_ZONE)?.unwrap_or_default(),
    })
}

pub fn read_list<R: ReadDoc>(doc: &R, id: &str) -> Result<Option<CheckinList>, ModelError> {
    let lists = map_id(doc, LISTS)?;
    let Some((Value::Object(ObjType::Map), obj)) = doc.get(&lists, id)? else {
        return Ok(None);
    };
    let malformed = |reason: String| ModelError::Malformed {
        what: "list",
        id: id.to_owned(),
        reason,
    };
    let integer = |key: &str| -> Result<Option<i64>, ModelError> {
        Ok(match doc.get(&obj, key)? {
            Some((Value::Scalar(s), _)) => Some(
                s.as_i64()
                    .ok_or_else(|| malformed(format!("`{key}` is not a number")))?,
            ),
            _ => None,
        })
    };
    let max_entries_per_day = integer("max_entries_per_day")?
        .map(|n| {
            u32::try_from(n)
                .ok()
                .and_then(std::num::NonZeroU32::new)
                .ok_or_else(|| malformed(format!("{n} entries per day")))
        })
        .transpose()?;
    Ok(Some(CheckinList {
        id: id.to_owned(),
        name: text(doc, &obj, "name")?.unwrap_or_default(),
        rules: ListRules {
            allow_multiple_entries: flag(doc, &obj, "allow_multiple_entries")?,
            allow_entry_after_exit: flag(doc, &obj, "allow_entry_after_exit")?,
            window: EntryWindow {
                valid_from_ms: integer("valid_from_ms")?,
                valid_until_ms: integer("valid_until_ms")?,
                weekdays: text(doc, &obj, "weekdays")?
                    .map(|days| days.parse::<Weekdays>())
                    .transpose()
                    .map_err(|e| malformed(e.to_string()))?
                    .unwrap_or_default(),
            },
            max_entries_per_day,
            exit_all_at: text(doc, &obj, "exit_all_at")?
                .map(|time| time.parse::<TimeOfDay>())
                .transpose()
                .map_err(|e| malformed(e.to_string()))?,
        },
    }))
}

pub fn read_attendee<R: ReadDoc>(doc: &R, id: &str) -> Result<Option<Attendee>, ModelError> {
    read_json(doc, &record_map_for(doc, ATTENDEES, id)?, "attendee", id)
}

pub fn read_scan<R: ReadDoc>(doc: &R, id: &str) -> Result<Option<Scan>, ModelError> {
    read_json(doc, &record_map_for(doc, SCANS, id)?, "scan", id)
}

pub fn read_annulment<R: ReadDoc>(doc: &R, id: &str) -> Result<Option<Annulment>, ModelError> {
    read_json(doc, &record_map_for(doc, ANNULMENTS, id)?, "annulment", id)
}

/// Every record of a map in one pass (much faster than a lookup per key
/// on large maps: 15 ms against a second for 100,000 attendees), in id
/// order whatever the layout.
fn all_records<R: ReadDoc, V: for<'de> Deserialize<'de>>(
    doc: &R,
    map: &str,
    what: &'static str,
) -> Result<Vec<V>, ModelError> {
    records_where(doc, map, what, |_| true)
}

/// The records of a map whose ids `keep` accepts, in one pass like
/// [`all_records`]; only those are parsed.
fn records_where<R: ReadDoc, V: for<'de> Deserialize<'de>>(
    doc: &R,
    map: &str,
    what: &'static str,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<V>, ModelError> {
    let mut out = Vec::new();
    for obj in record_maps(doc, map)? {
        for item in doc.map_range(&obj, ..) {
            if !keep(&item.key) {
                continue;
            }
            if let automerge::ValueRef::Scalar(automerge::ScalarValueRef::Str(json)) = &item.value {
                let record = serde_json::from_str(json).map_err(|e| ModelError::Malformed {
                    what,
                    id: item.key.to_string(),
                    reason: e.to_string(),
                })?;
                out.push((item.key.to_string(), record));
            }
        }
    }
    // Buckets are in bucket order; the records come out as one sorted map
    // gave them, so every caller sees the same order in both layouts.
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out.into_iter().map(|(_, record)| record).collect())
}

pub fn attendees<R: ReadDoc>(doc: &R) -> Result<Vec<Attendee>, ModelError> {
    all_records(doc, ATTENDEES, "attendee")
}

pub fn scans<R: ReadDoc>(doc: &R) -> Result<Vec<Scan>, ModelError> {
    all_records(doc, SCANS, "scan")
}

/// The attendees whose ids `keep` accepts, in id order: for many ids at
/// once, faster than [`read_attendee`] for each.
pub fn attendees_where<R: ReadDoc>(
    doc: &R,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<Attendee>, ModelError> {
    records_where(doc, ATTENDEES, "attendee", keep)
}

/// The scans whose ids `keep` accepts, in id order (see [`attendees_where`]).
pub fn scans_where<R: ReadDoc>(
    doc: &R,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<Scan>, ModelError> {
    records_where(doc, SCANS, "scan", keep)
}

pub fn annulments<R: ReadDoc>(doc: &R) -> Result<Vec<Annulment>, ModelError> {
    all_records(doc, ANNULMENTS, "annulment")
}

/// The objects whose fields `validate` checks beyond who writes them,
/// as `counter@actor` text (the form a change's operations name them by).
pub(crate) struct RuleObjects {
    pub event: String,
    pub lists: String,
    /// Each list's map.
    pub list_maps: std::collections::HashSet<String>,
    /// Every `ticket_types` map.
    pub ticket_type_maps: std::collections::HashSet<String>,
}

impl RuleObjects {
    pub(crate) fn new(doc: &Automerge) -> Result<Self, ModelError> {
        let lists = map_id(doc, LISTS)?;
        let mut list_maps = std::collections::HashSet::new();
        for key in doc.keys(&lists) {
            if let Some((Value::Object(ObjType::Map), obj)) = doc.get(&lists, &key)? {
                list_maps.insert(obj.to_string());
            }
        }
        Ok(Self {
            event: map_id(doc, EVENT)?.to_string(),
            lists: lists.to_string(),
            list_maps,
            ticket_type_maps: root_maps(doc, TICKET_TYPES)?
                .iter()
                .map(ToString::to_string)
                .collect(),
        })
    }
}

/// Checks a value put into a field of a list as `put_list` writes it;
/// fields this app does not know (a newer app's) pass.
pub(crate) fn check_list_field(key: &str, value: &automerge::ScalarValue) -> Result<(), String> {
    use automerge::ScalarValue as S;
    let ok = match (key, value) {
        ("valid_from_ms" | "valid_until_ms", S::Int(_)) => true,
        ("max_entries_per_day", S::Int(n)) => (1..=i64::from(u32::MAX)).contains(n),
        ("max_entries_per_day", S::Uint(n)) => (1..=u64::from(u32::MAX)).contains(n),
        ("weekdays", S::Str(text)) => {
            return text
                .parse::<Weekdays>()
                .map(drop)
                .map_err(|e| e.to_string());
        }
        ("exit_all_at", S::Str(text)) => {
            return text
                .parse::<TimeOfDay>()
                .map(drop)
                .map_err(|e| e.to_string());
        }
        ("allow_multiple_entries" | "allow_entry_after_exit", S::Boolean(_)) => true,
        ("name", S::Str(_)) => true,
        (
            "valid_from_ms"
            | "valid_until_ms"
            | "max_entries_per_day"
            | "weekdays"
            | "exit_all_at"
            | "allow_multiple_entries"
            | "allow_entry_after_exit"
            | "name",
            _,
        ) => false,
        // Fields of newer apps.
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("the list rule `{key}` cannot be {value}"))
    }
}

fn keys<R: ReadDoc>(doc: &R, map: &str) -> Result<Vec<String>, ModelError> {
    Ok(doc.keys(map_id(doc, map)?).collect())
}

/// The ids of every record of `map`, sorted.
fn record_keys<R: ReadDoc>(doc: &R, map: &str) -> Result<Vec<String>, ModelError> {
    let mut out = Vec::new();
    for obj in record_maps(doc, map)? {
        out.extend(doc.keys(obj));
    }
    out.sort();
    Ok(out)
}

/// The whole event.
pub fn read<R: ReadDoc>(doc: &R) -> Result<EventData, ModelError> {
    check(doc)?;
    let mut data = EventData {
        info: read_info(doc)?,
        lists: Vec::new(),
        attendees: Vec::new(),
        scans: Vec::new(),
        annulments: Vec::new(),
        ticket_types: ticket_types(doc)?,
    };
    for id in keys(doc, LISTS)? {
        data.lists.extend(read_list(doc, &id)?);
    }
    data.attendees = attendees(doc)?;
    data.scans = scans(doc)?;
    data.annulments = annulments(doc)?;
    Ok(data)
}

/// Which records changed between two versions of an event document.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Touched {
    pub info: bool,
    pub lists: Vec<String>,
    pub attendees: Vec<String>,
    pub scans: Vec<String>,
    pub annulments: Vec<String>,
}

/// The records that changed since `before` (the document's current state
/// against an older version), for keeping indexes in step without reading
/// the whole document. Everything, from empty heads.
///
/// Works from the new changes' operations rather than `Automerge::diff`,
/// which walks every operation in the document (about 1 ms per call at
/// 2,000 scans, growing with the event), while the new changes of one scan
/// are a handful of operations.
pub fn touched(doc: &Automerge, before: &[ChangeHash]) -> Result<Touched, ModelError> {
    let mut out = Touched::default();
    if check(doc).is_err() {
        return Ok(out);
    }
    if before.is_empty() {
        out.info = true;
        out.lists = keys(doc, LISTS)?;
        out.attendees = record_keys(doc, ATTENDEES)?;
        out.scans = record_keys(doc, SCANS)?;
        out.annulments = record_keys(doc, ANNULMENTS)?;
        return Ok(out);
    }
    touched_by(doc, &doc.get_changes(before))
}

/// The records that `changes` (changes of `doc`) write: the scans of
/// changes set aside by a refusal, say.
pub fn touched_by(doc: &Automerge, changes: &[automerge::Change]) -> Result<Touched, ModelError> {
    let mut out = Touched::default();
    if check(doc).is_err() {
        return Ok(out);
    }
    let [event, lists_text] = [EVENT, LISTS].map(|key| map_id(doc, key).map(|id| id.to_string()));
    let (event, lists_text) = (event?, lists_text?);
    let mut records = RecordObjects::new(doc)?;
    let lists = map_id(doc, LISTS)?;
    // Few, and read again whole with the event's details.
    let mut revocations_and_types: Vec<String> = revocation_maps(doc)?
        .iter()
        .chain(&root_maps(doc, TICKET_TYPES)?)
        .map(ToString::to_string)
        .collect();
    revocations_and_types.sort();
    // Each list is a map of its own: its fields' changes name the list by its object.
    let mut list_objects = std::collections::HashMap::new();
    for key in doc.keys(&lists) {
        if let Some((Value::Object(ObjType::Map), obj)) = doc.get(&lists, &key)? {
            list_objects.insert(obj.to_string(), key);
        }
    }
    for change in changes {
        for op in change.decode().operations {
            let automerge::legacy::Key::Map(key) = &op.key else {
                continue;
            };
            let obj = match &op.obj {
                automerge::legacy::ObjectId::Root => {
                    out.info = true;
                    continue;
                }
                automerge::legacy::ObjectId::Id(id) => format!("{}@{}", id.0, id.1),
            };
            let key = key.to_string();
            if obj == event || revocations_and_types.binary_search(&obj).is_ok() {
                // The event's details, its ticket key, its revocations or
                // ticket types: few, and read again whole.
                out.info = true;
            } else if obj == lists_text {
                out.lists.push(key);
            } else if let Some(list) = list_objects.get(&obj) {
                out.lists.push(list.clone());
            } else if let Some((kind, _)) = records.record_at(&obj, &key) {
                match kind {
                    RecordKind::Attendee => out.attendees.push(key),
                    RecordKind::Scan => out.scans.push(key),
                    RecordKind::Annulment => out.annulments.push(key),
                }
            }
        }
    }
    for list in [
        &mut out.lists,
        &mut out.attendees,
        &mut out.scans,
        &mut out.annulments,
    ] {
        list.sort();
        list.dedup();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::Hlc;
    use crate::rules::Direction;

    fn attendee(id: &str) -> Attendee {
        Attendee {
            id: id.into(),
            ticket_code: format!("CODE-{id}"),
            name: format!("Name {id}"),
            email: format!("{id}@example.org"),
            ticket_type: "day".into(),
            revoked: false,
            lists: vec![],
            ..Attendee::default()
        }
    }

    fn scan(id: &str, attendee: &str) -> Scan {
        Scan {
            id: id.into(),
            attendee_id: attendee.into(),
            list_id: "main".into(),
            direction: Direction::Entry,
            device_id: "t1".into(),
            staff_id: "s".into(),
            hlc: Hlc {
                wall_ms: 1,
                counter: 0,
                node: "t1".into(),
            },
            wall_ms: 1,
            by_signature: false,
            payment_taken: false,
        }
    }

    #[test]
    fn the_ticket_key_and_revocations_read_back_and_concurrent_revokers_both_count() {
        // An event made before revocations existed: no map until the first.
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        init_schema_1(&mut tx, &EventInfo::new("e1", "Conf")).unwrap();
        tx.commit();
        assert_eq!(read_ticket_key(&doc).unwrap(), None);
        assert!(revoked_tickets(&doc).unwrap().is_empty());
        let before = doc.get_heads();
        let mut tx = doc.transaction();
        set_ticket_key(&mut tx, "ed25519:KEY").unwrap();
        tx.commit();
        assert_eq!(
            read_ticket_key(&doc).unwrap().as_deref(),
            Some("ed25519:KEY")
        );
        assert!(touched(&doc, &before).unwrap().info);

        // Two administrators revoke at once, each making the map.
        let mut other = doc.fork();
        let before = doc.get_heads();
        let mut tx = doc.transaction();
        revoke_ticket(&mut tx, "ada", 1_000).unwrap();
        revoke_ticket(&mut tx, "bob", 2_000).unwrap();
        tx.commit();
        let mut tx = other.transaction();
        revoke_ticket(&mut tx, "ada", 3_000).unwrap();
        revoke_ticket(&mut tx, "cy", 4_000).unwrap();
        tx.commit();
        doc.merge(&mut other).unwrap();
        let revoked = revoked_tickets(&doc).unwrap();
        assert_eq!(
            revoked.into_iter().collect::<Vec<_>>(),
            vec![
                ("ada".into(), 3_000),
                ("bob".into(), 2_000),
                ("cy".into(), 4_000)
            ]
        );
        let changed = touched(&doc, &before).unwrap();
        assert!(changed.info, "a revocation is read again with the details");
        // A later revocation never moves the time back.
        let mut tx = doc.transaction();
        revoke_ticket(&mut tx, "ada", 500).unwrap();
        tx.commit();
        assert_eq!(revoked_tickets(&doc).unwrap()["ada"], 3_000);
        // New events have the map from the start.
        let mut fresh = Automerge::new();
        let mut tx = fresh.transaction();
        init(&mut tx, &EventInfo::new("e2", "Conf")).unwrap();
        tx.commit();
        assert_eq!(revocation_maps(&fresh).unwrap().len(), 1);
    }

    #[test]
    fn writes_read_back_and_changes_are_reported_by_record() {
        // Schema 2's buckets and schema 1's flat maps.
        for layout in [Layout::Bucketed, Layout::Flat] {
            writes_read_back_in(layout);
        }
    }

    fn writes_read_back_in(expected: Layout) {
        let init =
            |tx: &mut automerge::transaction::Transaction<'_>, info: &EventInfo| match expected {
                Layout::Bucketed => init(tx, info),
                Layout::Flat => init_schema_1(tx, info),
            };
        let mut doc = Automerge::new();
        let info = EventInfo {
            starts_at: "2026-12-01T09:00:00Z".into(),
            location: "Hall".into(),
            ..EventInfo::new("e1", "Conf")
        };
        let mut tx = doc.transaction();
        init(&mut tx, &info).unwrap();
        put_list(
            &mut tx,
            &CheckinList {
                id: "main".into(),
                name: "Main door".into(),
                rules: ListRules {
                    allow_multiple_entries: false,
                    allow_entry_after_exit: true,
                    ..ListRules::default()
                },
            },
        )
        .unwrap();
        put_attendee(&mut tx, &attendee("a1")).unwrap();
        tx.commit();
        assert_eq!(layout(&doc).unwrap(), expected);
        let first = doc.get_heads();

        let mut tx = doc.transaction();
        put_attendee(&mut tx, &attendee("a2")).unwrap();
        assert!(put_scan(&mut tx, &scan("s1", "a1")).unwrap());
        assert!(
            !put_scan(&mut tx, &scan("s1", "a2")).unwrap(),
            "a scan is written once"
        );
        tx.commit();

        let data = read(&doc).unwrap();
        assert_eq!(data.info, info);
        assert_eq!(data.lists.len(), 1);
        assert!(data.lists[0].rules.allow_entry_after_exit);
        assert_eq!(data.attendees.len(), 2);
        assert_eq!(data.scans, vec![scan("s1", "a1")]);

        let changed = touched(&doc, &first).unwrap();
        assert_eq!(changed.attendees, vec!["a2"]);
        assert_eq!(changed.scans, vec!["s1"]);
        assert!(!changed.info && changed.lists.is_empty());
        let everything = touched(&doc, &[]).unwrap();
        assert!(everything.info);
        assert_eq!(everything.lists, vec!["main"]);
        assert_eq!(everything.attendees, vec!["a1", "a2"]);

        let before_rules = doc.get_heads();
        let mut tx = doc.transaction();
        put_list(
            &mut tx,
            &CheckinList {
                id: "main".into(),
                name: "Main door".into(),
                rules: ListRules::default(),
            },
        )
        .unwrap();
        tx.commit();
        let changed = touched(&doc, &before_rules).unwrap();
        assert_eq!(changed.lists, vec!["main"]);
    }

    #[test]
    fn time_rules_ticket_types_and_the_time_zone_read_back_and_merge() {
        let mut admin_a = Automerge::new();
        let mut tx = admin_a.transaction();
        let info = EventInfo {
            time_zone: "Europe/Berlin".into(),
            ..EventInfo::new("e1", "Festival")
        };
        init(&mut tx, &info).unwrap();
        let mut list = CheckinList {
            id: "main".into(),
            name: "Main gate".into(),
            rules: ListRules {
                allow_entry_after_exit: true,
                ..ListRules::default()
            },
        };
        put_list(&mut tx, &list).unwrap();
        tx.commit();
        assert_eq!(read_info(&admin_a).unwrap().time_zone, "Europe/Berlin");
        assert_eq!(
            read_info(&admin_a).unwrap().calendar().weekday(0),
            jiff::civil::Weekday::Thursday
        );

        // Two administrators change different rules of the list at once:
        // both changes stay.
        let mut admin_b = admin_a.fork();
        let mut tx = admin_a.transaction();
        list.rules.window.weekdays = "fri,sat".parse().unwrap();
        list.rules.exit_all_at = "04:00".parse().ok();
        put_list(&mut tx, &list).unwrap();
        tx.commit();
        let mut tx = admin_b.transaction();
        let mut theirs = read_list(&tx, "main").unwrap().unwrap();
        theirs.rules.max_entries_per_day = std::num::NonZeroU32::new(3);
        theirs.rules.window.valid_until_ms = Some(2_000_000_000_000);
        put_list(&mut tx, &theirs).unwrap();
        put_ticket_type(
            &mut tx,
            &TicketType {
                name: "day pass".into(),
                window: EntryWindow {
                    valid_from_ms: Some(1_000),
                    ..EntryWindow::default()
                },
                ..TicketType::default()
            },
        )
        .unwrap();
        tx.commit();
        let before_merge = admin_a.get_heads();
        admin_a.merge(&mut admin_b).unwrap();
        let merged = read_list(&admin_a, "main").unwrap().unwrap().rules;
        assert_eq!(merged.window.weekdays.to_string(), "fri,sat");
        assert_eq!(merged.exit_all_at.unwrap().to_string(), "04:00");
        assert_eq!(merged.max_entries_per_day.unwrap().get(), 3);
        assert_eq!(merged.window.valid_until_ms, Some(2_000_000_000_000));
        let types = read(&admin_a).unwrap().ticket_types;
        assert_eq!(types.len(), 1);
        assert_eq!(types[0].window.valid_from_ms, Some(1_000));
        let changed = touched(&admin_a, &before_merge).unwrap();
        assert!(changed.info, "ticket types are read again with the details");
        assert_eq!(changed.lists, vec!["main"]);

        // A rule taken away is a field removed.
        let mut tx = admin_a.transaction();
        list.rules = ListRules::default();
        put_list(&mut tx, &list).unwrap();
        tx.commit();
        assert_eq!(
            read_list(&admin_a, "main").unwrap().unwrap().rules,
            ListRules::default()
        );
        let obj = match admin_a
            .get(map_id(&admin_a, LISTS).unwrap(), "main")
            .unwrap()
        {
            Some((_, obj)) => obj,
            None => unreachable!(),
        };
        assert!(admin_a.get(&obj, "weekdays").unwrap().is_none());

        // A malformed rule is an error that names the list, not a default.
        let mut tx = admin_a.transaction();
        tx.put(&obj, "exit_all_at", "25:00").unwrap();
        tx.commit();
        let err = read_list(&admin_a, "main").unwrap_err().to_string();
        assert!(
            err.contains("list `main`") && err.contains("25:00"),
            "{err}"
        );
    }

    #[test]
    fn many_attendees_put_at_once_read_back_like_one_at_a_time() {
        for schema_2 in [true, false] {
            let info = EventInfo::new("e1", "Conf");
            let mut one_by_one = Automerge::new();
            let mut tx = one_by_one.transaction();
            if schema_2 {
                init(&mut tx, &info).unwrap();
            } else {
                init_schema_1(&mut tx, &info).unwrap();
            }
            tx.commit();
            let mut at_once = one_by_one.fork();
            let mut renamed = attendee("a7");
            renamed.name = "Renamed".into();
            let mut batch: Vec<Attendee> = (0..600).map(|i| attendee(&format!("a{i}"))).collect();
            // The same id again, later in the batch: the later one wins.
            batch.push(renamed);
            let mut tx = one_by_one.transaction();
            for a in &batch {
                put_attendee(&mut tx, a).unwrap();
            }
            tx.commit();
            let mut tx = at_once.transaction();
            put_attendees(&mut tx, &batch).unwrap();
            tx.commit();
            let (expected, got) = (read(&one_by_one).unwrap(), read(&at_once).unwrap());
            assert_eq!(got.attendees.len(), 600);
            assert_eq!(got.attendees, expected.attendees);
            let a7 = got.attendees.iter().find(|a| a.id == "a7").unwrap();
            assert_eq!(a7.name, "Renamed");
        }
    }

    #[test]
    fn records_added_concurrently_to_one_bucket_are_all_kept() {
        let mut a = Automerge::new();
        let mut tx = a.transaction();
        init(&mut tx, &EventInfo::new("e1", "Conf")).unwrap();
        tx.commit();
        let mut b = a.fork();
        // More records than buckets, so many share one.
        let ids = |side: &'static str| (0..600).map(move |n| format!("{side}-{n}"));
        for (doc, side) in [(&mut a, "a"), (&mut b, "b")] {
            let mut tx = doc.transaction();
            for id in ids(side) {
                assert!(put_scan(&mut tx, &scan(&id, "x1")).unwrap());
            }
            tx.commit();
        }
        let before = a.get_heads();
        a.merge(&mut b).unwrap();
        let mut all: Vec<String> = scans(&a).unwrap().into_iter().map(|s| s.id).collect();
        let mut expected: Vec<String> = ids("a").chain(ids("b")).collect();
        expected.sort();
        assert_eq!(all, expected, "in id order, none lost");
        all.dedup();
        assert_eq!(all.len(), 1200);
        for id in ids("b") {
            assert_eq!(read_scan(&a, &id).unwrap().unwrap().id, id);
        }
        let changed = touched(&a, &before).unwrap();
        assert_eq!(changed.scans.len(), 600, "the merged side's scans, by id");
        assert!(changed.scans.iter().all(|id| id.starts_with("b-")));
        assert_eq!(touched(&a, &[]).unwrap().scans.len(), 1200);
    }

    #[test]
    fn every_record_id_has_one_bucket() {
        assert_eq!(bucket_of("s1"), bucket_of("s1"));
        let buckets: std::collections::HashSet<String> =
            (0..10_000).map(|n| bucket_of(&format!("id-{n}"))).collect();
        assert_eq!(
            buckets.len(),
            RECORD_BUCKETS,
            "ids spread over every bucket"
        );
        // Fixed by SHA-256, so every replica and every version agrees.
        assert_eq!(bucket_of(""), "e3");
        assert_eq!(bucket_of("abc"), "ba");
    }

    #[test]
    fn other_documents_are_refused() {
        let doc = Automerge::new();
        assert!(matches!(read(&doc), Err(ModelError::NotAnEvent(_))));
        let mut newer = Automerge::new();
        let mut tx = newer.transaction();
        tx.put(ROOT, "kind", KIND).unwrap();
        tx.put(ROOT, "schema", SCHEMA_VERSION + 1).unwrap();
        tx.commit();
        assert!(matches!(check(&newer), Err(ModelError::NewerSchema { .. })));
    }
}
