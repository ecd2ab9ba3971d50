//! The whole document as automerge sends it, saved once per set of heads.
//!
//! automerge 0.12 answers a fresh peer, or one lacking more than a third of
//! the changes, with the whole document: `generate_sync_message` calls
//! `Automerge::save` for that peer. When twenty tablets come back from an
//! outage at once, that was twenty saves of the same multi-megabyte event
//! (a quarter of the server's CPU in the reconnect's profile). Here the
//! decision automerge makes is taken first, with its own rules
//! ([`WholeDocument::due`]); when it is a whole document, automerge builds
//! the rest of the message (heads, need, have, flags, the state's
//! bookkeeping) with the changes left out, and the saved bytes go in. The
//! message and the state after it are what automerge would have produced,
//! checked against automerge's own output by this module's tests. Any case
//! these rules do not cover goes to automerge unchanged.

use std::collections::{BTreeSet, HashMap, HashSet};

use automerge::sync::{self, Capability, SyncDoc};
use automerge::{Automerge, ChangeHash};

/// The last whole document saved, and every change hash at those heads.
#[derive(Default)]
pub(crate) struct WholeDocument {
    /// Every change of the document at `hashes_at` (what automerge adds to
    /// a peer's `sent_hashes` with a whole document).
    hashes: Vec<ChangeHash>,
    hashes_at: Option<Vec<ChangeHash>>,
    saved: Option<(Vec<ChangeHash>, Vec<u8>)>,
    /// Whole documents sent, and how many of them needed a save.
    pub(crate) sent: u64,
    pub(crate) saves: u64,
}

impl WholeDocument {
    /// automerge's message for `state`; a whole document is saved once for
    /// every peer that gets one at the same heads.
    pub(crate) fn generate(
        &mut self,
        doc: &Automerge,
        state: &mut sync::State,
    ) -> Option<sync::Message> {
        if !self.due(doc, state) {
            return doc.generate_sync_message(state);
        }
        // With what the peer has and needs hidden, automerge builds the
        // message with no changes and does the rest of its bookkeeping.
        let their_have = state.their_have.take();
        let their_need = state.their_need.take();
        let empty = doc.generate_sync_message(state);
        state.their_have = their_have;
        state.their_need = their_need;
        let Some(mut message) = empty else {
            // automerge stays silent on an empty message in cases where it
            // would send a document (nothing to announce, nothing in
            // flight): leave those to automerge, which leaves the state as
            // it was when it returns nothing.
            return doc.generate_sync_message(state);
        };
        let heads = doc.get_heads();
        if self.saved.as_ref().is_none_or(|(at, _)| *at != heads) {
            self.saves += 1;
            self.saved = Some((heads, doc.save()));
        }
        self.sent += 1;
        let bytes = self.saved.as_ref().map(|(_, bytes)| bytes.clone());
        message.changes = bytes.into_iter().collect::<Vec<_>>().into();
        state
            .sent_hashes
            .extend(self.all_hashes(doc).iter().copied());
        Some(message)
    }

    /// Drops the saved bytes (the heads moved: they are stale).
    pub(crate) fn forget_saved(&mut self) {
        self.saved = None;
    }

    /// A full snapshot of `doc`, the saved one when the heads have not moved.
    pub(crate) fn save(&mut self, doc: &Automerge) -> Vec<u8> {
        let heads = doc.get_heads();
        match &self.saved {
            Some((at, bytes)) if *at == heads => bytes.clone(),
            _ => {
                let bytes = doc.save();
                self.saved = Some((heads, bytes.clone()));
                bytes
            }
        }
    }

    /// Whether automerge 0.12's `generate_sync_message` would send `state`'s
    /// peer the whole document (its rules, in its order). Only fresh peers
    /// and peers sent nothing yet in this session are looked at: those are
    /// the ones a whole document goes to (a reconnecting tablet, a fresh
    /// download), and every other peer costs no more than before.
    fn due(&mut self, doc: &Automerge, state: &sync::State) -> bool {
        let supports_v2 = state
            .their_capabilities
            .as_ref()
            .is_some_and(|caps| caps.contains(&Capability::MessageV2));
        if state.is_peer_read_only() || !supports_v2 || !state.sent_hashes.is_empty() {
            return false;
        }
        let (Some(have), Some(need)) = (&state.their_have, &state.their_need) else {
            return false;
        };
        let known = |hash: &ChangeHash| doc.get_change_meta_by_hash(hash).is_some();
        // automerge answers a peer whose last sync it does not know with a
        // reset; and it never saves an empty document here.
        if have.iter().flat_map(|h| &h.last_sync).any(|h| !known(h)) || doc.get_heads().is_empty() {
            return false;
        }
        if state.their_heads.as_deref() == Some(&[]) {
            return true;
        }
        let to_send = hashes_to_send(doc, have, need, known);
        to_send > self.all_hashes(doc).len() / 3
    }

