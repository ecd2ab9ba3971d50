//! The document's recent history, kept beside automerge so the commonest
//! question of a sync round, "of the changes we sent this peer, which does
//! it still lack?", is answered without automerge's walks.
//!
//! automerge answers it (`receive_sync_message`'s trim of `sent_hashes`) by
//! visiting every ancestor of the peer's heads; `get_changes_meta` answers it
//! from vector clocks but builds full metadata (message, actor, timestamps:
//! a column read each) for every change the heads lack, which was 40 % of the
//! server's CPU with ten writers on a document (`load`). Here the question
//! costs what the peer has not yet confirmed: the recent versions of the
//! document (heads after each round) answer listeners in a set lookup, and the
//! dependencies of every recent change answer writers, whose heads are their
//! own change beside others', in a walk over the changes since the oldest one
//! still unconfirmed.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use automerge::sync::Have;
use automerge::{Automerge, Change, ChangeHash, ReadDoc};

/// Change hashes are SHA-256 outputs already; SipHash over their 32 bytes
/// was most of the cost of picking a writer's changes. foldhash is fast and
/// seeded per process.
type Hasher = foldhash::fast::RandomState;

/// Rounds kept: at 50 changes a second, five seconds of a listener's lag.
pub(crate) const RECENT_VERSIONS: usize = 256;

/// A change that arrived within the window: the round it arrived in (the
/// changes of later rounds and of the one in progress have higher numbers,
/// so a change's descendants never have a lower one), its dependencies, and
/// its bytes as they arrived, for messages to other peers
/// ([`RecentHistory::to_send`]; automerge rebuilds a change's bytes from
/// its operations, one walk of the document per call for a single change),
/// `None` for a change the history learned of from automerge.
#[derive(Debug)]
struct Arrival {
    round: u64,
    deps: Vec<ChangeHash>,
    bytes: Option<Vec<u8>>,
}

/// A change about to be applied, as the history records it: its hash,
/// dependencies and bytes, taken before the change itself goes to
/// automerge.
#[derive(Debug)]
pub(crate) struct Arrived {
    hash: ChangeHash,
    deps: Vec<ChangeHash>,
    bytes: Vec<u8>,
}

impl Arrived {
    pub(crate) fn of(change: &Change) -> Self {
        Self {
            hash: change.hash(),
            deps: change.deps().to_vec(),
            bytes: change.raw_bytes().to_vec(),
        }
    }

    pub(crate) fn hash(&self) -> ChangeHash {
        self.hash
    }
}

#[derive(Debug)]
pub(crate) struct RecentHistory {
    /// The heads after each round that moved them, and the changes that
    /// round added, oldest first.
    versions: VecDeque<(Vec<ChangeHash>, Vec<ChangeHash>)>,
    /// Every change added by a kept round or since the last one.
    changes: HashMap<ChangeHash, Arrival, Hasher>,
    /// Changes applied since the last round, in `changes` already.
    pending: Vec<ChangeHash>,
    /// The number of the round in progress.
    round: u64,
    /// Whether `changes` holds every change the document gained since the
    /// window began. Lost when a change arrives some other way (a whole
    /// document through automerge, changes read from the store, the
    /// server's own change, a change automerge queued for a missing
    /// dependency); the next round finds the changes it missed from
    /// automerge and restores it.
    tracked: bool,
}

impl RecentHistory {
    /// The history of a document whose heads are `heads` now.
    pub(crate) fn starting_at(doc: &Automerge) -> Self {
        Self {
            versions: [(doc.get_heads(), Vec::new())].into(),
            changes: HashMap::default(),
            pending: Vec::new(),
            round: 1,
            tracked: nothing_queued(doc),
        }
    }

    /// Of `changes` about to be applied, those the document does not hold,
    /// each once (empty when the history is not being tracked). Call before
    /// applying, then [`Self::applied`] after.
    pub(crate) fn fresh(&self, doc: &Automerge, changes: &[Change]) -> Vec<Arrived> {
        if !self.tracked {
            return Vec::new();
        }
        let hashes: Vec<ChangeHash> = changes.iter().map(Change::hash).collect();
        // With nothing queued (`tracked`), exactly the hashes not applied.
        let missing: HashSet<ChangeHash> = doc.get_missing_deps(&hashes).into_iter().collect();
        let mut seen = HashSet::new();
        changes
            .iter()
            .filter(|change| missing.contains(&change.hash()) && seen.insert(change.hash()))
            .map(Arrived::of)
            .collect()
    }

