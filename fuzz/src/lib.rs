//! What the fuzz targets share: the documents a server holds (an event, a
//! member's settings, the organisation configuration, a document of no
//! known kind), each with the write check the server applies to it, and the
//! real changes `make_seeds` syncs against them for the seed corpora.
//! Every fixture is made by a fixed actor at time 0, so its changes (and so
//! the seeds that build on them) are the same in every run.

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Automerge, ROOT};
use doc_core::WriteCheck;
use event_model::document::{self, Attendee, CheckinList, EventInfo};
use event_model::hlc::Hlc;
use event_model::rules::{Annulment, Direction, ListRules, Scan};
use event_model::validate::EventWriter;
use settings_model::SettingValue;

/// A stored document and how the server checks writes to it.
pub struct Fixture {
    pub name: &'static str,
    pub snapshot: Vec<u8>,
    pub check: Option<WriteCheck>,
    pub may_write: bool,
}

/// The staff member the event's records name (see `event_doc`).
pub const STAFF: &str = "staff-1";

/// Every fixture; a doc_ingest input's first byte picks one (modulo).
pub fn fixtures() -> Vec<Fixture> {
    let event = event_doc().save();
    vec![
        Fixture {
            name: "event-admin",
            snapshot: event.clone(),
            check: Some(WriteCheck::Event(EventWriter::Admin)),
            may_write: true,
        },
        Fixture {
            name: "event-staff",
            snapshot: event.clone(),
            check: Some(WriteCheck::Event(EventWriter::Staff {
                user_id: Some(STAFF.into()),
            })),
            may_write: true,
        },
        Fixture {
            name: "event-reader",
            snapshot: event,
            check: Some(WriteCheck::Event(EventWriter::Admin)),
            may_write: false,
        },
        Fixture {
            name: "settings",
            snapshot: settings_doc().save(),
            check: Some(WriteCheck::Settings),
            may_write: true,
        },
        Fixture {
            name: "org-config",
            snapshot: org_doc().save(),
            check: Some(WriteCheck::OrgConfig),
            may_write: true,
        },
        Fixture {
            name: "plain",
            snapshot: plain_doc().save(),
            check: None,
            may_write: true,
        },
    ]
}

