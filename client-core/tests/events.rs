//! The check-in domain on one replica, over a real SQLite file: events and
//! lists, CSV import (row errors, abort), search, the answers a scan gets,
//! annulment, counts, and an index that survives reopening and rebuilds.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed step fails the test it serves"
)]

use client_core::event_model::document::{Attendee, CheckinList, EventInfo};
use client_core::event_model::rules::{Answer, Counts, Direction, ListRules};
use client_core::{ClientCore, DocumentId, ImportProgress, RowError};

const CSV: &str = "\
ticket_code,name,email,ticket_type,lists,revoked
A-100,Ada Lovelace,ada@example.org,day,,no
A-101,Grace Hopper,grace@navy.example,day,main,
A-102,Alan Turing,alan@example.org,vip,main;vip,0
,No Code,nocode@example.org,day,,
A-103,Bad Mail,not-an-email,day,,
A-100,Ada Again,ada2@example.org,day,,
A-104,Revoked Person,rev@example.org,day,,yes
A-105,Odd Flag,odd@example.org,day,,maybe
";

fn open(dir: &tempfile::TempDir, name: &str) -> ClientCore {
    ClientCore::open(dir.path().join(name)).unwrap()
}

fn event(core: &ClientCore) -> DocumentId {
    let id = core
        .create_event(&EventInfo {
            location: "Hall A".into(),
            ..EventInfo::new("conf-2026", "Conference 2026")
        })
        .unwrap();
    core.put_checkin_list(
        id,
        &CheckinList {
            id: "main".into(),
            name: "Main entrance".into(),
            rules: ListRules::default(),
        },
    )
    .unwrap();
    core.put_checkin_list(
        id,
        &CheckinList {
            id: "vip".into(),
            name: "VIP lounge".into(),
            rules: ListRules {
                allow_multiple_entries: false,
                allow_entry_after_exit: true,
                ..ListRules::default()
            },
        },
    )
    .unwrap();
    id
}

#[test]
fn import_reports_rows_and_an_abort_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let core = open(&dir, "c.sqlite3");
    let id = event(&core);
    let heads = core.heads(id).unwrap();
    let aborted = core
        .import_attendees_csv(id, CSV.as_bytes(), |p| {
            !matches!(p, ImportProgress::Writing { .. })
        })
        .unwrap();
    assert!(aborted.is_none());
    assert_eq!(core.heads(id).unwrap(), heads, "nothing written");
    assert!(core.search_attendees(id, "A-", 10).unwrap().is_empty());

    let mut seen = Vec::new();
    let report = core
        .import_attendees_csv(id, CSV.as_bytes(), |p| {
            seen.push(p);
            true
        })
        .unwrap()
        .unwrap();
    assert_eq!(report.imported, 4);
    assert_eq!(
        report.rejected,
        vec![
            RowError {
                line: 5,
                message: "the ticket code is empty".into()
            },
            RowError {
                line: 6,
                message: "`not-an-email` is not an email address".into()
            },
            RowError {
                line: 7,
                message: "ticket code `A-100` already appears on line 2".into()
            },
            RowError {
                line: 9,
                message: "`revoked` must be yes/no/true/false/1/0, got `maybe`".into()
            },
        ]
    );
    assert_eq!(seen.last(), Some(&ImportProgress::Writing { total: 4 }));
    let broken = core.import_attendees_csv(id, "name,email\nx,y\n".as_bytes(), |_| true);
    assert!(broken.unwrap_err().to_string().contains("ticket_code"));
}