    /// Records changes that were applied to `doc` (each new to it, from
    /// [`Self::fresh`], or checked absent before it was applied).
    pub(crate) fn applied(&mut self, doc: &Automerge, changes: impl IntoIterator<Item = Arrived>) {
        if !self.tracked {
            return;
        }
        if !nothing_queued(doc) {
            // Some of these may wait in automerge's queue, not in the
            // document; the next round asks automerge what arrived.
            self.tracked = false;
            return;
        }
        for Arrived { hash, deps, bytes } in changes {
            if let std::collections::hash_map::Entry::Vacant(entry) = self.changes.entry(hash) {
                entry.insert(Arrival {
                    round: self.round,
                    deps,
                    bytes: Some(bytes),
                });
                self.pending.push(hash);
            }
        }
    }

    /// Whether every change in the document since the history began was
    /// seen by it (so [`Self::fresh`] can say which changes are new).
    pub(crate) fn tracking(&self) -> bool {
        self.tracked
    }

    /// The document gained changes this history did not see.
    pub(crate) fn lost_track(&mut self) {
        self.tracked = false;
    }

    /// Ends a round whose heads moved to `heads`: records the version and
    /// what it added. Returns how many changes that was.
    pub(crate) fn end_round(&mut self, doc: &Automerge, heads: Vec<ChangeHash>) -> usize {
        let added = if self.tracked {
            std::mem::take(&mut self.pending)
        } else {
            let since = self
                .versions
                .back()
                .map(|(heads, _)| heads.as_slice())
                .unwrap_or(&[]);
            let added: Vec<ChangeHash> = doc
                .get_changes_meta(since)
                .into_iter()
                .map(|change| {
                    self.changes.entry(change.hash).or_insert(Arrival {
                        round: self.round,
                        deps: change.deps,
                        bytes: None,
                    });
                    change.hash
                })
                .collect();
            self.pending.clear();
            self.tracked = nothing_queued(doc);
            added
        };
        if self.versions.len() == RECENT_VERSIONS
            && let Some((_, gone)) = self.versions.pop_front()
        {
            for hash in gone {
                self.changes.remove(&hash);
            }
        }
        let count = added.len();
        self.versions.push_back((heads, added));
        self.round += 1;
        count
    }

    /// Of `sent`, what a peer whose heads are `heads` does not hold, if this
    /// history can tell (`None` otherwise: ask automerge). `current` are the
    /// document's heads now. `sent` holds changes of ended rounds only, as
    /// a peer's `sent_hashes` do: messages go out after a round ends.
    pub(crate) fn still_missing(
        &self,
        heads: &[ChangeHash],
        current: &[ChangeHash],
        sent: &BTreeSet<ChangeHash>,
    ) -> Option<BTreeSet<ChangeHash>> {
        if heads == current {
            return Some(BTreeSet::new());
        }
        self.at_version(heads, sent)
            .or_else(|| self.by_ancestry(heads, sent))
    }

    /// For heads a recent version had: the sent changes added after it.
    fn at_version(
        &self,
        heads: &[ChangeHash],
        sent: &BTreeSet<ChangeHash>,
    ) -> Option<BTreeSet<ChangeHash>> {
        let at = self
            .versions
            .iter()
            .rposition(|(version, _)| version == heads)?;
        let later: HashSet<&ChangeHash> = self
            .versions
            .iter()
            .skip(at + 1)
            .flat_map(|(_, added)| added)
            .collect();
        Some(sent.iter().filter(|h| later.contains(h)).copied().collect())
    }

