//! The check-in figures of a large event from one replica's index: the
//! report (arrivals per bucket and list, peak, device tallies with their
//! median gaps, doors, no-shows per ticket type) and the CSV export, as
//! percentiles over repeated runs. The event: ATTENDEES attendees of four
//! ticket types, SCANS scans over two doors by eight tablets spread over
//! six hours, with some exits and duplicates.
//!
//! `cargo bench -p client-core --bench analytics -- [ATTENDEES] [SCANS] [RUNS]`
//! (defaults 100000, 60000 and 30). Target: the report in <= 50 ms at
//! 100,000 attendees.

use std::time::{Duration, Instant};

use client_core::ClientCore;
use client_core::event_model::document::{self, CheckinList, EventInfo};
use client_core::event_model::hlc::Hlc;
use client_core::event_model::rules::{Direction, ListRules, Scan};

mod support;
use support::percentile;

fn main() {
    let args = support::numbers();
    let attendees = args.first().copied().unwrap_or(100_000);
    let scans = args.get(1).copied().unwrap_or(60_000);
    let runs = args.get(2).copied().unwrap_or(30).max(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let core = ClientCore::open(dir.path().join("desk.sqlite3")).expect("open store");
    let event = core
        .create_event(&EventInfo::new("bench", "Benchmark event"))
        .expect("create event");
    for list in ["main", "side"] {
        core.put_checkin_list(
            event,
            &CheckinList {
                id: list.into(),
                name: list.into(),
                rules: ListRules {
                    allow_entry_after_exit: true,
                    ..ListRules::default()
                },
            },
        )
        .expect("list");
    }
    let types = ["day", "weekend", "vip", "staff"];
    let mut csv = String::from("ticket_code,name,email,ticket_type\n");
    for i in 0..attendees {
        csv.push_str(&format!(
            "T{i:07},Guest Number {i},guest{i}@example.org,{}\n",
            types[i % types.len()]
        ));
    }
    core.import_attendees_csv(event, csv.as_bytes(), |_| true)
        .expect("import")
        .expect("not aborted");
    // Scans as eight tablets made them over six hours, written in one
    // change (the index judges them as it would arriving from a sync).
    let start_ms = 1_796_457_600_000; // 2026-12-05 08:00 UTC
    let span_ms = 6 * 3_600_000;
    let made = Instant::now();
    core.change(event, |tx| {
        for n in 0..scans {
            // Every fifth scan an exit of the previous one; every twentieth
            // a repeated entry (a duplicate).
            let attendee = match n % 20 {
                19 => (n - 1) % attendees,
                _ => n % attendees,
            };
            let at = start_ms + (n as i64 * span_ms) / scans.max(1) as i64;
            let device = format!("tablet-{}", n % 8);
            let scan = Scan {
                id: format!("scan-{n:07}"),
                attendee_id: format!("T{attendee:07}"),
                list_id: if n % 3 == 0 { "side" } else { "main" }.into(),
                direction: if n % 5 == 4 {
                    Direction::Exit
                } else {
                    Direction::Entry
                },
                device_id: device.clone(),
                staff_id: "staff".into(),
                hlc: Hlc {
                    wall_ms: at,
                    counter: 0,
                    node: device,
                },
                wall_ms: at,
                by_signature: false,
                payment_taken: false,
            };
            document::put_scan(tx, &scan)?;
        }
        Ok::<_, client_core::event_model::ModelError>(())
    })
    .expect("scans");
    println!(
        "{attendees} attendees, {scans} scans written and indexed in {:.1} s",
        made.elapsed().as_secs_f64()
    );

    let mut report_times = Vec::with_capacity(runs);
    let mut report = None;
    for _ in 0..runs {
        let started = Instant::now();
        let made = core
            .checkin_report(event, 15)
            .expect("report")
            .expect("bucket");
        report_times.push(started.elapsed());
        report = Some(made);
    }
    let report = report.expect("one run");
    let entries: u64 = report.lists.iter().map(|l| l.entries).sum();
    assert!(entries > 0 && report.devices.len() == 8, "{report:?}");
    let checked_in: u64 = report.ticket_types.iter().map(|t| t.checked_in).sum();
    assert_eq!(
        checked_in,
        core.counts(event, None).expect("counts").checked_in
    );
    let mut csv_times = Vec::with_capacity(runs.min(10));
    let mut csv_len = 0;
    for _ in 0..runs.min(10) {
        let started = Instant::now();
        csv_len = core.checkin_report_csv(event).expect("csv").len();
        csv_times.push(started.elapsed());
    }
    report_times.sort();
    csv_times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "checkin_report (15 min buckets, {} buckets, {} counted entries): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {runs} runs",
        report.arrivals.len(),
        entries,
        ms(percentile(&report_times, 0.5)),
        ms(percentile(&report_times, 0.99)),
        ms(*report_times.last().expect("runs")),
    );
    println!(
        "checkin_report_csv ({attendees} rows, {} KiB): p50 {:.1} ms, max {:.1} ms over {} runs",
        csv_len / 1024,
        ms(percentile(&csv_times, 0.5)),
        ms(*csv_times.last().expect("runs")),
        csv_times.len()
    );
}