/// An event with a list, three attendees and a scan, as an admin makes it.
pub fn event_doc() -> Automerge {
    let mut doc = new_doc("fixture-admin");
    let mut tx = doc.transaction();
    document::init(&mut tx, &EventInfo::new("e1", "Fuzz Fest")).expect("init");
    document::put_list(
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
    .expect("list");
    let attendees: Vec<Attendee> = (0..3).map(attendee).collect();
    document::put_attendees(&mut tx, &attendees).expect("attendees");
    commit(tx);
    let mut tx = doc.transaction();
    document::put_scan(&mut tx, &scan(0, 0)).expect("scan");
    commit(tx);
    doc
}

/// A document whose changes are made by `actor` at time 0.
/// A list with every rule of time and count, a ticket type with a window
/// and a note, and the event's time zone, as an administrator writes them.
pub fn put_door_rules<T: Transactable>(tx: &mut T) {
    let mut rules = ListRules {
        allow_multiple_entries: true,
        allow_entry_after_exit: true,
        max_entries_per_day: std::num::NonZeroU32::new(2),
        exit_all_at: "04:00".parse().ok(),
        ..ListRules::default()
    };
    rules.window.valid_from_ms = Some(1_796_428_800_000);
    rules.window.weekdays = "fri,sat,sun".parse().expect("weekdays");
    document::put_list(
        tx,
        &CheckinList {
            id: "night".into(),
            name: "Night door".into(),
            rules,
        },
    )
    .expect("list");
    let mut window = event_model::rules::EntryWindow::default();
    window.valid_until_ms = Some(1_796_515_200_000);
    document::put_ticket_type(
        tx,
        &event_model::rules::TicketType {
            name: "day".into(),
            window,
            attention: Some("Stamp the hand".into()),
        },
    )
    .expect("ticket type");
    let mut info = EventInfo::new("e1", "Fuzz Fest");
    info.time_zone = "Europe/Berlin".into();
    document::set_info(tx, &info).expect("info");
}

pub fn new_doc(actor: &str) -> Automerge {
    Automerge::new().with_actor(ActorId::from(actor.as_bytes()))
}

/// Commits at time 0 (a fixed hash for fixed content).
pub fn commit(tx: automerge::transaction::Transaction<'_>) {
    tx.commit_with(CommitOptions::default().with_time(0));
}

pub fn attendee(n: usize) -> Attendee {
    Attendee {
        id: format!("a{n}"),
        ticket_code: format!("T-{n:04}"),
        name: format!("Attendee {n}"),
        email: format!("a{n}@example.org"),
        ticket_type: "day".into(),
        revoked: false,
        lists: Vec::new(),
        ..Attendee::default()
    }
}

pub fn scan(n: usize, attendee: usize) -> Scan {
    Scan {
        id: format!("s{n}"),
        attendee_id: format!("a{attendee}"),
        list_id: "main".into(),
        direction: if n % 2 == 0 {
            Direction::Entry
        } else {
            Direction::Exit
        },
        device_id: "tablet-1".into(),
        staff_id: STAFF.into(),
        hlc: hlc(n),
        wall_ms: 1_767_225_600_000 + n as i64,
        by_signature: false,
        payment_taken: false,
    }
}

pub fn annulment(n: usize, scan: usize) -> Annulment {
    Annulment {
        id: format!("x{n}"),
        scan_id: format!("s{scan}"),
        device_id: "tablet-1".into(),
        staff_id: STAFF.into(),
        hlc: hlc(1000 + n),
        wall_ms: 1_767_225_700_000 + n as i64,
    }
}

fn hlc(n: usize) -> Hlc {
    Hlc {
        wall_ms: 1_767_225_600_000 + n as i64,
        counter: 0,
        node: "tablet-1".into(),
    }
}

pub fn settings_doc() -> Automerge {
    let mut doc = new_doc("fixture-admin");
    let mut tx = doc.transaction();
    settings_model::init(&mut tx).expect("settings init");
    commit(tx);
    doc
}

pub fn org_doc() -> Automerge {
    let mut doc = new_doc("fixture-admin");
    let mut tx = doc.transaction();
    settings_model::org::init(&mut tx).expect("org init");
    commit(tx);
    doc
}

pub fn plain_doc() -> Automerge {
    let mut doc = new_doc("fixture-admin");
    let mut tx = doc.transaction();
    tx.put(ROOT, "title", "notes").expect("put");
    commit(tx);
    doc
}

/// A settings value for `make_seeds`.
pub fn text(value: &str) -> SettingValue {
    SettingValue::Text(value.into())
}

/// The event fixture's document id on a client.
pub const EVENT_ID: [u8; 16] = [7; 16];

/// Puts the event fixture on a real client store, as a download from the
/// server would (the whole document in one sync message), and returns its id.
pub fn put_event_on(core: &client_core::ClientCore) -> sync_protocol::DocumentId {
    use automerge::sync::SyncDoc;
    let id = sync_protocol::DocumentId::from_bytes(EVENT_ID);
    core.find(id).expect("wanted");
    let doc = event_doc();
    let mut message = doc
        .generate_sync_message(&mut automerge::sync::State::new())
        .expect("a first message");
    message.changes = vec![doc.save()].into();
    assert!(
        core.receive_from_server_for_fuzzing(id, &message.encode())
            .expect("download applies"),
        "the event arrived"
    );
    id
}

/// libfuzzer-sys makes every panic abort, caught or not. The code under
/// test contains automerge's own panics on crafted input
/// (`sync_protocol::sync_data::contain_panic`) and recovers, so a panic
/// raised inside automerge may unwind to that guard; any other panic still
/// aborts, and an automerge panic that escapes the guard reaches
/// libfuzzer-sys's `catch_unwind`, which aborts too.
pub fn let_contained_automerge_panics_unwind() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let abort = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_automerge = info
                .location()
                .is_some_and(|at| at.file().contains("/automerge-"));
            if !in_automerge {
                abort(info);
            }
        }));
    });
}

/// The event document id the ticket code target's codes are made for.
pub const TICKET_EVENT: &str = "2Jj6VQh9Tdb3ZfZ8Dmbiw2KSqdCw";

/// The key the ticket code target's codes are signed with.
pub fn ticket_signing_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[7; 32])
}