#[test]
fn search_scan_answers_annulment_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let core = open(&dir, "c.sqlite3");
    let id = event(&core);
    core.import_attendees_csv(id, CSV.as_bytes(), |_| true)
        .unwrap();

    // Search: code prefix, any part of a name or email, short queries too.
    let codes = |hits: Vec<client_core::AttendeeView>| {
        hits.into_iter().map(|h| h.ticket_code).collect::<Vec<_>>()
    };
    assert_eq!(
        codes(core.search_attendees(id, "A-10", 10).unwrap()),
        ["A-100", "A-101", "A-102", "A-104"]
    );
    assert_eq!(
        codes(core.search_attendees(id, "hopp", 10).unwrap()),
        ["A-101"]
    );
    assert_eq!(
        codes(core.search_attendees(id, "navy.exa", 10).unwrap()),
        ["A-101"]
    );
    assert_eq!(
        codes(core.search_attendees(id, "ur", 10).unwrap()),
        ["A-102"]
    );
    assert_eq!(core.search_attendees(id, "A-", 2).unwrap().len(), 2);
    assert!(core.search_attendees(id, "nobody", 10).unwrap().is_empty());
    // An edited attendee is found by the new name only.
    let mut ada = core
        .read_event(id)
        .unwrap()
        .attendees
        .into_iter()
        .find(|a| a.ticket_code == "A-100")
        .unwrap();
    ada.name = "Augusta King".into();
    core.put_attendee(id, &ada).unwrap();
    assert_eq!(
        codes(core.search_attendees(id, "augusta", 10).unwrap()),
        ["A-100"]
    );
    assert!(
        core.search_attendees(id, "lovelace", 10)
            .unwrap()
            .is_empty()
    );
    ada.name = "Ada Lovelace".into();
    core.put_attendee(id, &ada).unwrap();

    assert_eq!(
        core.counts(id, Some("main")).unwrap(),
        Counts {
            expected: 3,
            checked_in: 0,
            inside: 0
        }
    );
    assert_eq!(
        core.counts(id, Some("vip")).unwrap(),
        Counts {
            expected: 2,
            checked_in: 0,
            inside: 0
        }
    );

    // Answers.
    let first = core
        .check_in(id, "A-100", "main", Direction::Entry)
        .unwrap();
    assert_eq!(first.answer, Answer::Admitted);
    assert_eq!(first.attendee.as_ref().unwrap().name, "Ada Lovelace");
    let scan = first.scan_id.clone().unwrap();
    let again = core
        .check_in(id, "A-100", "main", Direction::Entry)
        .unwrap();
    assert_eq!(
        again.answer,
        Answer::AlreadyCheckedIn { scan: scan.clone() }
    );
    assert_eq!(again.previous.as_ref().unwrap().scan_id, scan);
    assert!(again.scan_id.is_none(), "a refused entry records nothing");
    assert_eq!(
        core.check_in(id, "Z-999", "main", Direction::Entry)
            .unwrap()
            .answer,
        Answer::UnknownTicket
    );
    assert_eq!(
        core.check_in(id, "A-101", "vip", Direction::Entry)
            .unwrap()
            .answer,
        Answer::NotValidOnList
    );
    assert_eq!(
        core.check_in(id, "A-104", "main", Direction::Entry)
            .unwrap()
            .answer,
        Answer::Revoked
    );
    assert_eq!(
        core.check_in(id, "A-100", "nowhere", Direction::Entry)
            .unwrap()
            .answer,
        Answer::NotValidOnList
    );

    // Exit, then re-entry: refused on "main", allowed on "vip".
    assert_eq!(
        core.check_in(id, "A-100", "main", Direction::Exit)
            .unwrap()
            .answer,
        Answer::Exited
    );
    assert!(matches!(
        core.check_in(id, "A-100", "main", Direction::Entry)
            .unwrap()
            .answer,
        Answer::AlreadyCheckedIn { .. }
    ));
    for direction in [Direction::Entry, Direction::Exit, Direction::Entry] {
        assert!(matches!(
            core.check_in(id, "A-102", "vip", direction).unwrap().answer,
            Answer::Admitted | Answer::Exited
        ));
    }
    assert_eq!(
        core.counts(id, Some("main")).unwrap(),
        Counts {
            expected: 3,
            checked_in: 1,
            inside: 0
        }
    );
    assert_eq!(
        core.counts(id, Some("vip")).unwrap(),
        Counts {
            expected: 2,
            checked_in: 1,
            inside: 1
        }
    );

    // Annulment: the scan no longer counts, and the door admits again.
    let grace = core
        .check_in(id, "A-101", "main", Direction::Entry)
        .unwrap();
    core.annul(id, grace.scan_id.as_deref().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(core.counts(id, Some("main")).unwrap().checked_in, 1);
    assert_eq!(
        core.check_in(id, "A-101", "main", Direction::Entry)
            .unwrap()
            .answer,
        Answer::Admitted
    );
    assert!(core.annul(id, "no-such-scan").unwrap().is_err());
    assert!(
        core.duplicates(id).unwrap().is_empty(),
        "one replica makes no duplicates"
    );

    // The index survives reopening and rebuilds to the same answers.
    let counts = core.counts(id, None).unwrap();
    drop(core);
    let core = open(&dir, "c.sqlite3");
    assert_eq!(core.counts(id, None).unwrap(), counts);
    core.rebuild_event_index(id).unwrap();
    assert_eq!(core.counts(id, None).unwrap(), counts);
    assert_eq!(core.events().unwrap()[0].name, "Conference 2026");
    assert_eq!(core.checkin_lists(id).unwrap().len(), 2);
    let data = core.read_event(id).unwrap();
    assert_eq!(data.attendees.len(), 4);
    assert_eq!(data.scans.len(), 7);
}

