//! What taking in one scan from another replica costs as an event fills
//! up: a replica holding `N` scans applies changes of one scan each (what
//! every tablet and the server do for every scan made elsewhere while
//! online), in schema 2's bucketed layout and schema 1's flat maps.
//!
//! `cargo bench -p event-model --bench apply` (in `cargo test` mode, small
//! sizes only, so the bench cannot rot).

#![allow(
    clippy::unwrap_used,
    reason = "a measuring tool: a failed step ends the run, whose figures would mean nothing"
)]

use std::time::{Duration, Instant};

use automerge::{Automerge, Change};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use event_model::document::{self, EventInfo};
use event_model::hlc::Hlc;
use event_model::rules::{Direction, Scan};

/// Spread like the UUIDs real scans carry (fixed, so runs compare).
fn scan_id(n: u64) -> String {
    let mut x = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    format!("{:016x}-{n}", x ^ (x >> 31))
}

fn scan(n: u64) -> Scan {
    Scan {
        id: scan_id(n),
        attendee_id: format!("a{n}"),
        list_id: "main".into(),
        direction: Direction::Entry,
        device_id: "t1".into(),
        staff_id: "s".into(),
        hlc: Hlc {
            wall_ms: n as i64,
            counter: 0,
            node: "t1".into(),
        },
        wall_ms: n as i64,
        by_signature: false,
        payment_taken: false,
    }
}

/// An event holding `scans` scans, in the layout `flat` names.
fn event(scans: u64, flat: bool) -> Automerge {
    let mut doc = Automerge::new();
    let mut tx = doc.transaction();
    let info = EventInfo::new("e", "Bench");
    if flat {
        document::init_schema_1(&mut tx, &info).unwrap();
    } else {
        document::init(&mut tx, &info).unwrap();
    }
    for n in 0..scans {
        document::put_scan(&mut tx, &scan(n)).unwrap();
    }
    tx.commit();
    doc
}

/// `count` changes of one new scan each, made on a fork of `doc`.
fn one_scan_changes(doc: &Automerge, first: u64, count: u64) -> Vec<Change> {
    let mut other = doc.fork();
    (first..first + count)
        .map(|n| {
            let mut tx = other.transaction();
            document::put_scan(&mut tx, &scan(n)).unwrap();
            tx.commit();
            other.get_last_local_change().unwrap().clone()
        })
        .collect()
}

/// Changes applied to one copy of the event before a fresh copy is taken.
const ROUND: u64 = 100;

fn apply_one_scan(c: &mut Criterion) {
    let full = std::env::args().any(|a| a == "--bench");
    let sizes: &[u64] = if full {
        &[1_000, 30_000, 100_000]
    } else {
        &[200]
    };
    let mut group = c.benchmark_group("apply_one_scan_change");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for &held in sizes {
        for (layout, flat) in [("buckets", false), ("flat", true)] {
            let base = event(held, flat);
            // Applied in rounds to fresh copies of the event, so it holds
            // `held` scans (and at most ROUND more) whatever the count of
            // iterations criterion asks for.
            let changes = one_scan_changes(&base, 1 << 40, ROUND);
            group.bench_with_input(BenchmarkId::new(layout, held), &held, |b, _| {
                b.iter_custom(|iters| {
                    let mut spent = Duration::ZERO;
                    let mut left = iters;
                    while left > 0 {
                        let mut doc = base.fork();
                        let round = left.min(ROUND);
                        let started = Instant::now();
                        for change in &changes[..round as usize] {
                            doc.apply_changes([change.clone()]).unwrap();
                        }
                        spent += started.elapsed();
                        left -= round;
                    }
                    spent
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, apply_one_scan);
criterion_main!(benches);