    /// For heads that are recent changes (a writer's own beside others'):
    /// the sent changes that are not among their ancestors, as automerge's
    /// trim leaves them. A path from a head back to a sent change runs
    /// only through that change's descendants, which arrived after it, so
    /// the walk goes back only to the round of the oldest sent change, and
    /// every change it meets is in `changes`.
    fn by_ancestry(
        &self,
        heads: &[ChangeHash],
        sent: &BTreeSet<ChangeHash>,
    ) -> Option<BTreeSet<ChangeHash>> {
        if !self.tracked {
            return None;
        }
        // Heads held by the document but older than the window: automerge's
        // clocks decide.
        if !heads.iter().all(|head| self.changes.contains_key(head)) {
            return None;
        }
        // automerge forgets what it sent a peer that has nothing.
        if heads.is_empty() || sent.is_empty() {
            return Some(BTreeSet::new());
        }
        // Every sent change must be recent for the walk to see its paths.
        let mut oldest = u64::MAX;
        for hash in sent {
            oldest = oldest.min(self.changes.get(hash)?.round);
        }
        let mut missing = sent.clone();
        let mut seen: HashSet<&ChangeHash> = HashSet::new();
        let mut stack: Vec<&ChangeHash> = heads.iter().collect();
        while let Some(hash) = stack.pop() {
            let Some(arrival) = self.changes.get(hash) else {
                continue;
            };
            if arrival.round < oldest || !seen.insert(hash) {
                continue;
            }
            if missing.remove(hash) && missing.is_empty() {
                break;
            }
            stack.extend(arrival.deps.iter());
        }
        Some(missing)
    }

    /// automerge's `get_hashes_to_send` for a peer that needs nothing and
    /// whose last sync (`have`'s, all of them) was a recent version, with
    /// each change's bytes, if the history can tell: the changes added
    /// after that version that none of the peer's bloom filters holds, and
    /// every change after it that depends on one of those, in the order
    /// they arrived (automerge's order is the one it applied them in: the
    /// message's bytes may differ in order, never in content). `current`
    /// are the document's heads, which must be the last round's (nothing
    /// arrived since). `None` otherwise: ask automerge.
    ///
    /// Every change older than the window is an ancestor of a kept
    /// version, so the changes that are no ancestors of a version's heads
    /// are exactly those the later rounds added; automerge finds them with
    /// a vector clock over the whole change graph and hash maps of every
    /// change since, for every writer (40 % of the server's CPU with ten
    /// writers on a document).
    pub(crate) fn to_send(
        &self,
        have: &[Have],
        current: &[ChangeHash],
    ) -> Option<Vec<(ChangeHash, &[u8])>> {
        if have.is_empty()
            || self.versions.back().map(|(heads, _)| heads.as_slice()) != Some(current)
        {
            return None;
        }
        let mut last_sync: Vec<ChangeHash> = have
            .iter()
            .flat_map(|h| h.last_sync.iter().copied())
            .collect();
        last_sync.sort_unstable();
        last_sync.dedup();
        let at = self
            .versions
            .iter()
            .rposition(|(version, _)| *version == last_sync)?;
        // The round that version ended; the changes after it have higher ones.
        let since_round = self.round - (self.versions.len() - at) as u64;
        // One pass in the order the changes arrived, which puts every
        // change after its dependencies (automerge applies nothing before
        // them, and nothing waited in its queue while the history was
        // tracked): a change is sent if no bloom filter holds it or it
        // depends on one that is sent (automerge's walk over dependents).
        // A dependency met out of that order leaves it to automerge.
        let mut sent_or_not: HashMap<&ChangeHash, bool, Hasher> = HashMap::default();
        let mut sending = Vec::new();
        for hash in self
            .versions
            .iter()
            .skip(at + 1)
            .flat_map(|(_, added)| added)
        {
            let arrival = self.changes.get(hash)?;
            let mut send = have.iter().all(|h| !h.bloom.contains_hash(hash));
            for dep in &arrival.deps {
                if send {
                    break;
                }
                if self.changes.get(dep).is_some_and(|d| d.round > since_round) {
                    send = *sent_or_not.get(dep)?;
                }
            }
            sent_or_not.insert(hash, send);
            if send {
                sending.push((*hash, arrival.bytes.as_deref()?));
            }
        }
        Some(sending)
    }

    /// How many changes the window holds: the document holds at least as
    /// many.
    pub(crate) fn changes_kept(&self) -> usize {
        self.changes.len()
    }

    #[cfg(test)]
    pub(crate) fn versions_kept(&self) -> usize {
        self.versions.len()
    }
}

/// Whether automerge holds no change waiting for a missing dependency.
/// A queued change has a dependency the document lacks, so the queue is
/// empty exactly when no dependency is missing.
pub(crate) fn nothing_queued(doc: &Automerge) -> bool {
    doc.get_missing_deps(&[]).is_empty()
}

