//! The whole document as automerge sends it to a fresh peer, saved once per
//! set of heads.
//!
//! automerge 0.12 answers a fresh peer (one that holds nothing) with the
//! whole document: `generate_sync_message` calls `Automerge::save` for that
//! peer. Tablets downloading an event at the start of a day, or readers
//! joining a stadium, each cost a save of the same multi-megabyte document.
//! Here that case is recognised first, with automerge's own rules
//! ([`WholeDocument::due`]); automerge then builds the rest of the message
//! (heads, need, have, flags, the state's bookkeeping) with the changes left
//! out, and the saved bytes go in. The message and the state after it are
//! what automerge would have produced, checked against automerge's own
//! output by this module's tests. Every other case goes to automerge
//! unchanged.
//!
//! Peers lacking more than a third of the changes get a whole document from
//! automerge too. The first such peer at a set of heads still gets it from
//! automerge, and its save is kept ([`WholeDocument::keep_if_whole`]); every
//! other one at those heads (a reconnect's round sends one to each tablet
//! that fell behind: 13-21 in one round) shares it, decided by automerge's
//! `get_hashes_to_send` rebuilt from its public API
//! ([`WholeDocument::lacks_a_third_of_saved`]). Deciding it for the first
//! peer too was measured on 2026-12-04 and made the tablets slower (their
//! answers went out before the other uploads landed); see BENCHMARKS.md.

use std::collections::{HashMap, HashSet};

use automerge::sync::{self, Capability, SyncDoc};
use automerge::{Automerge, ChangeHash};

/// The whole document saved once, for every peer that gets it at the same
/// heads.
#[derive(Default)]
pub(crate) struct WholeDocument {
    saved: Option<Saved>,
    /// Whole documents sent, and how many of them needed a save.
    pub(crate) sent: u64,
    pub(crate) saves: u64,
}

/// One save, with what automerge adds to a peer's `sent_hashes` when it
/// sends it: every change hash of the document.
struct Saved {
    heads: Vec<ChangeHash>,
    bytes: Vec<u8>,
    hashes: Vec<ChangeHash>,
}

impl WholeDocument {
    /// automerge's message for `state`; a whole document is saved once for
    /// every peer that gets one at the same heads.
    pub(crate) fn generate(
        &mut self,
        doc: &Automerge,
        state: &mut sync::State,
    ) -> Option<sync::Message> {
        if !self.due(doc, state) && !self.lacks_a_third_of_saved(doc, state) {
            let message = doc.generate_sync_message(state);
            if let Some(message) = &message {
                self.keep_if_whole(doc, message, state);
            }
            return message;
        }
        let Some(mut message) = generate_without_changes(doc, state) else {
            // automerge stays silent on an empty message in cases where it
            // would send a document (nothing to announce, nothing in
            // flight): leave those to automerge, which leaves the state as
            // it was when it returns nothing.
            return doc.generate_sync_message(state);
        };
        let heads = doc.get_heads();
        let saved = match self.saved.take() {
            Some(saved) if saved.heads == heads => saved,
            _ => {
                self.saves += 1;
                Saved {
                    heads,
                    bytes: doc.save(),
                    hashes: doc
                        .get_changes_meta(&[])
                        .into_iter()
                        .map(|c| c.hash)
                        .collect(),
                }
            }
        };
        self.sent += 1;
        message.changes = vec![saved.bytes.clone()].into();
        state.sent_hashes.extend(saved.hashes.iter().copied());
        self.saved = Some(saved);
        Some(message)
    }

    /// Keeps the document automerge saved for `message`, if it is a whole
    /// document, for the other peers lacking a third of it at these heads
    /// ([`Self::lacks_a_third_of_saved`]). automerge added every change
    /// hash of the document to the state's `sent_hashes` (which held only
    /// hashes of the document before), so they are those.
    fn keep_if_whole(&mut self, doc: &Automerge, message: &sync::Message, state: &sync::State) {
        let mut chunks = message.changes.iter();
        let (Some(chunk), None) = (chunks.next(), chunks.next()) else {
            return;
        };
        if chunk.get(8) != Some(&super::CHUNK_DOCUMENT) {
            return;
        }
        self.sent += 1;
        self.saves += 1;
        let heads = doc.get_heads();
        if self
            .saved
            .as_ref()
            .is_some_and(|saved| saved.heads == heads)
        {
            return;
        }
        self.saved = Some(Saved {
            heads,
            bytes: chunk.to_vec(),
            hashes: state.sent_hashes.iter().copied().collect(),
        });
    }

