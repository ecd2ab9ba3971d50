//! Door rules of time and count over real SQLite files: the answers at the
//! door, the limit per day flagged alike on two replicas that scanned
//! offline, and the check-out of everyone, which empties the room on
//! every replica without a scan; attention notes and the two steps of an
//! unpaid ticket.

use std::num::NonZeroU32;

use event_model::calendar::{Calendar, TimeOfDay};
use event_model::document::{CheckinList, EventInfo};
use event_model::rules::{Answer, Direction, EntryWindow, ListRules, TicketType};
use sync_protocol::DocumentId;

use crate::ClientCore;
use crate::tests::sync_directly;
use crate::time::now_ms;

const HOUR_MS: i64 = 3_600_000;

/// A zone in which it is about noon now, so no test here crosses a local
/// midnight while it runs (`Etc/GMT-3` is UTC+3).
fn noon_zone() -> String {
    let utc_hour = (now_ms().rem_euclid(24 * HOUR_MS) / HOUR_MS) as i32;
    let offset = 12 - utc_hour;
    match offset {
        0 => "Etc/GMT".into(),
        n if n > 0 => format!("Etc/GMT-{n}"),
        n => format!("Etc/GMT+{}", -n),
    }
}

fn list(id: &str, rules: ListRules) -> CheckinList {
    CheckinList {
        id: id.into(),
        name: id.into(),
        rules,
    }
}

fn event(core: &ClientCore, zone: &str) -> DocumentId {
    let event = core
        .create_event(&EventInfo {
            time_zone: zone.into(),
            ..EventInfo::new("fest", "Festival")
        })
        .unwrap();
    let csv = "ticket_code,name,email,ticket_type\n\
               ADA,Ada,ada@example.org,weekend\n\
               BOB,Bob,bob@example.org,early bird\n";
    core.import_attendees_csv(event, csv.as_bytes(), |_| true)
        .unwrap()
        .unwrap();
    event
}

#[test]
fn time_rules_answer_at_the_door_and_hold_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("door.sqlite3");
    let zone = noon_zone();
    let calendar = Calendar::named(&zone).unwrap();
    let now = now_ms();
    let core = ClientCore::open(&path).unwrap();
    assert!(matches!(
        core.create_event(&EventInfo {
            time_zone: "Nowhere/Special".into(),
            ..EventInfo::new("x", "X")
        }),
        Err(crate::ClientError::TimeZone(_))
    ));
    let event = event(&core, &zone);
    let today = calendar.weekday(now);
    let not_today: String = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != today.to_monday_zero_offset() as usize)
        .map(|(_, d)| *d)
        .collect::<Vec<_>>()
        .join(",");
    let open = ListRules {
        allow_multiple_entries: false,
        allow_entry_after_exit: true,
        ..ListRules::default()
    };
    let doors = [
        (
            "weekdays",
            EntryWindow {
                weekdays: not_today.parse().unwrap(),
                ..EntryWindow::default()
            },
            None,
        ),
        (
            "later",
            EntryWindow {
                valid_from_ms: Some(now + HOUR_MS),
                ..EntryWindow::default()
            },
            None,
        ),
        ("twice", EntryWindow::default(), NonZeroU32::new(2)),
    ];
    for (id, window, max_entries_per_day) in doors {
        let rules = ListRules {
            window,
            max_entries_per_day,
            ..open
        };
        core.put_checkin_list(event, &list(id, rules)).unwrap();
    }
    core.put_ticket_type(
        event,
        &TicketType {
            name: "early bird".into(),
            window: EntryWindow {
                valid_until_ms: Some(now - HOUR_MS),
                ..EntryWindow::default()
            },
            ..TicketType::default()
        },
    )
    .unwrap();
    assert_eq!(core.ticket_types(event).unwrap()[0].name, "early bird");
    let scan = |core: &ClientCore, code: &str, list: &str, direction| {
        core.check_in(event, code, list, direction).unwrap().answer
    };
    assert!(matches!(
        scan(&core, "ADA", "weekdays", Direction::Entry),
        Answer::NotValidToday { .. }
    ));
    assert_eq!(
        scan(&core, "ADA", "later", Direction::Entry),
        Answer::NotYetValid {
            from_ms: now + HOUR_MS
        }
    );
    assert!(matches!(
        scan(&core, "BOB", "twice", Direction::Entry),
        Answer::Expired { .. }
    ));
    for direction in [
        Direction::Entry,
        Direction::Exit,
        Direction::Entry,
        Direction::Exit,
    ] {
        let answer = scan(&core, "ADA", "twice", direction);
        assert!(
            matches!(answer, Answer::Admitted | Answer::Exited),
            "{answer:?}"
        );
    }
    assert_eq!(
        scan(&core, "ADA", "twice", Direction::Entry),
        Answer::DailyLimitReached { limit: 2 }
    );
    drop(core);

    let core = ClientCore::open(&path).unwrap();
    assert_eq!(
        scan(&core, "ADA", "twice", Direction::Entry),
        Answer::DailyLimitReached { limit: 2 },
        "the day's entries are in the file"
    );
    let lists = core.checkin_lists(event).unwrap();
    let later = lists.iter().find(|l| l.id == "later").unwrap();
    assert_eq!(later.rules.window.valid_from_ms, Some(now + HOUR_MS));
}

