//! A loaded document that takes in changes holds about what the same
//! document grown change by change holds, once `doc_layout` has laid it out
//! again; loaded plainly it holds several times that (automerge 0.12's
//! layout of a load, see `sync_protocol::doc_layout`; here, with 4,000
//! records and 200 arriving: about 3x, where an event of 30,000 attendees
//! reaches 20x). Memory is counted by
//! a global allocator that tracks live heap bytes, so the figures do not
//! depend on the machine. One test in this binary: nothing else allocates
//! while it measures.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed step fails the test it serves"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use automerge::transaction::Transactable;
use automerge::{AutoCommit, Automerge, Change, ObjId, ObjType, ROOT};
use sync_protocol::doc_layout;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; the
// counter only records the sizes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is the system's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: the caller's contract for `realloc` is the system's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const BUCKETS: usize = 16;

/// Heap bytes `make` leaves allocated (what the value it returns holds).
fn held_by<T>(make: impl FnOnce() -> T) -> (T, isize) {
    let before = LIVE.load(Ordering::Relaxed);
    let value = make();
    (value, LIVE.load(Ordering::Relaxed) - before)
}

/// `count` records written by a fork of `base` into its buckets, in changes
/// of 20 (as a tablet's scans arrive).
fn records(base: &mut AutoCommit, buckets: &[ObjId], prefix: &str, count: usize) -> Vec<Change> {
    let mut writer = base.fork();
    for i in 0..count {
        let key = format!("{prefix}{i:06}");
        writer
            .put(
                &buckets[(i * 7) % BUCKETS],
                &key,
                format!(r#"{{"id":"{key}","at":{i}}}"#),
            )
            .unwrap();
        if (i + 1) % 20 == 0 {
            writer.commit();
        }
    }
    writer.commit();
    writer.get_changes(&base.get_heads())
}

#[test]
fn a_loaded_document_laid_out_again_holds_what_a_grown_one_does() {
    let mut base = AutoCommit::new();
    let buckets: Vec<ObjId> = (0..BUCKETS)
        .map(|b| {
            base.put_object(ROOT, format!("{b:02x}"), ObjType::Map)
                .unwrap()
        })
        .collect();
    base.commit();
    let already = records(&mut base, &buckets, "a", 4_000);
    let arriving = records(&mut base, &buckets, "s", 200);
    let start = base.document().clone();
    let grow = || {
        let mut doc = start.clone();
        for change in &already {
            doc.apply_changes([change.clone()]).unwrap();
        }
        doc
    };
    let saved = grow().save();
    drop(base);

    let apply = |doc: &mut Automerge| {
        for change in &arriving {
            doc.apply_changes([change.clone()]).unwrap();
        }
    };
    let (grown, grown_bytes) = held_by(|| {
        let mut doc = grow();
        apply(&mut doc);
        doc
    });
    let (plain, plain_bytes) = held_by(|| {
        let mut doc = Automerge::load(&saved).unwrap();
        apply(&mut doc);
        doc
    });
    let (laid_out, laid_out_bytes) = held_by(|| {
        let (mut doc, mut layout) = doc_layout::load(Some(&saved), []).unwrap();
        assert_eq!(layout, doc_layout::Layout::Loaded);
        for change in &arriving {
            let before = doc.get_heads();
            doc.apply_changes([change.clone()]).unwrap();
            if doc.get_heads() != before {
                layout.changed(&mut doc, before.is_empty());
            }
        }
        assert_eq!(layout, doc_layout::Layout::Settled);
        doc
    });
    assert_eq!(laid_out.get_heads(), grown.get_heads());
    assert_eq!(plain.get_heads(), grown.get_heads());
    eprintln!(
        "held: grown {grown_bytes} B, loaded {plain_bytes} B, laid out again {laid_out_bytes} B"
    );
    assert!(
        plain_bytes > 2 * grown_bytes,
        "automerge now lays a loaded document out as a grown one ({plain_bytes} vs {grown_bytes} bytes): doc_layout can go"
    );
    assert!(
        2 * laid_out_bytes < 3 * grown_bytes,
        "laid out again it holds {laid_out_bytes} bytes, grown {grown_bytes}"
    );
}
