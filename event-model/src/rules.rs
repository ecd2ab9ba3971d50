//! The check-in rules, as pure functions of the records (no clock, no IO),
//! so every replica that holds the same scans computes the same states and
//! the same duplicates, whatever order the scans arrived in.
//!
//! Learned from pretixSCAN: a scan is never rejected after the fact; two
//! entries with no exit between them (on a list that does not allow several
//! entries) make the later one, by clock and then by scan id, a duplicate
//! that staff see and administrators review.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::hlc::Hlc;
use crate::tickets::{TicketClaims, Validity};

/// How long after a scan it may be annulled, by default.
pub const DEFAULT_ANNUL_WINDOW_MS: i64 = 15 * 60 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Entry,
    Exit,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Entry => "entry",
            Direction::Exit => "exit",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "entry" => Some(Direction::Entry),
            "exit" => Some(Direction::Exit),
            _ => None,
        }
    }
}

/// A check-in list's (a door's) rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ListRules {
    /// Several entries without an exit between them are all fine.
    pub allow_multiple_entries: bool,
    /// Coming back in after leaving is fine.
    pub allow_entry_after_exit: bool,
}

/// A scan: immutable once made; its id is also its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Scan {
    pub id: String,
    pub attendee_id: String,
    pub list_id: String,
    pub direction: Direction,
    pub device_id: String,
    pub staff_id: String,
    pub hlc: Hlc,
    /// The device's wall clock when it happened (for people; order uses `hlc`).
    pub wall_ms: i64,
}

/// Undoes a scan; a record of its own, never a deletion.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Annulment {
    pub id: String,
    pub scan_id: String,
    pub device_id: String,
    pub staff_id: String,
    pub hlc: Hlc,
    pub wall_ms: i64,
}

/// What became of one scan once all scans are known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScanOutcome {
    /// It changed the attendee's state (an entry let them in, an exit out).
    Counted,
    /// An entry that the list's rules did not allow: `of` is the entry scan
    /// it repeats.
    Duplicate { of: String },
    /// Annulled within the window: as if it had not happened.
    Annulled,
    /// An exit while not inside: no effect.
    NotInside,
}

/// An attendee on one list.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Presence {
    /// Inside now (an entry not followed by an exit).
    pub inside: bool,
    /// The counted entry that let them in first, if any.
    pub first_entry: Option<String>,
    /// The counted entry that let them in last, if any.
    pub last_entry: Option<String>,
    /// They left after being in.
    pub exited: bool,
}

impl Presence {
    pub fn checked_in(&self) -> bool {
        self.first_entry.is_some()
    }
}

/// A duplicate entry, for the review list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Duplicate {
    pub scan_id: String,
    /// The entry it repeats.
    pub of: String,
    pub attendee_id: String,
    pub list_id: String,
}

/// Everything the rules say about a set of scans.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Evaluation {
    /// By `(attendee id, list id)`.
    pub presence: BTreeMap<(String, String), Presence>,
    pub outcomes: BTreeMap<String, ScanOutcome>,
    /// In scan order (clock, then id).
    pub duplicates: Vec<Duplicate>,
}

/// Whether `annulment` undoes `scan`: it must come after it, within the window.
pub fn annuls(annulment: &Annulment, scan: &Scan, window_ms: i64) -> bool {
    annulment.scan_id == scan.id
        && annulment.hlc > scan.hlc
        && annulment.hlc.wall_ms - scan.hlc.wall_ms <= window_ms
}