    /// Whether automerge would send `state`'s peer the whole document
    /// because it lacks more than a third of the changes, asked only when
    /// a whole document is saved at these heads already (a reconnect's
    /// round sends one to every tablet that fell behind: they share it).
    /// automerge's `get_hashes_to_send`, rebuilt from its public API: the
    /// changes since the peer's last sync that none of its bloom filters
    /// holds, their dependents among those, and what it needs, less what
    /// was sent it already; and automerge's checks before that, in order
    /// (read-only peer, unknown last sync, a fresh peer's `send_doc`).
    fn lacks_a_third_of_saved(&self, doc: &Automerge, state: &sync::State) -> bool {
        let Some(saved) = &self.saved else {
            return false;
        };
        if saved.heads != doc.get_heads() || state.is_peer_read_only() {
            return false;
        }
        let (Some(have), Some(need)) = (&state.their_have, &state.their_need) else {
            return false;
        };
        if !supports_v2(state) || state.their_heads.as_deref() == Some(&[]) {
            return false;
        }
        let known = |hash: &ChangeHash| doc.get_change_meta_by_hash(hash).is_some();
        if have.first().is_some_and(|h| !h.last_sync.iter().all(known)) {
            return false;
        }
        let need: Vec<ChangeHash> = need.iter().filter(|h| known(h)).copied().collect();
        let to_send: Vec<ChangeHash> = if have.is_empty() {
            need
        } else {
            let last_sync: Vec<ChangeHash> = have
                .iter()
                .flat_map(|h| h.last_sync.iter().copied())
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            let since = doc.get_changes_meta(&last_sync);
            let mut dependents: HashMap<ChangeHash, Vec<ChangeHash>> = HashMap::new();
            let mut sending: HashSet<ChangeHash> = HashSet::new();
            for change in &since {
                for dep in &change.deps {
                    dependents.entry(*dep).or_default().push(change.hash);
                }
                if have.iter().all(|h| !h.bloom.contains_hash(&change.hash)) {
                    sending.insert(change.hash);
                }
            }
            let mut stack: Vec<ChangeHash> = sending.iter().copied().collect();
            while let Some(hash) = stack.pop() {
                for dependent in dependents.get(&hash).into_iter().flatten() {
                    if sending.insert(*dependent) {
                        stack.push(*dependent);
                    }
                }
            }
            let mut to_send: Vec<ChangeHash> = need
                .into_iter()
                .filter(|hash| !sending.contains(hash))
                .collect();
            to_send.extend(sending);
            to_send
        };
        let unsent = to_send
            .iter()
            .filter(|hash| !state.sent_hashes.contains(hash))
            .count();
        unsent > saved.hashes.len() / 3
    }

    /// Drops the saved bytes (the heads moved: they are stale).
    pub(crate) fn forget_saved(&mut self) {
        self.saved = None;
    }

    /// A full snapshot of `doc`: the saved one when the heads have not moved
    /// since. A save made here is not kept (a compaction's snapshot would
    /// otherwise stay in memory beside the document until the next write).
    pub(crate) fn save(&self, doc: &Automerge) -> Vec<u8> {
        match &self.saved {
            Some(saved) if saved.heads == doc.get_heads() => saved.bytes.clone(),
            _ => doc.save(),
        }
    }

    /// Whether automerge 0.12's `generate_sync_message` would send `state`'s
    /// peer the whole document because it is fresh (automerge's rules, in
    /// its order: no changes for a read-only peer, a reset for a last sync
    /// it does not know, `send_doc` for a v2 peer whose heads are empty).
    fn due(&self, doc: &Automerge, state: &sync::State) -> bool {
        if state.is_peer_read_only()
            || !supports_v2(state)
            || state.their_heads.as_deref() != Some(&[])
            || state.their_need.is_none()
            || doc.get_heads().is_empty()
        {
            return false;
        }
        let Some(have) = &state.their_have else {
            return false;
        };
        have.first().is_none_or(|h| {
            h.last_sync
                .iter()
                .all(|hash| doc.get_change_meta_by_hash(hash).is_some())
        })
    }
}

