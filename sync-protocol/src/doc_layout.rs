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
//! the first changes that follow a load. Nothing here is needed once
//! automerge lays a loaded document out as it lays out one it grew.

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