/// Applies the rules to every scan. The result depends only on the sets of
/// scans and annulments (duplicated records count once), never on their
/// order, so replicas agree.
pub fn evaluate<'a>(
    scans: impl IntoIterator<Item = &'a Scan>,
    annulments: impl IntoIterator<Item = &'a Annulment>,
    rules: impl Fn(&str) -> ListRules,
    annul_window_ms: i64,
) -> Evaluation {
    let mut ordered: Vec<&Scan> = scans.into_iter().collect();
    ordered.sort_by(|a, b| (&a.hlc, &a.id).cmp(&(&b.hlc, &b.id)));
    ordered.dedup_by(|a, b| a.id == b.id);
    let by_id: HashMap<&str, &Scan> = ordered.iter().map(|s| (s.id.as_str(), *s)).collect();
    let annulled: HashSet<&str> = annulments
        .into_iter()
        .filter(|a| {
            by_id
                .get(a.scan_id.as_str())
                .is_some_and(|scan| annuls(a, scan, annul_window_ms))
        })
        .map(|a| a.scan_id.as_str())
        .collect();

    let mut out = Evaluation::default();
    let mut rules_cache: HashMap<&str, ListRules> = HashMap::new();
    for scan in ordered {
        if annulled.contains(scan.id.as_str()) {
            out.outcomes.insert(scan.id.clone(), ScanOutcome::Annulled);
            continue;
        }
        let list_rules = *rules_cache
            .entry(scan.list_id.as_str())
            .or_insert_with(|| rules(&scan.list_id));
        let presence = out
            .presence
            .entry((scan.attendee_id.clone(), scan.list_id.clone()))
            .or_default();
        let outcome = step(presence, scan, list_rules);
        if let ScanOutcome::Duplicate { of } = &outcome {
            out.duplicates.push(Duplicate {
                scan_id: scan.id.clone(),
                of: of.clone(),
                attendee_id: scan.attendee_id.clone(),
                list_id: scan.list_id.clone(),
            });
        }
        out.outcomes.insert(scan.id.clone(), outcome);
    }
    out
}

/// One scan applied to one attendee's presence on its list.
fn step(presence: &mut Presence, scan: &Scan, rules: ListRules) -> ScanOutcome {
    match scan.direction {
        Direction::Entry => {
            if let Some(repeated) = refused_entry(presence, rules) {
                return ScanOutcome::Duplicate { of: repeated };
            }
            presence.inside = true;
            presence.first_entry.get_or_insert_with(|| scan.id.clone());
            presence.last_entry = Some(scan.id.clone());
            ScanOutcome::Counted
        }
        Direction::Exit => {
            if presence.inside {
                presence.inside = false;
                presence.exited = true;
                ScanOutcome::Counted
            } else {
                ScanOutcome::NotInside
            }
        }
    }
}

/// The entry a new entry would repeat, if the rules refuse it.
fn refused_entry(presence: &Presence, rules: ListRules) -> Option<String> {
    if presence.inside && !rules.allow_multiple_entries {
        return presence.last_entry.clone();
    }
    if !presence.inside && presence.exited && !rules.allow_entry_after_exit {
        return presence.last_entry.clone();
    }
    None
}

/// An attendee as the rules need them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    pub attendee_id: String,
    pub revoked: bool,
    /// Lists the ticket is valid on; empty means every list.
    pub lists: Vec<String>,
}

impl Ticket {
    pub fn valid_on(&self, list_id: &str) -> bool {
        self.lists.is_empty() || self.lists.iter().any(|l| l == list_id)
    }
}

/// The answer a scanner shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// Let them in (or out): record the scan.
    Admitted,
    /// An exit was recorded.
    Exited,
    /// Already in (or, on a list without re-entry, already used): `scan` is
    /// the entry that counted; nothing is recorded.
    AlreadyCheckedIn {
        scan: String,
    },
    UnknownTicket,
    NotValidOnList,
    Revoked,
    /// A signed code whose signature does not hold under the event's key:
    /// forged, altered, or unreadable.
    InvalidSignature,
    /// A signed code made for another event.
    OtherEvent,
    /// A ticket not valid yet (entries only).
    NotYetValid {
        from_ms: i64,
    },
    /// A ticket no longer valid (entries only).
    Expired {
        until_ms: i64,
    },
}

/// What a new scan of `ticket` on `list_id` gets, given the attendee's
/// current presence on that list.
pub fn decide(
    ticket: Option<&Ticket>,
    list_id: &str,
    direction: Direction,
    presence: &Presence,
    rules: ListRules,
) -> Answer {
    let Some(ticket) = ticket else {
        return Answer::UnknownTicket;
    };
    if ticket.revoked {
        return Answer::Revoked;
    }
    if !ticket.valid_on(list_id) {
        return Answer::NotValidOnList;
    }
    match direction {
        Direction::Exit => Answer::Exited,
        Direction::Entry => match refused_entry(presence, rules) {
            Some(scan) => Answer::AlreadyCheckedIn { scan },
            None => Answer::Admitted,
        },
    }
}