#[test]
fn two_replicas_flag_the_same_entry_over_the_limit_and_empty_the_room_at_exit_all_at() {
    let dir = tempfile::tempdir().unwrap();
    let zone = noon_zone();
    let calendar = Calendar::named(&zone).unwrap();
    let admin = ClientCore::open(dir.path().join("admin.sqlite3")).unwrap();
    let tablet = ClientCore::open(dir.path().join("tablet.sqlite3")).unwrap();
    let event = event(&admin, &zone);
    // The check-out of everyone at the next full hour of the event's
    // clock (its zone is whole hours from UTC), at least a minute away so
    // the entries below come before it.
    let now = now_ms();
    let mut next_hour = now - now.rem_euclid(HOUR_MS) + HOUR_MS;
    if next_hour - now < 60_000 {
        next_hour += HOUR_MS;
    }
    let exit_all_at = (0..24)
        .map(|hour| TimeOfDay::new(hour, 0).unwrap())
        .find(|time| calendar.next_time_of_day(*time, now) == Some(next_hour))
        .unwrap();
    admin
        .put_checkin_list(
            event,
            &list(
                "main",
                ListRules {
                    allow_multiple_entries: true,
                    allow_entry_after_exit: true,
                    max_entries_per_day: NonZeroU32::new(1),
                    exit_all_at: Some(exit_all_at),
                    ..ListRules::default()
                },
            ),
        )
        .unwrap();
    assert!(
        !tablet.find(event).unwrap(),
        "a tablet that knows the event's id"
    );
    sync_directly(&admin, &tablet, event);

    // Offline from each other, both admit Ada once: her first entry of the day.
    let on_admin = admin
        .check_in(event, "ADA", "main", Direction::Entry)
        .unwrap();
    let on_tablet = tablet
        .check_in(event, "ADA", "main", Direction::Entry)
        .unwrap();
    assert_eq!(on_admin.answer, Answer::Admitted);
    assert_eq!(on_tablet.answer, Answer::Admitted);
    assert_eq!(
        tablet
            .check_in(event, "ADA", "main", Direction::Entry)
            .unwrap()
            .answer,
        Answer::DailyLimitReached { limit: 1 }
    );
    admin.flush_journal_of(event).unwrap();
    tablet.flush_journal_of(event).unwrap();
    sync_directly(&admin, &tablet, event);
    let flagged: Vec<Vec<String>> = [&admin, &tablet]
        .iter()
        .map(|core| {
            core.duplicates(event)
                .unwrap()
                .into_iter()
                .map(|d| d.scan.scan_id)
                .collect()
        })
        .collect();
    assert_eq!(flagged[0].len(), 1, "the later of the two entries");
    assert_eq!(flagged[0], flagged[1], "the same one on both replicas");

    // Inside now; nobody inside once the event's clock has passed
    // `exit_all_at`, on either replica, without a scan.
    for core in [&admin, &tablet] {
        assert_eq!(core.counts_at(event, Some("main"), now).unwrap().inside, 1);
        assert_eq!(
            core.counts_at(event, Some("main"), next_hour - 1)
                .unwrap()
                .inside,
            1
        );
        let after = core.counts_at(event, Some("main"), next_hour).unwrap();
        assert_eq!(after.inside, 0, "at {exit_all_at}");
        assert_eq!(after.checked_in, 1, "she was here");
        assert_eq!(core.counts_at(event, None, next_hour).unwrap().inside, 0);
    }
}

