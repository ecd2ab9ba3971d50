//! A peer's sync message with the changes it lacks picked from the recent
//! history instead of automerge's walks.
//!
//! With ten writers on a document every round sends each writer the others'
//! new changes, and each writer is in a state of its own, so no message is
//! shared. automerge's `generate_sync_message` finds a writer's changes
//! from the writer's last sync: a vector clock over the change graph, hash
//! maps of every change since, a bloom filter test each, then the changes'
//! bytes rebuilt from the document's operations. That was 40 % of the
//! server's CPU in `sync-bench`'s `load`. When the writer's last sync is a
//! recent version of the document, [`RecentHistory::to_send`] answers the
//! same question from the rounds since, and the changes' bytes are the ones
//! that arrived. automerge still builds the rest of the message (heads,
//! need, our bloom filter, flags, the state's bookkeeping) with the peer's
//! have and need hidden, as `whole_document` does for a whole document; the
//! message and the state after it are what automerge would have produced
//! (checked against automerge by this crate's tests), but for the order of
//! the changes inside the message.

use automerge::sync;
use automerge::{Automerge, ChangeHash};

use crate::recent_history::RecentHistory;
use crate::whole_document::{generate_without_changes, supports_v2};

/// automerge's message for `state` (`Some(None)` where automerge would say
/// nothing), or `None` when the history cannot tell, before anything
/// changed: then ask automerge.
pub(crate) fn generate(
    doc: &Automerge,
    history: &RecentHistory,
    state: &mut sync::State,
) -> Option<Option<sync::Message>> {
    // automerge's checks before it picks changes, in its order: a
    // read-only peer gets none, a last sync it does not know a reset, a
    // peer without heads the whole document; v1 peers, a peer that needs
    // changes and one lacking a third of the document (the whole document
    // again) are left to it as well.
    if state.is_peer_read_only()
        || !supports_v2(state)
        || state.their_heads.as_ref().is_none_or(Vec::is_empty)
        || state
            .their_need
            .as_ref()
            .is_none_or(|need| !need.is_empty())
    {
        return None;
    }
    let heads = doc.get_heads();
    // A last sync that is a kept version is known to the document.
    let to_send = history.to_send(state.their_have.as_deref()?, &heads)?;
    let unsent: Vec<(ChangeHash, &[u8])> = to_send
        .into_iter()
        .filter(|(hash, _)| !state.sent_hashes.contains(hash))
        .collect();
    if unsent.len() > history.changes_kept() / 3 {
        return None;
    }
    let Some(mut message) = generate_without_changes(doc, state) else {
        // With nothing to send, automerge's own answer is this one. With
        // changes it may speak where the empty message would not (a peer
        // at our heads that it has answered): it decides, from the state
        // as it was (a `None` leaves it untouched).
        return unsent.is_empty().then_some(None);
    };
    if !unsent.is_empty() {
        let mut bytes = Vec::with_capacity(unsent.iter().map(|(_, b)| b.len()).sum());
        for (_, change) in &unsent {
            bytes.extend_from_slice(change);
        }
        message.changes = vec![bytes].into();
        state
            .sent_hashes
            .extend(unsent.iter().map(|(hash, _)| *hash));
    }
    Some(Some(message))
}

#[cfg(test)]
mod tests {
    use automerge::sync::{BloomFilter, Capability, Have};
    use automerge::transaction::CommitOptions;
    use automerge::transaction::Transactable;
    use automerge::{ActorId, Change, ROOT};

    use super::*;
    use crate::recent_history::Arrived;

    fn write(doc: &mut Automerge, key: &str, value: i64) -> Change {
        let mut tx = doc.transaction();
        tx.put(ROOT, key, value).unwrap();
        // A fixed time (and, below, a fixed actor): the change hashes, and
        // so a bloom filter's false positives among them, are the same
        // every run. With random ones, about one run in fifty had the
        // peer's filter also claim a change the test expects sent.
        tx.commit_with(CommitOptions::default().with_time(0));
        doc.get_last_local_change().unwrap()
    }

