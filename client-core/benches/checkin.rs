//! Scan-to-answer on one tablet holding a large event: the time from a
//! ticket code to the answer with the scan durably stored (SQLite
//! `synchronous=FULL`), as percentiles. Also reports how long importing the
//! attendees took.
//!
//! `cargo bench -p client-core --bench checkin -- [ATTENDEES] [SCANS]`
//! (defaults 100000 and 2000).

use std::time::{Duration, Instant};

use client_core::ClientCore;
use client_core::event_model::document::{CheckinList, EventInfo};
use client_core::event_model::rules::{Answer, Direction, ListRules};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
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
    times.sort();
    repeat.sort();
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
            "search_us": search.as_micros(),
            "index_rebuild_ms": rebuild.as_millis(),
            "reopen_ms": reopen.as_millis(),
            "search_hits": hits.len(),
            "counts": core.counts(event, Some("main")).expect("counts"),
        })
    );
}
