//! Documents in memory under a budget: what a loaded document is estimated to
//! take, and which idle documents leave early when the loaded ones together
//! take more than the budget. Pure (no clocks, no tasks): the registry feeds
//! it what its actors report and sends the chosen ones `DocCommand::Evict`.
//!
//! Documents with a connected peer never leave for the budget: a venue's
//! active events stay, and the idle ones (an event from last month a report
//! touched) go oldest-idle first instead of waiting out `evict_after_secs`.

use std::collections::HashMap;
use std::time::Instant;

use sync_protocol::DocumentId;

/// Heap bytes one operation of a loaded automerge document takes, with its
/// value and its share of the indexes. Measured with `sync-bench --mode
/// many-events` on event documents, whose operations are mostly one JSON
/// record each (~110 bytes): 200 events of 10,000 attendees loaded took
/// 632 MiB of RSS over an idle server, 330 bytes per operation. An estimate,
/// so the budget is approximate in the same proportion.
pub const BYTES_PER_OP: u64 = 320;
/// Heap bytes per change in the change graph (hash, dependencies, metadata).
pub const BYTES_PER_CHANGE: u64 = 400;

/// The estimated heap size of a loaded document.
pub fn estimated_bytes(doc: &automerge::Automerge) -> u64 {
    use automerge::ReadDoc;
    let stats = doc.stats();
    stats.num_ops * BYTES_PER_OP + stats.num_changes * BYTES_PER_CHANGE
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Usage {
    bytes: u64,
    /// Since when the document has had no peer; `None` while it has one.
    idle_since: Option<Instant>,
    /// Already asked to leave (not asked again until it is used).
    asked: bool,
}

/// What every loaded document takes, and the budget they share.
#[derive(Debug)]
pub struct MemoryBudget {
    budget_bytes: u64,
    total_bytes: u64,
    docs: HashMap<(DocumentId, u64), Usage>,
}

impl MemoryBudget {
    /// `budget_bytes == 0` turns the budget off (only `evict_after` applies).
    pub fn new(budget_bytes: u64) -> Self {
        Self {
            budget_bytes,
            total_bytes: 0,
            docs: HashMap::new(),
        }
    }

    /// The estimated bytes of every loaded document together.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// A document's actor (identified by document and generation) reports
    /// its size and whether it has peers. Returns the idle documents that
    /// should leave, oldest idle first, until the rest fit in the budget
    /// (possibly none: documents in use are never chosen).
    pub fn report(
        &mut self,
        doc: (DocumentId, u64),
        bytes: u64,
        idle: bool,
        now: Instant,
    ) -> Vec<(DocumentId, u64)> {
        let usage = self.docs.entry(doc).or_insert(Usage {
            bytes: 0,
            idle_since: None,
            asked: false,
        });
        self.total_bytes = self.total_bytes - usage.bytes + bytes;
        usage.bytes = bytes;
        match (idle, usage.idle_since) {
            (true, None) => usage.idle_since = Some(now),
            (false, _) => {
                usage.idle_since = None;
                usage.asked = false;
            }
            (true, Some(_)) => {}
        }
        self.over_budget()
    }

    /// The document's actor has ended.
    pub fn remove(&mut self, doc: (DocumentId, u64)) {
        if let Some(usage) = self.docs.remove(&doc) {
            self.total_bytes -= usage.bytes;
        }
    }

    fn over_budget(&mut self) -> Vec<(DocumentId, u64)> {
        if self.budget_bytes == 0 || self.total_bytes <= self.budget_bytes {
            return Vec::new();
        }
        // Those already asked are on their way out: count them as gone.
        let mut expected = self.total_bytes
            - self
                .docs
                .values()
                .filter(|u| u.asked)
                .map(|u| u.bytes)
                .sum::<u64>();
        let mut idle: Vec<((DocumentId, u64), Instant)> = self
            .docs
            .iter()
            .filter(|(_, u)| !u.asked)
            .filter_map(|(k, u)| u.idle_since.map(|t| (*k, t)))
            .collect();
        idle.sort_by_key(|(k, since)| (*since, k.1));
        let mut chosen = Vec::new();
        for (key, _) in idle {
            if expected <= self.budget_bytes {
                break;
            }
            let usage = self.docs.get_mut(&key).expect("listed above");
            usage.asked = true;
            expected -= usage.bytes;
            chosen.push(key);
        }
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn doc(n: u64) -> (DocumentId, u64) {
        (DocumentId::random(), n)
    }

    #[test]
    fn under_the_budget_nothing_leaves() {
        let mut budget = MemoryBudget::new(1000);
        let now = Instant::now();
        assert!(budget.report(doc(1), 400, true, now).is_empty());
        assert!(budget.report(doc(2), 600, true, now).is_empty());
        assert_eq!(budget.total_bytes(), 1000);
    }

    #[test]
    fn over_the_budget_the_oldest_idle_leave_first_until_the_rest_fit() {
        let mut budget = MemoryBudget::new(1000);
        let t0 = Instant::now();
        let (a, b, c, d) = (doc(1), doc(2), doc(3), doc(4));
        budget.report(a, 300, true, t0);
        budget.report(b, 300, true, t0 + Duration::from_secs(1));
        budget.report(c, 300, false, t0);
        // 1,300 bytes: one idle document must go, the one idle the longest.
        assert_eq!(
            budget.report(d, 400, true, t0 + Duration::from_secs(2)),
            vec![a]
        );
        // Asked once: not asked again while it leaves.
        assert!(
            budget
                .report(d, 400, true, t0 + Duration::from_secs(3))
                .is_empty()
        );
        budget.remove(a);
        assert_eq!(budget.total_bytes(), 1000);
        // Growing past the budget again sends the next oldest idle one.
        assert_eq!(budget.report(c, 500, false, t0), vec![b]);
    }

    #[test]
    fn documents_in_use_never_leave_and_a_used_one_is_idle_afresh() {
        let mut budget = MemoryBudget::new(500);
        let t0 = Instant::now();
        let (a, b) = (doc(1), doc(2));
        assert!(budget.report(a, 400, false, t0).is_empty());
        assert!(budget.report(b, 400, false, t0).is_empty());
        // b goes idle: over budget, so it is asked to leave.
        assert_eq!(budget.report(b, 400, true, t0), vec![b]);
        // A peer attached before it left: it stays, and asked is reset.
        assert!(budget.report(b, 400, false, t0).is_empty());
        assert_eq!(
            budget.report(b, 400, true, t0 + Duration::from_secs(5)),
            vec![b]
        );
    }

    #[test]
    fn a_zero_budget_is_off() {
        let mut budget = MemoryBudget::new(0);
        assert!(
            budget
                .report(doc(1), u64::MAX / 2, true, Instant::now())
                .is_empty()
        );
    }

    #[test]
    fn a_document_is_estimated_by_its_operations_and_changes() {
        use automerge::transaction::Transactable;
        let mut am = automerge::Automerge::new();
        let empty = estimated_bytes(&am);
        let mut tx = am.transaction();
        for i in 0..100 {
            tx.put(automerge::ROOT, format!("k{i}"), i as i64).unwrap();
        }
        tx.commit();
        assert_eq!(
            estimated_bytes(&am) - empty,
            100 * BYTES_PER_OP + BYTES_PER_CHANGE
        );
    }
}