/// Of `sent`, what a peer whose heads are `heads` does not hold, for heads
/// the history cannot place (older than its window, or seen while it was
/// not tracking): the ones that are not `heads` or their ancestors, as
/// automerge leaves them (`remove_ancestors`; none for a peer with no
/// heads, which starts over). `get_changes_meta(heads)` lists exactly the
/// changes that are not ancestors of `heads`, from the heads' vector clock
/// (cached every 16 changes in the change graph) and each actor's changes
/// after it, so it costs what the peer lacks, not the whole history (but a
/// metadata build for each of those). `None` if a head is unknown here (or
/// a change waits in automerge's queue): automerge's bookkeeping then
/// differs (it keeps the known heads beside the old shared ones).
pub(crate) fn still_missing_by_clock(
    doc: &Automerge,
    heads: &[ChangeHash],
    sent: &BTreeSet<ChangeHash>,
) -> Option<BTreeSet<ChangeHash>> {
    if !doc.get_missing_deps(heads).is_empty() {
        return None;
    }
    // A peer with no heads lost its data: automerge forgets what it sent.
    if sent.is_empty() || heads.is_empty() {
        return Some(BTreeSet::new());
    }
    let not_held: HashSet<ChangeHash> = doc
        .get_changes_meta(heads)
        .into_iter()
        .map(|change| change.hash)
        .collect();
    Some(
        sent.iter()
            .filter(|h| not_held.contains(h))
            .copied()
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::ROOT;
    use automerge::sync::{self, SyncDoc};
    use automerge::transaction::Transactable;

    /// automerge's own trim of `sent` for a peer at `heads` (a message
    /// without changes through `receive_sync_message`).
    pub(crate) fn automerge_trim(
        doc: &Automerge,
        heads: &[ChangeHash],
        sent: &BTreeSet<ChangeHash>,
    ) -> BTreeSet<ChangeHash> {
        let mut state = sync::State::new();
        state.sent_hashes = sent.clone();
        let mut doc = doc.clone();
        let mut message = sync::Message::decode(
            &Automerge::new()
                .generate_sync_message(&mut sync::State::new())
                .unwrap()
                .encode(),
        )
        .unwrap();
        message.heads = heads.to_vec();
        doc.receive_sync_message(&mut state, message).unwrap();
        state.sent_hashes
    }

    /// A change on `doc` by its own actor.
    fn write(doc: &mut Automerge, key: &str, value: i64) -> Change {
        let mut tx = doc.transaction();
        tx.put(ROOT, key, value).unwrap();
        tx.commit();
        doc.get_last_local_change().unwrap()
    }

    /// `peer`'s changes that `doc` lacks, applied to it as a sync message's
    /// are, and recorded.
    fn deliver(doc: &mut Automerge, history: &mut RecentHistory, peer: &Automerge) {
        let changes: Vec<Change> = peer.get_changes(&[]).into_iter().collect();
        let fresh = history.fresh(doc, &changes);
        doc.apply_changes(changes).unwrap();
        history.applied(doc, fresh);
    }

    #[test]
    fn recent_versions_and_recent_changes_answer_what_a_peer_still_lacks() {
        let mut doc = Automerge::new();
        let c1 = write(&mut doc, "a", 1);
        let mut history = RecentHistory::starting_at(&doc);
        let c2 = write(&mut doc, "a", 2);
        history.applied(&doc, [Arrived::of(&c2)]);
        history.end_round(&doc, doc.get_heads());
        // Two writers at once on c2, the other's change merged in.
        let mut other = doc.fork();
        let c3 = write(&mut doc, "a", 3);
        let c4 = write(&mut other, "b", 4);
        deliver(&mut doc, &mut history, &other);
        history.applied(&doc, [Arrived::of(&c3)]);
        history.end_round(&doc, doc.get_heads());
        // One more change, its round not yet ended.
        let c5 = write(&mut doc, "a", 5);
        history.applied(&doc, [Arrived::of(&c5)]);
        let current = doc.get_heads();
        let sent: BTreeSet<_> = [c2.hash(), c3.hash(), c4.hash()].into();
        let at = |heads: &[ChangeHash]| history.still_missing(heads, &current, &sent);
        // The heads of a version: a set lookup.
        assert_eq!(at(&[c1.hash()]), Some(sent.clone()));
        assert_eq!(at(&[c2.hash()]), Some([c3.hash(), c4.hash()].into()));
        let mut both = vec![c3.hash(), c4.hash()];
        both.sort();
        assert_eq!(at(&both), Some(BTreeSet::new()));
        // A writer's heads the document never had: its ancestry.
        for heads in [vec![c3.hash()], vec![c4.hash()], vec![c5.hash()]] {
            assert_eq!(
                at(&heads),
                Some(automerge_trim(&doc, &heads, &sent)),
                "{heads:?}"
            );
        }
        assert_eq!(at(&[c4.hash()]), Some([c3.hash()].into()));
        // A change from before the window, or one never seen: automerge decides.
        assert_eq!(history.by_ancestry(&[c1.hash()], &sent), None);
        assert_eq!(at(&[ChangeHash([9; 32])]), None);
        // A sent change from before the window: the walk cannot see its paths.
        assert_eq!(
            history.by_ancestry(&[c5.hash()], &[c1.hash(), c3.hash()].into()),
            None
        );
        assert_eq!(at(&current), Some(BTreeSet::new()));
        // The window keeps RECENT_VERSIONS rounds, and their changes only.
        for n in 0..RECENT_VERSIONS {
            let change = write(&mut doc, "n", n as i64);
            history.applied(&doc, [Arrived::of(&change)]);
            history.end_round(&doc, doc.get_heads());
        }
        assert_eq!(history.versions_kept(), RECENT_VERSIONS);
        // One change per kept round, and c5 with the first of them.
        assert_eq!(history.changes_kept(), RECENT_VERSIONS + 1);
        let last = doc.get_last_local_change().unwrap().hash();
        let latest: BTreeSet<_> = [last].into();
        assert_eq!(
            history.still_missing(&[c2.hash()], &doc.get_heads(), &latest),
            None
        );
        assert_eq!(history.by_ancestry(&[c3.hash()], &latest), None);
    }

    #[test]
    fn a_change_that_arrived_unseen_sends_the_round_to_automerge_and_the_next_is_tracked() {
        let mut doc = Automerge::new();
        write(&mut doc, "seed", 0);
        let mut history = RecentHistory::starting_at(&doc);
        let mut writer = doc.fork();
        // The document gains changes the history is not told of one by one.
        let w1 = write(&mut writer, "w", 1);
        doc.merge(&mut writer).unwrap();
        history.lost_track();
        let sent: BTreeSet<_> = [w1.hash()].into();
        assert_eq!(history.by_ancestry(&[w1.hash()], &sent), None);
        history.end_round(&doc, doc.get_heads());
        // automerge said what the round added: known again.
        assert_eq!(
            history.by_ancestry(&[w1.hash()], &sent),
            Some(BTreeSet::new())
        );
        // A change whose dependency is missing waits in automerge's queue,
        // not in the document: not tracked until a round asks automerge.
        let w2 = write(&mut writer, "w", 2);
        let w3 = write(&mut writer, "w", 3);
        let fresh = history.fresh(&doc, std::slice::from_ref(&w3));
        doc.apply_changes([w3.clone()]).unwrap();
        history.applied(&doc, fresh);
        assert_eq!(history.by_ancestry(&[w1.hash()], &sent), None);
        deliver(&mut doc, &mut history, &writer);
        history.end_round(&doc, doc.get_heads());
        let sent: BTreeSet<_> = [w2.hash(), w3.hash()].into();
        assert_eq!(
            history.by_ancestry(&[w2.hash()], &sent),
            Some([w3.hash()].into())
        );
        // The same changes again are not new.
        assert!(history.fresh(&doc, &[w2.clone(), w3]).is_empty());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Writers on forks of one document write, merge each other's work
        /// and deliver to the document (all their changes, or only the
        /// newest, which may wait for a dependency), rounds end at random,
        /// and some changes arrive unseen. For any writer's heads and any
        /// recent sent set, whatever the history answers is automerge's trim.
        #[test]
        fn whatever_the_history_answers_is_automerges_trim(
            steps in proptest::collection::vec((0u8..6, 0usize..3, 0usize..3), 1..90)
        ) {
            let mut doc = Automerge::new();
            write(&mut doc, "seed", 0);
            let mut history = RecentHistory::starting_at(&doc);
            let mut writers: Vec<Automerge> = (0..3).map(|_| doc.fork()).collect();
            let mut answered = 0;
            // What a peer can have been sent: changes of ended rounds.
            let mut sendable: Vec<ChangeHash> = Vec::new();
            for (n, (action, who, other)) in steps.into_iter().enumerate() {
                match action {
                    0 | 1 => {
                        write(&mut writers[who], &format!("k{who}"), n as i64);
                    }
                    2 if who != other => {
                        let mut from = writers[other].clone();
                        writers[who].merge(&mut from).unwrap();
                    }
                    3 => deliver(&mut doc, &mut history, &writers[who]),
                    4 => {
                        let newest = writers[who].get_last_local_change();
                        if let Some(change) = newest {
                            let fresh = history.fresh(&doc, std::slice::from_ref(&change));
                            doc.apply_changes([change]).unwrap();
                            history.applied(&doc, fresh);
                        }
                    }
                    5 if other == 0 => {
                        doc.merge(&mut writers[who].clone()).unwrap();
                        history.lost_track();
                    }
                    _ => {
                        if doc.get_heads() != history.versions.back().unwrap().0 {
                            history.end_round(&doc, doc.get_heads());
                            sendable = doc.get_changes(&[]).iter().map(|c| c.hash()).collect();
                        }
                    }
                }
                let current = doc.get_heads();
                for writer in &writers {
                    let heads = writer.get_heads();
                    if !doc.get_missing_deps(&heads).is_empty() {
                        continue;
                    }
                    for take in [1, 3, 12] {
                        let sent: BTreeSet<_> = sendable.iter().rev().take(take).copied().collect();
                        if let Some(ours) = history.still_missing(&heads, &current, &sent) {
                            answered += 1;
                            proptest::prop_assert_eq!(ours, automerge_trim(&doc, &heads, &sent));
                        }
                    }
                }
            }
            proptest::prop_assume!(answered > 0);
        }
    }

    #[test]
    fn what_a_peer_still_lacks_is_what_automerge_leaves_for_any_known_heads() {
        // A history with concurrent branches: a base, three actors writing
        // off it, a merge of two of them, and more on top; the history
        // sees every change as it arrives.
        let mut base = Automerge::new();
        let mut history = RecentHistory::starting_at(&base);
        for i in 0..40 {
            let change = write(&mut base, "base", i);
            history.applied(&base, [Arrived::of(&change)]);
        }
        history.end_round(&base, base.get_heads());
        let mut branches: Vec<Automerge> = (0..3).map(|_| base.fork()).collect();
        let mut branch_heads = Vec::new();
        for (n, doc) in branches.iter_mut().enumerate() {
            let mut heads = Vec::new();
            for i in 0..(5 + n * 7) {
                write(doc, &format!("b{n}"), i as i64);
                heads.push(doc.get_heads());
            }
            branch_heads.push(heads);
        }
        let mut doc = base.clone();
        for branch in &branches {
            deliver(&mut doc, &mut history, branch);
        }
        history.end_round(&doc, doc.get_heads());
        let merged_heads = doc.get_heads();
        for i in 0..10 {
            let change = write(&mut doc, "top", i);
            history.applied(&doc, [Arrived::of(&change)]);
        }
        let current = doc.get_heads();
        let every: Vec<ChangeHash> = doc.get_changes(&[]).iter().map(|c| c.hash()).collect();
        let recent: BTreeSet<_> = every.iter().rev().take(40).copied().collect();
        let one_per_branch: BTreeSet<_> = branch_heads.iter().map(|h| h[2][0]).collect();
        let mut peers_heads: Vec<Vec<ChangeHash>> =
            vec![base.get_heads(), merged_heads, current.clone(), vec![]];
        for heads in &branch_heads {
            peers_heads.push(heads[0].clone());
            peers_heads.push(heads.last().unwrap().clone());
        }
        // Heads that were never the document's: one branch's tip beside another's middle.
        let mut mixed = vec![branch_heads[0].last().unwrap()[0], branch_heads[2][3][0]];
        mixed.sort();
        peers_heads.push(mixed);
        for heads in &peers_heads {
            for sent in [&recent, &one_per_branch] {
                let expected = automerge_trim(&doc, heads, sent);
                let ours = still_missing_by_clock(&doc, heads, sent).expect("all known");
                assert_eq!(ours, expected, "clock, heads {heads:?}");
                let walked = history.by_ancestry(heads, sent).expect("all recent");
                assert_eq!(walked, expected, "ancestry, heads {heads:?}");
            }
        }
        // A head we do not hold: automerge decides.
        let unknown = [ChangeHash([7; 32])];
        assert_eq!(still_missing_by_clock(&doc, &unknown, &recent), None);
        assert_eq!(history.by_ancestry(&unknown, &recent), None);
    }
}