    /// A document whose changes hash the same every run (see `write`).
    fn document() -> Automerge {
        Automerge::new().with_actor(ActorId::from(&[7_u8; 16][..]))
    }

    /// A peer whose last sync was `last_sync`, at `heads`, holding what
    /// `bloom` says, needing nothing.
    fn peer(
        last_sync: Vec<ChangeHash>,
        heads: Vec<ChangeHash>,
        bloom: &[ChangeHash],
    ) -> sync::State {
        let mut state = sync::State::new();
        state.shared_heads = last_sync.clone();
        state.their_heads = Some(heads);
        state.their_need = Some(Vec::new());
        state.their_have = Some(vec![Have {
            last_sync,
            bloom: BloomFilter::from_hashes(bloom.iter()),
        }]);
        state.their_capabilities = Some(vec![Capability::MessageV2, Capability::SyncReset]);
        state
    }

    #[test]
    fn a_change_whose_dependency_is_sent_is_sent_too_even_where_the_bloom_filter_claims_it() {
        let mut doc = document();
        write(&mut doc, "seed", 0);
        let mut history = RecentHistory::starting_at(&doc);
        // Enough before the peer's last sync that what it lacks is less
        // than a third of the document (else automerge sends it whole).
        for n in 0..30 {
            let change = write(&mut doc, "early", n);
            history.applied(&doc, [Arrived::of(&change)]);
        }
        history.end_round(&doc, doc.get_heads());
        let version = doc.get_heads();
        let mut changes = Vec::new();
        for n in 0..6 {
            let change = write(&mut doc, "n", n);
            history.applied(&doc, [Arrived::of(&change)]);
            changes.push(change.hash());
        }
        history.end_round(&doc, doc.get_heads());
        // The peer holds the first change and, falsely, the fourth, whose
        // dependency (the third) it lacks: automerge sends the third and
        // everything after it.
        let before = peer(version.clone(), version, &[changes[0], changes[3]]);
        let mut state = before.clone();
        let message = generate(&doc, &history, &mut state)
            .expect("the history can tell")
            .expect("changes are due");
        let mut carried = crate::carried_changes(&message.clone().encode());
        carried.sort();
        let mut expected = changes[1..].to_vec();
        expected.sort();
        assert_eq!(carried, expected);
        crate::tests::assert_as_automerge_would(&doc, before, &state, Some(&message));
    }

    #[test]
    fn a_last_sync_that_is_no_recent_version_or_changes_without_their_bytes_go_to_automerge() {
        let mut doc = document();
        write(&mut doc, "seed", 0);
        let mut history = RecentHistory::starting_at(&doc);
        let version = doc.get_heads();
        let first = write(&mut doc, "n", 1);
        history.applied(&doc, [Arrived::of(&first)]);
        history.end_round(&doc, doc.get_heads());
        // The peer's last sync is a change, not a version of the document.
        let mut writer = doc.fork();
        let own = write(&mut writer, "w", 1);
        let mut state = peer(vec![own.hash()], vec![own.hash()], &[]);
        assert!(generate(&doc, &history, &mut state).is_none());
        // A change the history learned of from automerge has no bytes here.
        let unseen = write(&mut doc, "n", 2);
        history.lost_track();
        history.end_round(&doc, doc.get_heads());
        let mut state = peer(version, vec![first.hash()], &[]);
        let untouched = state.clone();
        assert!(generate(&doc, &history, &mut state).is_none());
        assert_eq!(state, untouched);
        // A peer that needs a change: automerge.
        let mut state = peer(doc.get_heads(), doc.get_heads(), &[]);
        state.their_need = Some(vec![unseen.hash()]);
        assert!(generate(&doc, &history, &mut state).is_none());
    }
}