#[test]
fn attention_notes_are_shown_and_an_unpaid_ticket_is_admitted_once_payment_is_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("door.sqlite3");
    let core = ClientCore::open(&path).unwrap();
    let event = core.create_event(&EventInfo::new("gala", "Gala")).unwrap();
    core.put_checkin_list(event, &list("main", ListRules::default()))
        .unwrap();
    let csv = "ticket_code,name,ticket_type,attention,unpaid\n\
               VIP-1,Ada,vip,Escort to the lounge,no\n\
               OWE-1,Bob,standard,,yes\n\
               STD-1,Cy,standard,,no\n";
    core.import_attendees_csv(event, csv.as_bytes(), |_| true)
        .unwrap()
        .unwrap();
    core.put_ticket_type(
        event,
        &TicketType {
            name: "vip".into(),
            attention: Some("ID check".into()),
            ..TicketType::default()
        },
    )
    .unwrap();
    let entry = |code: &str| {
        core.check_in(event, code, "main", Direction::Entry)
            .unwrap()
    };

    let vip = entry("VIP-1");
    assert_eq!(
        vip.answer,
        Answer::AdmittedWithAttention {
            note: "Escort to the lounge\nID check".into()
        }
    );
    assert!(vip.scan_id.is_some(), "recorded like any admission");
    assert_eq!(
        vip.attendee.unwrap().attention.as_deref(),
        Some("Escort to the lounge")
    );
    assert_eq!(entry("STD-1").answer, Answer::Admitted);

    let before = core.scan_count(event).unwrap();
    let asked = entry("OWE-1");
    assert_eq!(asked.answer, Answer::ConfirmPayment { note: None });
    assert!(asked.scan_id.is_none());
    assert_eq!(
        core.scan_count(event).unwrap(),
        before,
        "nothing recorded yet"
    );
    let paid = core
        .check_in_confirming_payment(event, "OWE-1", "main", Direction::Entry)
        .unwrap();
    assert_eq!(paid.answer, Answer::Admitted);
    assert!(paid.scan_id.is_some());
    // The record says the door took payment (and the report counts it).
    let recorded = core.recent_scans(event, 1).unwrap();
    assert!(recorded[0].payment_taken && !recorded[0].by_signature);
    let report = core.checkin_report(event, 5).unwrap().unwrap();
    assert_eq!(report.devices[0].payments_taken, 1);
    assert!(matches!(
        entry("OWE-1").answer,
        Answer::AlreadyCheckedIn { .. }
    ));
    assert_eq!(core.counts(event, Some("main")).unwrap().checked_in, 3);
    drop(core);

    // The flags are in the file (and the document): a reopened replica
    // still asks for Bob's payment had he not been let in; Ada's note stays.
    let core = ClientCore::open(&path).unwrap();
    let found = core.search_attendees(event, "OWE-1", 1).unwrap();
    assert!(found[0].unpaid);
    let exit = core
        .check_in(event, "VIP-1", "main", Direction::Exit)
        .unwrap();
    assert_eq!(exit.answer, Answer::Exited, "leaving needs no attention");
}