/// What a new scan of a signed code whose signature holds gets: its dates
/// (for entries; anyone may leave), then a revocation of its attendee made
/// at or after the code was issued (`revoked_at_ms`, from the event's
/// revocation list), then the rules as for any ticket. `local` is the
/// attendee's ticket where this replica holds it (its own revocation and
/// lists count too); without it the code is valid on every list.
#[allow(clippy::too_many_arguments)]
pub fn decide_signed(
    claims: &TicketClaims,
    local: Option<&Ticket>,
    revoked_at_ms: Option<i64>,
    now_ms: i64,
    list_id: &str,
    direction: Direction,
    presence: &Presence,
    rules: ListRules,
) -> Answer {
    if direction == Direction::Entry {
        match claims.validity_at(now_ms) {
            Validity::Valid => {}
            Validity::NotYetValid { from_ms } => return Answer::NotYetValid { from_ms },
            Validity::Expired { until_ms } => return Answer::Expired { until_ms },
        }
    }
    if revoked_at_ms.is_some_and(|at| claims.issued_at_ms <= at) {
        return Answer::Revoked;
    }
    let unlisted = Ticket {
        attendee_id: claims.attendee_id.clone(),
        revoked: false,
        lists: Vec::new(),
    };
    decide(
        Some(local.unwrap_or(&unlisted)),
        list_id,
        direction,
        presence,
        rules,
    )
}

/// Counts for one list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Counts {
    /// Tickets valid on the list (not revoked).
    pub expected: u64,
    /// Of those, checked in at least once.
    pub checked_in: u64,
    /// Inside now.
    pub inside: u64,
}