#[test]
fn a_scan_is_too_old_to_annul_after_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let core = open(&dir, "c.sqlite3");
    let id = core
        .create_event(&EventInfo {
            annul_window_ms: 0,
            ..EventInfo::new("e", "Strict")
        })
        .unwrap();
    core.put_checkin_list(
        id,
        &CheckinList {
            id: "main".into(),
            name: "Main".into(),
            rules: ListRules::default(),
        },
    )
    .unwrap();
    core.put_attendee(
        id,
        &Attendee {
            id: "a".into(),
            ticket_code: "T".into(),
            name: "N".into(),
            email: String::new(),
            ticket_type: String::new(),
            revoked: false,
            lists: vec![],
            ..Attendee::default()
        },
    )
    .unwrap();
    let scan = core
        .check_in(id, "T", "main", Direction::Entry)
        .unwrap()
        .scan_id
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    assert!(matches!(
        core.annul(id, &scan).unwrap(),
        Err(client_core::AnnulError::TooLate { .. })
    ));
}

/// A live view reads only the scans indexed since it last looked, of its
/// own event, oldest first; after a rebuild it reads from the start again.
#[test]
fn scans_after_a_position_are_only_the_new_ones_of_that_event() {
    let dir = tempfile::tempdir().unwrap();
    let core = open(&dir, "c.sqlite3");
    let (one, other) = (event(&core), event(&core));
    for id in [one, other] {
        core.import_attendees_csv(id, CSV.as_bytes(), |_| true)
            .unwrap();
    }
    let scan = |id, code| {
        core.check_in(id, code, "main", Direction::Entry)
            .unwrap()
            .scan_id
            .unwrap()
    };
    let ids = |rows: &[(u64, client_core::ScanView)]| {
        rows.iter()
            .map(|(_, s)| s.scan_id.clone())
            .collect::<Vec<_>>()
    };
    let first = scan(one, "A-100");
    scan(other, "A-100");
    let second = scan(one, "A-101");
    let all = core.scans_after(one, 0, 100).unwrap();
    assert_eq!(ids(&all), [first.clone(), second.clone()]);
    let at_first = all[0].0;
    assert_eq!(
        ids(&core.scans_after(one, at_first, 100).unwrap()),
        std::slice::from_ref(&second)
    );
    assert_eq!(core.scans_after(one, all[1].0, 100).unwrap().len(), 0);
    assert_eq!(
        ids(&core.scans_after(one, 0, 1).unwrap()),
        std::slice::from_ref(&first)
    );
    let third = scan(one, "A-102");
    assert_eq!(
        ids(&core.scans_after(one, all[1].0, 100).unwrap()),
        std::slice::from_ref(&third)
    );

    core.rebuild_event_index(one).unwrap();
    let mut rebuilt = ids(&core.scans_after(one, 0, 100).unwrap());
    rebuilt.sort();
    let mut expected = vec![first, second, third];
    expected.sort();
    assert_eq!(rebuilt, expected);
}