/// Whether `state`'s peer takes v2 messages (changes as one chunk, or a
/// whole document), as automerge decides it from the capabilities it heard.
pub(crate) fn supports_v2(state: &sync::State) -> bool {
    state
        .their_capabilities
        .as_ref()
        .is_some_and(|caps| caps.contains(&Capability::MessageV2))
}

/// automerge's message for `state` built with no changes: with what the
/// peer has and needs hidden, automerge does the rest of its bookkeeping
/// (heads, need, our bloom filter, flags, the state after it) and the
/// caller puts in the changes it picked itself, adding them to the state's
/// `sent_hashes`. `None` where automerge would say nothing to an empty
/// message (the state is then as it was).
pub(crate) fn generate_without_changes(
    doc: &Automerge,
    state: &mut sync::State,
) -> Option<sync::Message> {
    let their_have = state.their_have.take();
    let their_need = state.their_need.take();
    let message = doc.generate_sync_message(state);
    state.their_have = their_have;
    state.their_need = their_need;
    message
}

#[cfg(test)]
mod tests {
    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ROOT};

    use super::*;

    /// A document of `n` changes, one key each.
    fn document(n: usize) -> AutoCommit {
        let mut doc = AutoCommit::new();
        for i in 0..n {
            doc.put(ROOT, format!("k{i}"), i as i64).unwrap();
            doc.commit();
        }
        doc
    }

    /// The server's state for a peer holding `peer` after the peer's first
    /// message (heads, have, need; no changes yet).
    fn state_after_hello(server: &mut AutoCommit, peer: &mut AutoCommit) -> sync::State {
        let hello = peer
            .sync()
            .generate_sync_message(&mut sync::State::new())
            .unwrap();
        let mut state = sync::State::new();
        server
            .sync()
            .receive_sync_message(&mut state, hello)
            .unwrap();
        state
    }

    /// Our message and state against automerge's own for the same state.
    fn same_as_automerge(server: &mut AutoCommit, state: &sync::State, whole: &mut WholeDocument) {
        let mut theirs = state.clone();
        let expected = server.document().generate_sync_message(&mut theirs);
        let mut ours = state.clone();
        let got = whole.generate(server.document(), &mut ours);
        assert_eq!(got.map(|m| m.encode()), expected.map(|m| m.encode()));
        assert_eq!(ours, theirs);
    }

    #[test]
    fn fresh_peers_get_automerges_message_with_one_save_per_heads() {
        let mut server = document(30);
        let mut whole = WholeDocument::default();
        let mut peers = vec![AutoCommit::new(), AutoCommit::new(), AutoCommit::new()];
        for peer in &mut peers {
            let state = state_after_hello(&mut server, peer);
            assert!(
                whole.due(server.document(), &state),
                "automerge sends this peer the document"
            );
            same_as_automerge(&mut server, &state, &mut whole);
        }
        assert_eq!((whole.sent, whole.saves), (3, 1));
        // New heads, a new save; compaction at those heads takes it as is.
        server.put(ROOT, "later", 1).unwrap();
        server.commit();
        whole.forget_saved();
        let state = state_after_hello(&mut server, &mut AutoCommit::new());
        same_as_automerge(&mut server, &state, &mut whole);
        assert_eq!((whole.sent, whole.saves), (4, 2));
        assert_eq!(whole.save(server.document()), server.save());
        assert_eq!(whole.saves, 2);
    }

    #[test]
    fn every_other_peer_is_left_to_automerge() {
        let mut server = document(30);
        let mut whole = WholeDocument::default();
        let hashes: Vec<ChangeHash> = server.get_changes(&[]).iter().map(|c| c.hash()).collect();
        // Lacking 10 of 30 (changes), and 21 of 30 (automerge's whole
        // document: its own save).
        for held in [20, 9] {
            let mut peer = server.fork_at(&[hashes[held - 1]]).unwrap();
            let state = state_after_hello(&mut server, &mut peer);
            assert!(!whole.due(server.document(), &state));
            same_as_automerge(&mut server, &state, &mut whole);
        }
        let fresh = state_after_hello(&mut server, &mut AutoCommit::new());
        // A fresh peer that does not speak v2 gets changes, never a document.
        let mut v1 = fresh.clone();
        v1.their_capabilities = Some(vec![Capability::MessageV1]);
        assert!(!whole.due(server.document(), &v1));
        same_as_automerge(&mut server, &v1, &mut whole);
        // A read-only peer gets no changes at all.
        let mut read_only = fresh.clone();
        read_only.peer_read_only = true;
        assert!(!whole.due(server.document(), &read_only));
        same_as_automerge(&mut server, &read_only, &mut whole);
        // A peer whose last sync is unknown here is sent a reset.
        let mut reset = fresh.clone();
        let stranger = document(1).get_heads();
        reset.their_have = Some(vec![sync::Have {
            last_sync: stranger,
            ..Default::default()
        }]);
        assert!(!whole.due(server.document(), &reset));
        same_as_automerge(&mut server, &reset, &mut whole);
        // Only the peer lacking 21 of 30 got a document: automerge's save.
        assert_eq!((whole.sent, whole.saves), (1, 1));
    }

    #[test]
    fn peers_lacking_a_third_at_the_same_heads_share_automerges_save() {
        let mut server = document(30);
        let hashes: Vec<ChangeHash> = server.get_changes(&[]).iter().map(|c| c.hash()).collect();
        let mut whole = WholeDocument::default();
        // Tablets back from offline: each holds part of the document and
        // changes of its own.
        let mut tablets: Vec<AutoCommit> = [5, 9, 12, 9, 25]
            .iter()
            .enumerate()
            .map(|(n, held)| {
                let mut tablet = server.fork_at(&[hashes[held - 1]]).unwrap();
                for i in 0..=n {
                    tablet.put(ROOT, format!("t{n}-{i}"), 1).unwrap();
                    tablet.commit();
                }
                tablet
            })
            .collect();
        let states: Vec<sync::State> = tablets
            .iter_mut()
            .map(|tablet| state_after_hello(&mut server, tablet))
            .collect();
        // The first gets automerge's own message, and its save is kept.
        assert!(!whole.lacks_a_third_of_saved(server.document(), &states[0]));
        same_as_automerge(&mut server, &states[0], &mut whole);
        assert_eq!((whole.sent, whole.saves), (1, 1));
        // The next ones lacking a third take that save; the one lacking
        // 5 of 30 gets changes from automerge.
        let lacking: Vec<bool> = states
            .iter()
            .map(|state| whole.lacks_a_third_of_saved(server.document(), state))
            .collect();
        assert_eq!(lacking, [true, true, true, true, false]);
        for state in &states[1..] {
            same_as_automerge(&mut server, state, &mut whole);
        }
        assert_eq!((whole.sent, whole.saves), (4, 1));
        // Once the heads move, the save is not used.
        server.put(ROOT, "later", 1).unwrap();
        server.commit();
        assert!(!whole.lacks_a_third_of_saved(server.document(), &states[1]));
    }

    #[test]
    fn every_message_follows_automerge_through_a_sync() {
        // Whatever the two sides hold, each message this side generates
        // equals automerge's, round after round until both are in sync.
        for (server_changes, peer_from, peer_own) in
            [(12, 0, 0), (12, 3, 2), (12, 9, 5), (40, 30, 1), (3, 1, 1)]
        {
            let mut server = document(server_changes);
            let hashes: Vec<ChangeHash> =
                server.get_changes(&[]).iter().map(|c| c.hash()).collect();
            let mut peer = if peer_from == 0 {
                AutoCommit::new()
            } else {
                server.fork_at(&[hashes[peer_from - 1]]).unwrap()
            };
            for i in 0..peer_own {
                peer.put(ROOT, format!("p{i}"), 1).unwrap();
                peer.commit();
            }
            let mut whole = WholeDocument::default();
            let (mut ours, mut theirs) = (sync::State::new(), sync::State::new());
            for _ in 0..10 {
                let Some(hello) = peer.sync().generate_sync_message(&mut theirs) else {
                    break;
                };
                server
                    .sync()
                    .receive_sync_message(&mut ours, hello)
                    .unwrap();
                same_as_automerge(&mut server, &ours, &mut whole);
                let Some(reply) = whole.generate(server.document(), &mut ours) else {
                    continue;
                };
                peer.sync()
                    .receive_sync_message(&mut theirs, reply)
                    .unwrap();
            }
            let mut expected: Vec<_> = server.get_changes(&[]).iter().map(|c| c.hash()).collect();
            expected.sort();
            let mut held: Vec<_> = peer
                .get_changes(&[])
                .iter()
                .map(|c| c.hash())
                .filter(|h| expected.contains(h))
                .collect();
            held.sort();
            assert_eq!(held, expected, "the peer holds every change of the server");
        }
    }
}