/// Counts for `list_id` from an evaluation and the tickets.
pub fn counts<'a>(
    evaluation: &Evaluation,
    tickets: impl IntoIterator<Item = &'a Ticket>,
    list_id: &str,
) -> Counts {
    let mut counts = Counts::default();
    for ticket in tickets {
        if ticket.revoked || !ticket.valid_on(list_id) {
            continue;
        }
        counts.expected += 1;
        if let Some(p) = evaluation
            .presence
            .get(&(ticket.attendee_id.clone(), list_id.to_owned()))
        {
            counts.checked_in += u64::from(p.checked_in());
            counts.inside += u64::from(p.inside);
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn scan(
        id: &str,
        attendee: &str,
        list: &str,
        direction: Direction,
        wall: i64,
        node: &str,
    ) -> Scan {
        Scan {
            id: id.into(),
            attendee_id: attendee.into(),
            list_id: list.into(),
            direction,
            device_id: node.into(),
            staff_id: "staff".into(),
            hlc: Hlc {
                wall_ms: wall,
                counter: 0,
                node: node.into(),
            },
            wall_ms: wall,
        }
    }

    fn annul(id: &str, scan: &Scan, after_ms: i64) -> Annulment {
        Annulment {
            id: id.into(),
            scan_id: scan.id.clone(),
            device_id: scan.device_id.clone(),
            staff_id: "staff".into(),
            hlc: Hlc {
                wall_ms: scan.hlc.wall_ms + after_ms,
                counter: 0,
                node: scan.hlc.node.clone(),
            },
            wall_ms: scan.wall_ms + after_ms,
        }
    }

    const STRICT: ListRules = ListRules {
        allow_multiple_entries: false,
        allow_entry_after_exit: false,
    };
    const REENTRY: ListRules = ListRules {
        allow_multiple_entries: false,
        allow_entry_after_exit: true,
    };

    #[test]
    fn a_second_entry_is_a_duplicate_of_the_first() {
        let a = scan("s1", "ada", "door", Direction::Entry, 1_000, "t1");
        let b = scan("s2", "ada", "door", Direction::Entry, 2_000, "t2");
        let e = evaluate([&b, &a], [], |_| STRICT, DEFAULT_ANNUL_WINDOW_MS);
        assert_eq!(e.outcomes["s1"], ScanOutcome::Counted);
        assert_eq!(e.outcomes["s2"], ScanOutcome::Duplicate { of: "s1".into() });
        assert_eq!(e.duplicates.len(), 1);
        let p = &e.presence[&("ada".into(), "door".into())];
        assert!(p.inside && p.checked_in());
        // Same time: the scan id breaks the tie.
        let c = scan("s0", "ada", "door", Direction::Entry, 1_000, "t1");
        let e = evaluate([&a, &c], [], |_| STRICT, DEFAULT_ANNUL_WINDOW_MS);
        assert_eq!(e.outcomes["s1"], ScanOutcome::Duplicate { of: "s0".into() });
    }

    #[test]
    fn exits_and_re_entry_follow_the_list_rules() {
        let scans = [
            scan("s1", "ada", "door", Direction::Entry, 1_000, "t1"),
            scan("s2", "ada", "door", Direction::Exit, 2_000, "t1"),
            scan("s3", "ada", "door", Direction::Entry, 3_000, "t1"),
            scan("s4", "ada", "door", Direction::Exit, 4_000, "t1"),
            scan("s5", "ada", "door", Direction::Exit, 5_000, "t1"),
        ];
        let strict = evaluate(&scans, [], |_| STRICT, DEFAULT_ANNUL_WINDOW_MS);
        assert_eq!(
            strict.outcomes["s3"],
            ScanOutcome::Duplicate { of: "s1".into() }
        );
        assert_eq!(strict.outcomes["s4"], ScanOutcome::NotInside);
        let reentry = evaluate(&scans, [], |_| REENTRY, DEFAULT_ANNUL_WINDOW_MS);
        assert_eq!(reentry.outcomes["s3"], ScanOutcome::Counted);
        assert_eq!(reentry.outcomes["s4"], ScanOutcome::Counted);
        assert_eq!(reentry.outcomes["s5"], ScanOutcome::NotInside);
        assert!(!reentry.presence[&("ada".into(), "door".into())].inside);
        let multi = ListRules {
            allow_multiple_entries: true,
            allow_entry_after_exit: false,
        };
        let twice = [
            scan("s1", "ada", "door", Direction::Entry, 1_000, "t1"),
            scan("s2", "ada", "door", Direction::Entry, 2_000, "t2"),
        ];
        assert!(
            evaluate(&twice, [], |_| multi, DEFAULT_ANNUL_WINDOW_MS)
                .duplicates
                .is_empty()
        );
    }

    #[test]
    fn annulments_inside_the_window_undo_a_scan() {
        let a = scan("s1", "ada", "door", Direction::Entry, 1_000, "t1");
        let b = scan("s2", "ada", "door", Direction::Entry, 2_000, "t2");
        let in_time = annul("a1", &a, 60_000);
        let e = evaluate([&a, &b], [&in_time], |_| STRICT, DEFAULT_ANNUL_WINDOW_MS);
        assert_eq!(e.outcomes["s1"], ScanOutcome::Annulled);
        assert_eq!(
            e.outcomes["s2"],
            ScanOutcome::Counted,
            "no longer a duplicate"
        );
        let too_late = annul("a2", &a, DEFAULT_ANNUL_WINDOW_MS + 1);
        let e = evaluate([&a, &b], [&too_late], |_| STRICT, DEFAULT_ANNUL_WINDOW_MS);
        assert_eq!(e.outcomes["s1"], ScanOutcome::Counted);
    }

    #[test]
    fn answers_and_counts() {
        let ticket = Ticket {
            attendee_id: "ada".into(),
            revoked: false,
            lists: vec!["door".into()],
        };
        let nobody = Presence::default();
        assert_eq!(
            decide(None, "door", Direction::Entry, &nobody, STRICT),
            Answer::UnknownTicket
        );
        assert_eq!(
            decide(Some(&ticket), "vip", Direction::Entry, &nobody, STRICT),
            Answer::NotValidOnList
        );
        let revoked = Ticket {
            revoked: true,
            ..ticket.clone()
        };
        assert_eq!(
            decide(Some(&revoked), "door", Direction::Entry, &nobody, STRICT),
            Answer::Revoked
        );
        assert_eq!(
            decide(Some(&ticket), "door", Direction::Entry, &nobody, STRICT),
            Answer::Admitted
        );
        let a = scan("s1", "ada", "door", Direction::Entry, 1_000, "t1");
        let e = evaluate([&a], [], |_| STRICT, DEFAULT_ANNUL_WINDOW_MS);
        let p = &e.presence[&("ada".into(), "door".into())];
        assert_eq!(
            decide(Some(&ticket), "door", Direction::Entry, p, STRICT),
            Answer::AlreadyCheckedIn { scan: "s1".into() }
        );
        assert_eq!(
            decide(Some(&ticket), "door", Direction::Exit, p, STRICT),
            Answer::Exited
        );
        let bob = Ticket {
            attendee_id: "bob".into(),
            revoked: false,
            lists: vec![],
        };
        let eve = Ticket {
            attendee_id: "eve".into(),
            revoked: true,
            lists: vec![],
        };
        assert_eq!(
            counts(&e, [&ticket, &bob, &eve], "door"),
            Counts {
                expected: 2,
                checked_in: 1,
                inside: 1
            }
        );
    }

    #[test]
    fn a_signed_code_is_checked_for_its_dates_then_revocation_then_the_rules() {
        let claims = TicketClaims {
            attendee_id: "ada".into(),
            ticket_type: "day".into(),
            issued_at_ms: 5_000,
            valid_from_ms: Some(10_000),
            valid_until_ms: Some(20_000),
        };
        let nobody = Presence::default();
        let at = |now, revoked, direction| {
            decide_signed(
                &claims, None, revoked, now, "door", direction, &nobody, STRICT,
            )
        };
        assert_eq!(
            at(9_999, None, Direction::Entry),
            Answer::NotYetValid { from_ms: 10_000 }
        );
        assert_eq!(
            at(20_000, None, Direction::Entry),
            Answer::Expired { until_ms: 20_000 }
        );
        assert_eq!(
            at(20_000, None, Direction::Exit),
            Answer::Exited,
            "anyone may leave"
        );
        assert_eq!(at(15_000, None, Direction::Entry), Answer::Admitted);
        // Revoked at or after issue: refused; a code issued after the
        // revocation (a replacement) is good.
        assert_eq!(at(15_000, Some(5_000), Direction::Entry), Answer::Revoked);
        assert_eq!(at(15_000, Some(4_999), Direction::Entry), Answer::Admitted);
        // Where the replica holds the attendee, its record counts too.
        let local = Ticket {
            attendee_id: "ada".into(),
            revoked: false,
            lists: vec!["vip".into()],
        };
        assert_eq!(
            decide_signed(
                &claims,
                Some(&local),
                None,
                15_000,
                "door",
                Direction::Entry,
                &nobody,
                STRICT
            ),
            Answer::NotValidOnList
        );
        let inside = Presence {
            inside: true,
            first_entry: Some("s1".into()),
            last_entry: Some("s1".into()),
            exited: false,
        };
        assert_eq!(
            decide_signed(
                &claims,
                None,
                None,
                15_000,
                "door",
                Direction::Entry,
                &inside,
                STRICT
            ),
            Answer::AlreadyCheckedIn { scan: "s1".into() }
        );
    }

    fn arbitrary_scans() -> impl Strategy<Value = (Vec<Scan>, Vec<Annulment>)> {
        let one = (0..4u8, 0..2u8, any::<bool>(), 0..20i64, 0..3u8, 0..3u32);
        proptest::collection::vec(one, 1..40).prop_map(|raw| {
            let mut scans = Vec::new();
            let mut annulments = Vec::new();
            for (i, (attendee, list, entry, wall, node, counter)) in raw.into_iter().enumerate() {
                let mut s = scan(
                    &format!("s{i:02}"),
                    &format!("a{attendee}"),
                    &format!("l{list}"),
                    if entry {
                        Direction::Entry
                    } else {
                        Direction::Exit
                    },
                    wall * 1_000,
                    &format!("t{node}"),
                );
                s.hlc.counter = counter;
                if i % 7 == 3 {
                    annulments.push(annul(&format!("x{i}"), &s, 500));
                }
                scans.push(s);
            }
            (scans, annulments)
        })
    }

    proptest! {
        /// Any order of the same scans (and repeats of them, as sync may
        /// deliver) gives the same states and the same duplicates.
        #[test]
        fn every_order_gives_the_same_answer(
            (scans, annulments) in arbitrary_scans(),
            seed in any::<u64>(),
            rules_pick in 0..3u8,
        ) {
            let rules = move |list: &str| match (rules_pick, list) {
                (0, _) => STRICT,
                (1, _) => REENTRY,
                (_, "l0") => STRICT,
                _ => ListRules { allow_multiple_entries: true, allow_entry_after_exit: true },
            };
            let reference = evaluate(&scans, &annulments, rules, DEFAULT_ANNUL_WINDOW_MS);
            let mut shuffled: Vec<Scan> = scans.iter().chain(scans.iter().take(3)).cloned().collect();
            let mut state = seed;
            for i in (1..shuffled.len()).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (state >> 33) as usize % (i + 1));
            }
            let mut annulled = annulments.clone();
            annulled.reverse();
            let other = evaluate(&shuffled, &annulled, rules, DEFAULT_ANNUL_WINDOW_MS);
            prop_assert_eq!(&reference, &other);
            // Every duplicate repeats a counted entry of the same attendee and list.
            for d in &reference.duplicates {
                prop_assert_eq!(&reference.outcomes[&d.of], &ScanOutcome::Counted);
            }
        }
    }
}
