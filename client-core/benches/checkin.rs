//! Scan-to-answer on one tablet holding a large event: the time from a
//! ticket code to the answer with the scan durably stored (SQLite
//! `synchronous=FULL`), as percentiles, for plain codes and for signed codes
//! of attendees the list does not hold (`signed_admit_*`). Also reports how
//! long importing the attendees took.
//!
//! `cargo bench -p client-core --bench checkin -- [ATTENDEES] [SCANS]`
//! (defaults 100000 and 2000).

use std::time::Instant;

use client_core::ClientCore;
use client_core::event_model::document::{CheckinList, EventInfo};
use client_core::event_model::rules::{Answer, Direction, ListRules};
use client_core::event_model::tickets::{self, TicketClaims};

mod support;
use support::percentile;

fn main() {
    let args = support::numbers();
    let attendees = args.first().copied().unwrap_or(100_000);
    let scans = args.get(1).copied().unwrap_or(2_000).min(attendees);
    let dir = tempfile::tempdir().expect("temp dir");
    let core = ClientCore::open(dir.path().join("tablet.sqlite3")).expect("open store");
    let event = core
        .create_event(&EventInfo::new("bench", "Benchmark event"))
        .expect("create event");
    core.put_checkin_list(
        event,
        &CheckinList {
            id: "main".into(),
            name: "Main".into(),
            rules: ListRules::default(),
        },
    )
    .expect("list");
    let mut csv = String::from("ticket_code,name,email\n");
    for i in 0..attendees {
        csv.push_str(&format!("T{i:07},Guest Number {i},guest{i}@example.org\n"));
    }
    let started = Instant::now();
    let report = core
        .import_attendees_csv(event, csv.as_bytes(), |_| true)
        .expect("import")
        .expect("not aborted");
    let import = started.elapsed();
    assert_eq!(report.imported as usize, attendees);

    // Scan a spread of tickets, each for the first time.
    let step = attendees / scans;
    let mut times = Vec::with_capacity(scans);
    for n in 0..scans {
        let code = format!("T{:07}", n * step);
        let started = Instant::now();
        let result = core
            .check_in(event, &code, "main", Direction::Entry)
            .expect("check in");
        times.push(started.elapsed());
        assert_eq!(result.answer, Answer::Admitted);
    }
    // And the answer for a ticket already in (lookup only, nothing written).
    let mut repeat = Vec::with_capacity(scans);
    for n in 0..scans {
        let code = format!("T{:07}", n * step);
        let started = Instant::now();
        let result = core
            .check_in(event, &code, "main", Direction::Entry)
            .expect("check in");
        repeat.push(started.elapsed());
        assert!(matches!(result.answer, Answer::AlreadyCheckedIn { .. }));
    }
    // Signed codes of people this tablet's list does not hold (a late
    // registration, or a fresh tablet mid-download): the code lookup misses,
    // the signature is checked under the event's key, the revocation list
    // is asked, and the scan is recorded as any other.
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    core.set_ticket_key(event, &tickets::key_text(&key.verifying_key()))
        .expect("ticket key");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let codes: Vec<String> = (0..scans)
        .map(|n| {
            let claims = TicketClaims {
                attendee_id: uuid::Uuid::from_u128(n as u128 + 1)
                    .hyphenated()
                    .to_string(),
                ticket_type: "day".into(),
                issued_at_ms: now - 60_000,
                valid_from_ms: None,
                valid_until_ms: None,
            };
            tickets::issue(&key, &event.to_string(), &claims).expect("issue")
        })
        .collect();
    let mut signed = Vec::with_capacity(scans);
    for code in &codes {
        let started = Instant::now();
        let result = core
            .check_in(event, code, "main", Direction::Entry)
            .expect("check in");
        signed.push(started.elapsed());
        assert_eq!(result.answer, Answer::Admitted);
        assert!(result.verified_by_signature);
    }
    times.sort();
    repeat.sort();
    signed.sort();
    // What a fresh download costs beyond the network: building the index
    // of the whole event, and loading the document from disk.
    let started = Instant::now();
    core.rebuild_event_index(event).expect("rebuild");
    let rebuild = started.elapsed();
    let path = core.path().to_path_buf();
    drop(core);
    let started = Instant::now();
    let core = ClientCore::open(&path).expect("reopen");
    let reopen = started.elapsed();
    let search_started = Instant::now();
    let hits = core
        .search_attendees(event, "Number 4242", 20)
        .expect("search");
    let search = search_started.elapsed();
    println!(
        "{}",
        serde_json::json!({
            "attendees": attendees,
            "import_ms": import.as_millis(),
            "scans": scans,
            "admit_p50_us": percentile(&times, 0.50).as_micros(),
            "admit_p99_us": percentile(&times, 0.99).as_micros(),
            "admit_max_us": times.last().map(|d| d.as_micros()),
            "already_in_p50_us": percentile(&repeat, 0.50).as_micros(),
            "already_in_p99_us": percentile(&repeat, 0.99).as_micros(),
            "signed_admit_p50_us": percentile(&signed, 0.50).as_micros(),
            "signed_admit_p99_us": percentile(&signed, 0.99).as_micros(),
            "search_us": search.as_micros(),
            "index_rebuild_ms": rebuild.as_millis(),
            "reopen_ms": reopen.as_millis(),
            "search_hits": hits.len(),
            "counts": core.counts(event, Some("main")).expect("counts"),
        })
    );
}
