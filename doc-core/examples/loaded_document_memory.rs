//! Why a replica does not load a whole document in place of its own copy
//! (BENCHMARKS.md, "A whole document loaded instead of merged").
//!
//! automerge 0.12 keeps each column of a document it loaded, or built in one
//! `apply_changes` call on an empty document, in one buffer (hexane's
//! `RawColumn`). Changes applied afterwards that insert in the middle of
//! those columns split the buffers, and the pieces keep far more memory than
//! the same document grown change by change holds (a reading of hexane
//! 1.0.0-alpha.5's `splice_slab`: the part before a split keeps the whole
//! buffer's capacity). This prints resident memory and time while 20
//! writers' batches of scans are applied to an event-shaped document
//! (records in 256 bucket maps, as `event-model` lays them out) held four
//! ways: as built by its writers, loaded from its save, rebuilt from its
//! changes in one call, and loaded then laid out again after its first
//! changes (`sync_protocol::doc_layout`, what client and server do).
//!
//! `cargo run --release -p doc-core --example loaded_document_memory -- [attendees] [scans already in]`

#![allow(
    clippy::unwrap_used,
    reason = "a measuring tool: a failed step ends the run, whose figures would mean nothing"
)]

use std::time::Instant;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, Automerge, Change, ObjId, ObjType, ROOT};
use sync_protocol::doc_layout;

const BUCKETS: u64 = 256;
const WRITERS: u64 = 20;
const CHANGES_PER_WRITER: u64 = 10;
const SCANS_PER_CHANGE: u64 = 200;

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<u64>().expect("a number"));
    let attendees = args.next().unwrap_or(30_000);
    let scans_in = args.next().unwrap_or(40_000);

    let mut base = AutoCommit::new();
    let attendee_map = base.put_object(ROOT, "attendees", ObjType::Map).unwrap();
    let scan_map = base.put_object(ROOT, "scans", ObjType::Map).unwrap();
    let mut attendee_buckets = Vec::new();
    let mut scan_buckets = Vec::new();
    for b in 0..BUCKETS {
        let key = format!("{b:02x}");
        attendee_buckets.push(base.put_object(&attendee_map, &key, ObjType::Map).unwrap());
        scan_buckets.push(base.put_object(&scan_map, &key, ObjType::Map).unwrap());
    }
    for i in 0..attendees {
        let record = format!(r#"{{"id":"a{i:08}","name":"Guest {i}","code":"T{i:010}"}}"#);
        base.put(&attendee_buckets[bucket(i)], format!("a{i:08}"), record)
            .unwrap();
    }
    base.commit();
    let already = scans(&mut base, &scan_buckets, 0, scans_in);
    let mut built = base.document().clone();
    built.apply_changes(already).unwrap();
    let saved = built.save();
    let arriving = scans(
        &mut base,
        &scan_buckets,
        1,
        WRITERS * CHANGES_PER_WRITER * SCANS_PER_CHANGE,
    );
    let started = Instant::now();
    let loaded = Automerge::load(&saved).unwrap();
    let load_s = started.elapsed().as_secs_f64();
    // The alternative to a load: every change applied to a new document.
    let started = Instant::now();
    let mut rebuilt = Automerge::new();
    rebuilt.apply_changes(loaded.get_changes(&[])).unwrap();
    let rebuild_s = started.elapsed().as_secs_f64();
    println!(
        "document: {attendees} attendees, {scans_in} scans, {} bytes saved; applying {} changes of {SCANS_PER_CHANGE} scans",
        saved.len(),
        arriving.len()
    );
    println!("load {load_s:.2} s; rebuilt from its changes instead {rebuild_s:.2} s");
    let relaid = Automerge::load(&saved).unwrap();
    for (how, doc, layout) in [
        ("built", built, None),
        ("loaded", loaded, None),
        ("rebuilt", rebuilt, None),
        ("relaid", relaid, Some(doc_layout::Layout::Loaded)),
    ] {
        apply_and_report(how, doc, layout, &arriving);
    }
}

fn bucket(i: u64) -> usize {
    (i.wrapping_mul(2_654_435_761) % BUCKETS) as usize
}

/// `total` scans by `WRITERS` writers, each writer's in changes of
/// `SCANS_PER_CHANGE`, all made beside one another on `base`.
fn scans(base: &mut AutoCommit, buckets: &[ObjId], round: u64, total: u64) -> Vec<Change> {
    let per_writer = total.div_ceil(WRITERS);
    let mut changes = Vec::new();
    for writer in 0..WRITERS {
        let mut replica = base.fork();
        for n in 0..per_writer {
            let i = round * 10_000_000 + writer * 100_000 + n;
            let record = format!(
                r#"{{"id":"s{i}","attendee":"a{:08}","at":{i}}}"#,
                i % 30_000
            );
            replica
                .put(&buckets[bucket(i)], format!("s{i:012}"), record)
                .unwrap();
            if (n + 1) % SCANS_PER_CHANGE == 0 {
                replica.commit();
            }
        }
        replica.commit();
        changes.extend(replica.get_changes(&base.get_heads()));
    }
    changes
}

fn apply_and_report(
    how: &str,
    mut doc: Automerge,
    mut layout: Option<doc_layout::Layout>,
    changes: &[Change],
) {
    let start_rss = resident_mib();
    let started = Instant::now();
    for batch in changes.chunks(CHANGES_PER_WRITER as usize) {
        doc.apply_changes(batch.to_vec()).unwrap();
        if let Some(layout) = &mut layout {
            layout.changed(&mut doc, false);
        }
    }
    let elapsed = started.elapsed();
    // Freed memory handed back first: what is left is held by the document.
    // SAFETY: malloc_trim only releases free heap pages.
    unsafe { libc::malloc_trim(0) };
    println!(
        "{how:>7}: resident {start_rss:.0} -> {:.0} MiB, applied in {:.2} s",
        resident_mib(),
        elapsed.as_secs_f64()
    );
}

fn resident_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}