#[test]
fn the_report_and_its_csv_come_from_the_scans_this_replica_holds() {
    let dir = tempfile::tempdir().unwrap();
    let core = ClientCore::open(dir.path().join("desk.sqlite3")).unwrap();
    let event = core.create_event(&EventInfo::new("gala", "Gala")).unwrap();
    core.put_checkin_list(event, &list("main", ListRules::default()))
        .unwrap();
    let csv = "ticket_code,name,ticket_type,revoked\n\
               A-1,Ada,vip,no\n\
               B-1,Bob,day,no\n\
               C-1,Cy,day,no\n\
               D-1,Di,day,yes\n";
    core.import_attendees_csv(event, csv.as_bytes(), |_| true)
        .unwrap()
        .unwrap();
    for code in ["A-1", "B-1", "A-1"] {
        core.check_in(event, code, "main", Direction::Entry)
            .unwrap();
    }
    core.check_in(event, "B-1", "main", Direction::Exit)
        .unwrap();
    assert!(matches!(
        core.checkin_report(event, 0).unwrap(),
        Err(crate::analytics::ReportError::BucketWidth(0))
    ));
    let report = core.checkin_report(event, 5).unwrap().unwrap();
    assert_eq!(report.arrivals.iter().map(|a| a.entries).sum::<u64>(), 2);
    assert_eq!(report.peak.as_ref().unwrap().entries, 2);
    assert_eq!(report.devices.len(), 1);
    let device = &report.devices[0];
    assert_eq!((device.entries, device.exits, device.duplicates), (2, 1, 0));
    assert!(device.median_gap_ms.is_some());
    let types: Vec<(&str, u64, u64, u64)> = report
        .ticket_types
        .iter()
        .map(|t| (t.ticket_type.as_str(), t.expected, t.checked_in, t.no_shows))
        .collect();
    assert_eq!(
        types,
        [("day", 2, 1, 1), ("vip", 1, 1, 0)],
        "Di's revoked ticket counts nowhere"
    );
    // Cy comes in and the scan is annulled: counted, then not.
    let cy = core
        .check_in(event, "C-1", "main", Direction::Entry)
        .unwrap();
    let day = |core: &ClientCore| {
        let report = core.checkin_report(event, 5).unwrap().unwrap();
        report
            .ticket_types
            .iter()
            .find(|t| t.ticket_type == "day")
            .unwrap()
            .checked_in
    };
    assert_eq!(day(&core), 2);
    core.annul(event, &cy.scan_id.unwrap()).unwrap().unwrap();
    assert_eq!(day(&core), 1);
    let total: u64 = core
        .checkin_report(event, 5)
        .unwrap()
        .unwrap()
        .ticket_types
        .iter()
        .map(|t| t.checked_in)
        .sum();
    assert_eq!(total, core.counts(event, None).unwrap().checked_in);

    let csv = core.checkin_report_csv(event).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "ticket_code,name,email,ticket_type,status,first_entry,lists,inside"
    );
    assert_eq!(lines.len(), 5);
    assert!(
        lines[1].starts_with("A-1,Ada,,vip,checked_in,20") && lines[1].ends_with(",main,yes"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with("B-1,Bob,,day,checked_in,") && lines[2].ends_with(",main,no"),
        "{}",
        lines[2]
    );
    assert_eq!(lines[3], "C-1,Cy,,day,no_show,,,no");
    assert_eq!(lines[4], "D-1,Di,,day,revoked,,,no");
}

#[test]
fn another_time_zone_judges_the_days_again() {
    let dir = tempfile::tempdir().unwrap();
    let core = ClientCore::open(dir.path().join("desk.sqlite3")).unwrap();
    let info = EventInfo::new("fest", "Festival");
    let event = core.create_event(&info).unwrap();
    let once_a_day = ListRules {
        allow_multiple_entries: true,
        allow_entry_after_exit: true,
        max_entries_per_day: NonZeroU32::new(1),
        ..ListRules::default()
    };
    core.put_checkin_list(event, &list("main", once_a_day))
        .unwrap();
    core.import_attendees_csv(event, "ticket_code,name\nADA,Ada\n".as_bytes(), |_| true)
        .unwrap()
        .unwrap();
    // Two entries recorded (as tablets would send them) at 23:30 and 00:30
    // UTC: two days in UTC, one day in a zone two hours ahead.
    let midnight = 1_796_428_800_000; // 2026-12-05 00:00 UTC
    core.change(event, |tx| {
        for (id, at) in [
            ("s1", midnight - HOUR_MS / 2),
            ("s2", midnight + HOUR_MS / 2),
        ] {
            let scan = event_model::rules::Scan {
                id: id.into(),
                attendee_id: "ADA".into(),
                list_id: "main".into(),
                direction: Direction::Entry,
                device_id: "t1".into(),
                staff_id: "staff".into(),
                hlc: event_model::hlc::Hlc {
                    wall_ms: at,
                    counter: 0,
                    node: "t1".into(),
                },
                wall_ms: at,
                by_signature: false,
                payment_taken: false,
            };
            event_model::document::put_scan(tx, &scan)?;
        }
        Ok::<_, event_model::ModelError>(())
    })
    .unwrap();
    assert!(
        core.duplicates(event).unwrap().is_empty(),
        "two days in UTC"
    );
    core.update_event_info(
        event,
        &EventInfo {
            time_zone: "Etc/GMT-2".into(),
            ..info
        },
    )
    .unwrap();
    let flagged: Vec<String> = core
        .duplicates(event)
        .unwrap()
        .into_iter()
        .map(|d| d.scan.scan_id)
        .collect();
    assert_eq!(
        flagged,
        ["s2"],
        "one day at UTC+2: the second entry is over the limit"
    );
    // A change of the list's rules alone judges them again too.
    core.put_checkin_list(
        event,
        &list(
            "main",
            ListRules {
                max_entries_per_day: NonZeroU32::new(2),
                ..once_a_day
            },
        ),
    )
    .unwrap();
    assert!(core.duplicates(event).unwrap().is_empty(), "two a day now");
}