    fn all_hashes(&mut self, doc: &Automerge) -> &[ChangeHash] {
        let heads = doc.get_heads();
        if self.hashes_at.as_ref() != Some(&heads) {
            // A document only grows: what is new since the last count.
            let since = self.hashes_at.take().unwrap_or_default();
            self.hashes
                .extend(doc.get_changes_meta(&since).into_iter().map(|c| c.hash));
            self.hashes_at = Some(heads);
        }
        &self.hashes
    }
}

/// How many hashes automerge 0.12's `get_hashes_to_send` picks, from its
/// public API: what the peer asked for, the changes since its last sync that
/// its bloom filters do not claim, and every change depending on one of
/// those. (The peer's `sent_hashes` are empty here: see `due`.)
fn hashes_to_send(
    doc: &Automerge,
    have: &[sync::Have],
    need: &[ChangeHash],
    known: impl Fn(&ChangeHash) -> bool,
) -> usize {
    let need: Vec<&ChangeHash> = need.iter().filter(|h| known(h)).collect();
    if have.is_empty() {
        return need.len();
    }
    let last_sync: Vec<ChangeHash> = have
        .iter()
        .flat_map(|h| h.last_sync.iter().copied())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut dependents: HashMap<ChangeHash, Vec<ChangeHash>> = HashMap::new();
    let mut to_send = HashSet::new();
    for change in doc.get_changes_meta(&last_sync) {
        for dep in &change.deps {
            dependents.entry(*dep).or_default().push(change.hash);
        }
        if have.iter().all(|h| !h.bloom.contains_hash(&change.hash)) {
            to_send.insert(change.hash);
        }
    }
    let mut stack: Vec<ChangeHash> = to_send.iter().copied().collect();
    while let Some(hash) = stack.pop() {
        for dependent in dependents.get(&hash).into_iter().flatten() {
            if to_send.insert(*dependent) {
                stack.push(*dependent);
            }
        }
    }
    need.iter().filter(|h| !to_send.contains(**h)).count() + to_send.len()
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
    fn fresh_and_lagging_peers_get_automerges_message_with_one_save_per_heads() {
        let mut server = document(30);
        let mut whole = WholeDocument::default();
        // Two fresh peers and two that hold the first 5 changes plus one
        // of their own: automerge sends each the whole document.
        let hashes: Vec<ChangeHash> = server.get_changes(&[]).iter().map(|c| c.hash()).collect();
        let mut lagging = server.fork_at(&[hashes[4]]).unwrap();
        lagging.put(ROOT, "own", 1).unwrap();
        lagging.commit();
        let mut peers = vec![
            AutoCommit::new(),
            AutoCommit::new(),
            lagging.clone(),
            lagging,
        ];
        for peer in &mut peers {
            let state = state_after_hello(&mut server, peer);
            assert!(
                whole.due(server.document(), &state),
                "automerge sends this peer the document"
            );
            same_as_automerge(&mut server, &state, &mut whole);
        }
        assert_eq!((whole.sent, whole.saves), (4, 1));
        // New heads, a new save; compaction at those heads takes it as is.
        server.put(ROOT, "later", 1).unwrap();
        server.commit();
        let state = state_after_hello(&mut server, &mut AutoCommit::new());
        same_as_automerge(&mut server, &state, &mut whole);
        assert_eq!(whole.saves, 2);
        assert_eq!(whole.save(server.document()), server.save());
        assert_eq!(whole.saves, 2);
    }

    #[test]
    fn peers_lacking_a_third_or_less_are_left_to_automerge() {
        let mut server = document(30);
        let mut whole = WholeDocument::default();
        let hashes: Vec<ChangeHash> = server.get_changes(&[]).iter().map(|c| c.hash()).collect();
        // Lacking 10 of 30 (not more than a third), 11 of 31 after one more.
        let mut close = server.fork_at(&[hashes[19]]).unwrap();
        let state = state_after_hello(&mut server, &mut close);
        assert!(!whole.due(server.document(), &state));
        same_as_automerge(&mut server, &state, &mut whole);
        let mut behind = server.fork_at(&[hashes[8]]).unwrap();
        let state = state_after_hello(&mut server, &mut behind);
        assert!(whole.due(server.document(), &state), "21 of 30 missing");
        same_as_automerge(&mut server, &state, &mut whole);
        // A peer already sent something in this session is automerge's.
        let mut sent = state.clone();
        server.sync().generate_sync_message(&mut sent);
        assert!(!whole.due(server.document(), &sent));
        // A peer that does not speak v2 gets changes, never a document.
        let mut v1 = state.clone();
        v1.their_capabilities = Some(vec![Capability::MessageV1]);
        assert!(!whole.due(server.document(), &v1));
        same_as_automerge(&mut server, &v1, &mut whole);
        assert_eq!(whole.sent, 1);
    }

    #[test]
    fn the_count_of_what_a_peer_lacks_follows_automerge_through_a_sync() {
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
