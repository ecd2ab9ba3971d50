//! Keeps a loaded document at its real size after changes arrive.
//!
//! automerge 0.12 (hexane 1.0.0-alpha.5, the newest in the registry) keeps
//! each column of a document it loaded, or built from nothing in one call
//! (a fresh replica taking in a whole document), in one buffer. The first
//! changes applied afterwards split those buffers, and the pieces keep far
//! more memory than they hold: a 30,000-attendee event with 40,000 scans
//! went from 24 MiB to about 500 MiB after its first ten changes, and a
//! replica holding several such events was killed for memory in the
//! reconnect bench (`doc-core/examples/loaded_document_memory.rs` shows it).
//! A copy made after those first changes has pieces of their real size,
//! and later changes keep it there (the same event: 24-32 MiB for 200 more
//! changes; the copy took 0.04 s). A copy made before any change does not
//! help: its buffers are still whole. So each document is copied once, after
//! the first changes that follow a load. The pieces later changes make
//! grow too, so a large batch is taken into a fresh copy
//! ([`before_large_batch`]). Nothing here is needed once automerge lays a
//! loaded document out as it lays out one it grew.

use automerge::{Automerge, AutomergeError};

/// Whether a document still has the whole-buffer layout of a load.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Grown change by change, or already copied: nothing to do.
    #[default]
    Settled,
    /// Loaded whole; the first changes applied to it are followed by a copy.
    Loaded,
}

impl Layout {
    /// To call after changes were applied to `doc` (its heads moved);
    /// `was_empty`: it held nothing before them, so they loaded it whole.
    pub fn changed(&mut self, doc: &mut Automerge, was_empty: bool) {
        match self {
            Layout::Loaded => {
                *doc = doc.clone();
                *self = Layout::Settled;
            }
            Layout::Settled if was_empty => *self = Layout::Loaded,
            Layout::Settled => {}
        }
    }
}

/// A sync message carrying more bytes of changes than this is taken into a
/// fresh copy of the document ([`before_large_batch`]).
pub const LARGE_BATCH_BYTES: usize = 256 * 1024;

/// To call before a sync message carrying `incoming` bytes of changes is
/// applied to `doc`. Above [`LARGE_BATCH_BYTES`] the document is copied
/// first, and whether it was is returned.
///
/// The pieces earlier changes split automerge's columns into keep buffers
/// far larger than they hold, and every insertion of a large batch moves
/// them again: in the reconnect bench the admin replica, online while 20
/// tablets' offline scans arrived, took 1-5.5 s of CPU for one message of
/// 2-5 MB of changes (and the bench process grew to 5-8 GB); with a copy
/// made before each such message, the largest took 0.1-0.5 s, and the
/// admin's whole reconnect 2.0-2.4 s instead of 3.4-17.9 s. The copy costs
/// 3-5 ms for a 30,000-attendee event with its scans. The server takes
/// tablets' uploads the same way (the reconnect's server CPU 2.2-2.5 s
/// against 2.4-4.7 s without, over three paired runs).
pub fn before_large_batch(doc: &mut Automerge, incoming: usize) -> bool {
    if incoming <= LARGE_BATCH_BYTES {
        return false;
    }
    *doc = doc.clone();
    true
}

/// A document from its saved snapshot and the chunks appended after it,
/// with its layout (copied after the first chunk, so the rest apply to the
/// pieces and the document never holds the split buffers' extra memory).
pub fn load<'a>(
    snapshot: Option<&[u8]>,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Result<(Automerge, Layout), AutomergeError> {
    let (mut doc, mut layout) = match snapshot {
        Some(bytes) => (Automerge::load(bytes)?, Layout::Loaded),
        None => (Automerge::new(), Layout::Settled),
    };
    for chunk in chunks {
        let before = doc.get_heads();
        doc.load_incremental(chunk)?;
        if doc.get_heads() != before {
            layout.changed(&mut doc, before.is_empty());
        }
    }
    Ok((doc, layout))
}

#[cfg(test)]
mod tests {
    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ROOT};

    use super::*;

    #[test]
    fn a_large_batch_is_taken_into_a_copy_that_holds_the_same_document() {
        let mut doc = AutoCommit::new();
        for i in 0..200 {
            doc.put(ROOT, format!("k{i}"), i).unwrap();
            doc.commit();
        }
        let mut live = doc.document().clone();
        let (heads, saved) = (live.get_heads(), live.save());
        assert!(!before_large_batch(&mut live, LARGE_BATCH_BYTES));
        assert!(before_large_batch(&mut live, LARGE_BATCH_BYTES + 1));
        assert_eq!(live.get_heads(), heads);
        assert_eq!(live.save(), saved);
        // The copy takes changes like the original.
        let mut other = doc.fork();
        other.put(ROOT, "after", 1).unwrap();
        other.commit();
        live.apply_changes(other.get_changes(&heads)).unwrap();
        assert_eq!(live.get_heads(), other.get_heads());
    }

    #[test]
    fn chunks_after_a_snapshot_leave_the_document_laid_out_again() {
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "a", 1).unwrap();
        let snapshot = doc.save();
        doc.put(ROOT, "b", 2).unwrap();
        let first = doc.save_incremental();
        doc.put(ROOT, "c", 3).unwrap();
        let second = doc.save_incremental();
        let (loaded, layout) = load(Some(&snapshot), [&first[..], &second[..]]).unwrap();
        assert_eq!(layout, Layout::Settled);
        assert_eq!(loaded.get_heads(), doc.get_heads());
        let (alone, layout) = load(Some(&snapshot), []).unwrap();
        assert_eq!(layout, Layout::Loaded);
        assert_eq!(alone.get_heads().len(), 1);
        // A whole document arriving in an empty one is a load too.
        let (_, layout) = load(None, [&snapshot[..]]).unwrap();
        assert_eq!(layout, Layout::Loaded);
        let (_, layout) = load(None, []).unwrap();
        assert_eq!(layout, Layout::Settled);
    }
}
