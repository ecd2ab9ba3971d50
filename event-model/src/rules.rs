//! The check-in rules, as pure functions of the records (no clock, no IO),
//! so every replica that holds the same scans computes the same states and
//! the same duplicates, whatever order the scans arrived in.
//!
//! Learned from pretixSCAN: a scan is never rejected after the fact; two
//! entries with no exit between them (on a list that does not allow several
//! entries) make the later one, by clock and then by scan id, a duplicate
//! that staff see and administrators review. So do entries beyond a list's
//! limit per day.
//!
//! Rules of time are of two kinds. Those that judge a scan by when it
//! happens (valid from / until, weekdays) answer at the door with the
//! tablet's clock and are never applied again: a scan admitted is recorded.
//! Those that shape a stay (entries per day, the nightly check-out of
//! everyone) are applied to the recorded scans by their clocks (`hlc`,
//! which orders them too), so every replica reaches the same outcomes; the
//! check-out needs no scan: a stay ends at the first `exit_all_at` after
//! its entry, read at any later time ([`Presence::at`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};

use crate::calendar::{Calendar, TimeOfDay, Weekdays};
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
    /// When the list admits (anyone may always leave).
    #[serde(default)]
    pub window: EntryWindow,
    /// Counted entries per attendee and local day, at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_entries_per_day: Option<NonZeroU32>,
    /// Everyone inside is checked out when the event's clock next shows
    /// this time (a stay ends there; coming back is an entry after an exit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_all_at: Option<TimeOfDay>,
}

/// When entries are allowed by the calendar: from, until, and on which
/// days of the week (in the event's time zone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EntryWindow {
    /// Unix ms; entries before it are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_from_ms: Option<i64>,
    /// Unix ms; entries at or after it are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "every_day")]
    pub weekdays: Weekdays,
}

fn every_day(days: &Weekdays) -> bool {
    days.is_every_day()
}

impl EntryWindow {
    pub fn is_open(&self) -> bool {
        *self == Self::default()
    }

    /// Why an entry at `now_ms` is refused, if it is.
    pub fn refusal(&self, now_ms: i64, calendar: &Calendar) -> Option<Answer> {
        if let Some(from_ms) = self.valid_from_ms
            && now_ms < from_ms
        {
            return Some(Answer::NotYetValid { from_ms });
        }
        if let Some(until_ms) = self.valid_until_ms
            && now_ms >= until_ms
        {
            return Some(Answer::Expired { until_ms });
        }
        if !self.weekdays.is_every_day() && !self.weekdays.contains(calendar.weekday(now_ms)) {
            return Some(Answer::NotValidToday {
                weekdays: self.weekdays,
            });
        }
        None
    }
}

/// A ticket type's rules (every attendee of the type).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TicketType {
    pub name: String,
    /// When tickets of the type admit, on any list.
    #[serde(default)]
    pub window: EntryWindow,
    /// What staff must see or do when one of the type comes in ("ID
    /// check: 18+", "VIP: escort to the lounge").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention: Option<String>,
}

/// Where and when a new scan is made: what its answer depends on besides
/// the attendee.
#[derive(Debug, Clone, Copy)]
pub struct Door<'a> {
    pub list_id: &'a str,
    pub rules: ListRules,
    /// The window of the attendee's ticket type (open where it has none).
    pub ticket_window: EntryWindow,
    /// The tablet's clock.
    pub now_ms: i64,
    pub calendar: &'a Calendar,
    /// Staff at this door confirmed that an unpaid ticket is paid (the
    /// second step of [`Answer::ConfirmPayment`]).
    pub payment_confirmed: bool,
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
    /// Admitted on a signed code's word (its attendee was vouched for by
    /// the event's key, maybe before the tablet held them).
    #[serde(default, skip_serializing_if = "is_false")]
    pub by_signature: bool,
    /// Staff confirmed at the door that an unpaid ticket was paid.
    #[serde(default, skip_serializing_if = "is_false")]
    pub payment_taken: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
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
    /// When the stay ends by the list's `exit_all_at` (Unix ms), if they
    /// are inside on such a list.
    #[serde(default)]
    pub stay_ends_at_ms: Option<i64>,
    /// The local day of the last counted entry ([`Calendar::day`]) and how
    /// many were counted that day, on a list with a limit per day.
    #[serde(default)]
    pub entry_day: Option<i32>,
    #[serde(default)]
    pub entries_that_day: u32,
}

impl Presence {
    pub fn checked_in(&self) -> bool {
        self.first_entry.is_some()
    }

    /// The presence at `at_ms`: a stay whose end (`exit_all_at`) has come
    /// is over, as if they had left then.
    pub fn at(&self, at_ms: i64) -> Presence {
        let mut now = self.clone();
        now.end_stay_by(at_ms);
        now
    }

    fn end_stay_by(&mut self, at_ms: i64) {
        if self.inside && self.stay_ends_at_ms.is_some_and(|end| end <= at_ms) {
            self.inside = false;
            self.exited = true;
            self.stay_ends_at_ms = None;
        }
    }

    /// Counted entries on local day `day`.
    fn entries_on(&self, day: i32) -> u32 {
        if self.entry_day == Some(day) {
            self.entries_that_day
        } else {
            0
        }
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
    calendar: &Calendar,
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
        let outcome = step(presence, scan, list_rules, calendar);
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

/// One scan applied to one attendee's presence on its list, at the time
/// of its clock.
fn step(
    presence: &mut Presence,
    scan: &Scan,
    rules: ListRules,
    calendar: &Calendar,
) -> ScanOutcome {
    let at_ms = scan.hlc.wall_ms;
    presence.end_stay_by(at_ms);
    match scan.direction {
        Direction::Entry => {
            if let Some(repeated) = refused_entry(presence, rules) {
                return ScanOutcome::Duplicate { of: repeated };
            }
            let day = rules.max_entries_per_day.map(|_| calendar.day(at_ms));
            if let Some(repeated) = over_daily_limit(presence, rules, day) {
                return ScanOutcome::Duplicate { of: repeated };
            }
            presence.inside = true;
            presence.first_entry.get_or_insert_with(|| scan.id.clone());
            presence.last_entry = Some(scan.id.clone());
            presence.stay_ends_at_ms = rules
                .exit_all_at
                .and_then(|time| calendar.next_time_of_day(time, at_ms));
            if let Some(day) = day {
                presence.entries_that_day = presence.entries_on(day) + 1;
                presence.entry_day = Some(day);
            }
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

/// The last entry of the day, if a new entry on local day `day` is over
/// the list's limit per day.
fn over_daily_limit(presence: &Presence, rules: ListRules, day: Option<i32>) -> Option<String> {
    let (limit, day) = (rules.max_entries_per_day?, day?);
    (presence.entries_on(day) >= limit.get())
        .then(|| presence.last_entry.clone())
        .flatten()
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
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Ticket {
    pub attendee_id: String,
    pub revoked: bool,
    /// Lists the ticket is valid on; empty means every list.
    pub lists: Vec<String>,
    /// What staff must see at the door (the attendee's note and their
    /// ticket type's, one per line).
    #[serde(default)]
    pub attention: Option<String>,
    /// Not paid yet: the first entry waits for staff to confirm payment.
    #[serde(default)]
    pub unpaid: bool,
}

/// The note staff see for an attendee: theirs and their ticket type's,
/// one per line (blank ones left out).
pub fn joined_notes(attendee: Option<&str>, ticket_type: Option<&str>) -> Option<String> {
    let notes: Vec<&str> = [attendee, ticket_type]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|note| !note.is_empty())
        .collect();
    (!notes.is_empty()).then(|| notes.join("\n"))
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
    /// Let them in, and show staff the note first (an ID check, a VIP):
    /// the scan is recorded.
    AdmittedWithAttention {
        note: String,
    },
    /// Not paid: staff take payment and confirm, then the same scan again
    /// with the payment confirmed admits; nothing is recorded yet.
    ConfirmPayment {
        note: Option<String>,
    },
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
    /// Not on this day of the week (entries only).
    NotValidToday {
        weekdays: Weekdays,
    },
    /// The list's entries per day are used up for today (entries only).
    DailyLimitReached {
        limit: u32,
    },
}

/// What a new scan of `ticket` at `door` gets, given the attendee's
/// presence on the door's list as recorded (read at the door's time here).
/// Entries: the list's window, then the ticket type's, then the stay
/// rules, then the limit per day.
pub fn decide(
    ticket: Option<&Ticket>,
    direction: Direction,
    presence: &Presence,
    door: &Door<'_>,
) -> Answer {
    let Some(ticket) = ticket else {
        return Answer::UnknownTicket;
    };
    if ticket.revoked {
        return Answer::Revoked;
    }
    if !ticket.valid_on(door.list_id) {
        return Answer::NotValidOnList;
    }
    if direction == Direction::Exit {
        return Answer::Exited;
    }
    if let Some(refusal) = door
        .rules
        .window
        .refusal(door.now_ms, door.calendar)
        .or_else(|| door.ticket_window.refusal(door.now_ms, door.calendar))
    {
        return refusal;
    }
    let presence = presence.at(door.now_ms);
    if let Some(scan) = refused_entry(&presence, door.rules) {
        return Answer::AlreadyCheckedIn { scan };
    }
    if let Some(limit) = door.rules.max_entries_per_day
        && presence.entries_on(door.calendar.day(door.now_ms)) >= limit.get()
    {
        return Answer::DailyLimitReached { limit: limit.get() };
    }
    // Payment is asked for at the first entry only: a later one follows
    // an entry that was confirmed (or made before the flag was set).
    if ticket.unpaid && !presence.checked_in() && !door.payment_confirmed {
        return Answer::ConfirmPayment {
            note: ticket.attention.clone(),
        };
    }
    match &ticket.attention {
        Some(note) => Answer::AdmittedWithAttention { note: note.clone() },
        None => Answer::Admitted,
    }
}

impl Answer {
    /// Whether the answer records the scan (an entry let in, an exit).
    pub fn records_scan(&self) -> bool {
        matches!(
            self,
            Answer::Admitted | Answer::AdmittedWithAttention { .. } | Answer::Exited
        )
    }
}

/// What a new scan of a signed code whose signature holds gets: its dates
/// (for entries; anyone may leave), then a revocation of its attendee made
/// at or after the code was issued (`revoked_at_ms`, from the event's
/// revocation list), then the rules as for any ticket. `local` is the
/// attendee's ticket where this replica holds it (its own revocation,
/// lists and flags count too), or what the code and its ticket type say;
/// without it the code is valid on every list.
pub fn decide_signed(
    claims: &TicketClaims,
    local: Option<&Ticket>,
    revoked_at_ms: Option<i64>,
    direction: Direction,
    presence: &Presence,
    door: &Door<'_>,
) -> Answer {
    if direction == Direction::Entry {
        match claims.validity_at(door.now_ms) {
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
        ..Ticket::default()
    };
    decide(Some(local.unwrap_or(&unlisted)), direction, presence, door)
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

/// Counts for `list_id` from an evaluation and the tickets, at `at_ms`
/// (stays ended by a check-out of everyone are not inside).
pub fn counts<'a>(
    evaluation: &Evaluation,
    tickets: impl IntoIterator<Item = &'a Ticket>,
    list_id: &str,
    at_ms: i64,
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
            counts.inside += u64::from(p.at(at_ms).inside);
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
            by_signature: false,
            payment_taken: false,
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
        window: OPEN,
        max_entries_per_day: None,
        exit_all_at: None,
    };
    const REENTRY: ListRules = ListRules {
        allow_entry_after_exit: true,
        ..STRICT
    };
    const OPEN: EntryWindow = EntryWindow {
        valid_from_ms: None,
        valid_until_ms: None,
        weekdays: Weekdays::EVERY_DAY,
    };
    static UTC: Calendar = Calendar::utc();
    const HOUR: i64 = 3_600_000;
    /// 2026-12-05, a Saturday, 00:00 UTC.
    const SATURDAY: i64 = 1_796_428_800_000;

    fn door(list_id: &str, rules: ListRules, now_ms: i64) -> Door<'_> {
        Door {
            list_id,
            rules,
            ticket_window: OPEN,
            now_ms,
            calendar: &UTC,
            payment_confirmed: false,
        }
    }

    /// After one counted entry `s1`: still inside, or left since.
    fn after_entry_s1(inside: bool) -> Presence {
        Presence {
            inside,
            exited: !inside,
            first_entry: Some("s1".into()),
            last_entry: Some("s1".into()),
            ..Presence::default()
        }
    }

    /// The rules over `scans` with the default annulment window, in UTC.
    fn evaluate_utc<'a>(
        scans: impl IntoIterator<Item = &'a Scan>,
        annulments: impl IntoIterator<Item = &'a Annulment>,
        rules: impl Fn(&str) -> ListRules,
    ) -> Evaluation {
        evaluate(scans, annulments, rules, DEFAULT_ANNUL_WINDOW_MS, &UTC)
    }

    fn four_am() -> TimeOfDay {
        TimeOfDay::new(4, 0).unwrap()
    }

    fn open_ticket(attendee: &str) -> Ticket {
        Ticket {
            attendee_id: attendee.into(),
            revoked: false,
            lists: vec![],
            ..Ticket::default()
        }
    }

    #[test]
    fn entries_are_refused_outside_the_window_of_the_list_and_of_the_ticket_type() {
        let ada = open_ticket("ada");
        let nobody = Presence::default();
        let weekend = ListRules {
            window: EntryWindow {
                valid_from_ms: Some(SATURDAY),
                valid_until_ms: Some(SATURDAY + 14 * 24 * HOUR),
                weekdays: "sat,sun".parse().unwrap(),
            },
            ..REENTRY
        };
        let at = |now_ms, ticket_window| {
            let door = Door {
                ticket_window,
                ..door("door", weekend, now_ms)
            };
            (
                decide(Some(&ada), Direction::Entry, &nobody, &door),
                decide(Some(&ada), Direction::Exit, &nobody, &door),
            )
        };
        assert_eq!(
            at(SATURDAY - 1, OPEN).0,
            Answer::NotYetValid { from_ms: SATURDAY }
        );
        assert_eq!(at(SATURDAY, OPEN).0, Answer::Admitted);
        assert_eq!(at(SATURDAY + 47 * HOUR, OPEN).0, Answer::Admitted, "Sunday");
        assert_eq!(
            at(SATURDAY + 48 * HOUR, OPEN),
            (
                Answer::NotValidToday {
                    weekdays: weekend.window.weekdays
                },
                Answer::Exited
            ),
            "Monday: no entry, but anyone may leave"
        );
        assert_eq!(
            at(SATURDAY + 14 * 24 * HOUR, OPEN).0,
            Answer::Expired {
                until_ms: SATURDAY + 14 * 24 * HOUR
            }
        );
        // The ticket type's window applies on top of the list's.
        let saturday_only = EntryWindow {
            valid_until_ms: Some(SATURDAY + 24 * HOUR),
            ..OPEN
        };
        assert_eq!(at(SATURDAY + 23 * HOUR, saturday_only).0, Answer::Admitted);
        assert_eq!(
            at(SATURDAY + 25 * HOUR, saturday_only).0,
            Answer::Expired {
                until_ms: SATURDAY + 24 * HOUR
            }
        );
        // In the event's zone: Saturday 23:30 UTC is Sunday in Auckland.
        let auckland = Calendar::named("Pacific/Auckland").unwrap();
        let saturdays = ListRules {
            window: EntryWindow {
                weekdays: "sat".parse().unwrap(),
                ..OPEN
            },
            ..STRICT
        };
        let late = SATURDAY + 23 * HOUR + HOUR / 2;
        assert_eq!(
            decide(
                Some(&ada),
                Direction::Entry,
                &nobody,
                &door("door", saturdays, late)
            ),
            Answer::Admitted
        );
        let in_auckland = Door {
            calendar: &auckland,
            ..door("door", saturdays, late)
        };
        assert!(matches!(
            decide(Some(&ada), Direction::Entry, &nobody, &in_auckland),
            Answer::NotValidToday { .. }
        ));
    }

    #[test]
    fn attention_is_shown_on_entry_and_an_unpaid_first_entry_waits_for_payment() {
        let vip = Ticket {
            attention: joined_notes(Some(" VIP: escort "), Some("ID check")),
            ..open_ticket("ada")
        };
        assert_eq!(vip.attention.as_deref(), Some("VIP: escort\nID check"));
        assert_eq!(joined_notes(Some("  "), None), None);
        let nobody = Presence::default();
        let at_door = door("door", REENTRY, 0);
        let note = "VIP: escort\nID check".to_owned();
        assert_eq!(
            decide(Some(&vip), Direction::Entry, &nobody, &at_door),
            Answer::AdmittedWithAttention { note: note.clone() }
        );
        assert!(Answer::AdmittedWithAttention { note }.records_scan());
        assert_eq!(
            decide(Some(&vip), Direction::Exit, &nobody, &at_door),
            Answer::Exited,
            "leaving needs no attention"
        );
        // Refusals come first: a VIP already inside is already inside.
        let inside = after_entry_s1(true);
        let strict = door("door", STRICT, 0);
        assert_eq!(
            decide(Some(&vip), Direction::Entry, &inside, &strict),
            Answer::AlreadyCheckedIn { scan: "s1".into() }
        );

        let unpaid = Ticket {
            unpaid: true,
            ..open_ticket("bob")
        };
        let asked = decide(Some(&unpaid), Direction::Entry, &nobody, &at_door);
        assert_eq!(asked, Answer::ConfirmPayment { note: None });
        assert!(!asked.records_scan(), "nothing is recorded before payment");
        let confirmed = Door {
            payment_confirmed: true,
            ..at_door
        };
        assert_eq!(
            decide(Some(&unpaid), Direction::Entry, &nobody, &confirmed),
            Answer::Admitted
        );
        // Back in after leaving: the first entry was paid for.
        let left = after_entry_s1(false);
        assert_eq!(
            decide(Some(&unpaid), Direction::Entry, &left, &at_door),
            Answer::Admitted
        );
        // A revoked unpaid ticket is refused, not offered for payment.
        let revoked = Ticket {
            revoked: true,
            ..unpaid
        };
        assert_eq!(
            decide(Some(&revoked), Direction::Entry, &nobody, &at_door),
            Answer::Revoked
        );
    }

    #[test]
    fn entries_beyond_the_limit_per_day_are_refused_and_flagged_until_the_next_day() {
        let twice_a_day = ListRules {
            allow_multiple_entries: true,
            allow_entry_after_exit: true,
            max_entries_per_day: NonZeroU32::new(2),
            ..STRICT
        };
        let scans = [
            scan(
                "s1",
                "ada",
                "door",
                Direction::Entry,
                SATURDAY + 9 * HOUR,
                "t1",
            ),
            scan(
                "s2",
                "ada",
                "door",
                Direction::Exit,
                SATURDAY + 10 * HOUR,
                "t1",
            ),
            scan(
                "s3",
                "ada",
                "door",
                Direction::Entry,
                SATURDAY + 11 * HOUR,
                "t2",
            ),
            // A third the same day, from a tablet that did not know of s3.
            scan(
                "s4",
                "ada",
                "door",
                Direction::Entry,
                SATURDAY + 12 * HOUR,
                "t3",
            ),
            // Sunday: a new day.
            scan(
                "s5",
                "ada",
                "door",
                Direction::Entry,
                SATURDAY + 33 * HOUR,
                "t1",
            ),
        ];
        let e = evaluate_utc(&scans, [], |_| twice_a_day);
        assert_eq!(e.outcomes["s3"], ScanOutcome::Counted);
        assert_eq!(e.outcomes["s4"], ScanOutcome::Duplicate { of: "s3".into() });
        assert_eq!(e.outcomes["s5"], ScanOutcome::Counted);
        assert_eq!(e.duplicates.len(), 1);
        // At the door, after s3: refused for the rest of Saturday.
        let after_s3 = evaluate_utc(&scans[..3], [], |_| twice_a_day);
        let p = &after_s3.presence[&("ada".into(), "door".into())];
        let ada = open_ticket("ada");
        assert_eq!(
            decide(
                Some(&ada),
                Direction::Entry,
                p,
                &door("door", twice_a_day, SATURDAY + 23 * HOUR)
            ),
            Answer::DailyLimitReached { limit: 2 }
        );
        assert_eq!(
            decide(
                Some(&ada),
                Direction::Entry,
                p,
                &door("door", twice_a_day, SATURDAY + 24 * HOUR)
            ),
            Answer::Admitted
        );
        // An annulled entry gives its place back.
        let undo = annul("x3", &scans[2], 60_000);
        let e = evaluate_utc(&scans, [&undo], |_| twice_a_day);
        assert_eq!(e.outcomes["s4"], ScanOutcome::Counted);
    }

    #[test]
    fn everyone_is_checked_out_at_exit_all_at_without_a_scan() {
        let nightly = ListRules {
            exit_all_at: Some(four_am()),
            ..REENTRY
        };
        let ada = open_ticket("ada");
        let scans = [
            scan(
                "s1",
                "ada",
                "door",
                Direction::Entry,
                SATURDAY + 20 * HOUR,
                "t1",
            ),
            // After 04:00 on Sunday: she was checked out, so this exit finds
            // her outside, and Sunday's entry is an entry after an exit.
            scan(
                "s2",
                "ada",
                "door",
                Direction::Exit,
                SATURDAY + 29 * HOUR,
                "t1",
            ),
            scan(
                "s3",
                "ada",
                "door",
                Direction::Entry,
                SATURDAY + 30 * HOUR,
                "t1",
            ),
        ];
        let first = evaluate_utc(&scans[..1], [], |_| nightly);
        let inside_at = |at| counts(&first, [&ada], "door", at).inside;
        assert_eq!(inside_at(SATURDAY + 27 * HOUR), 1, "03:00 Sunday");
        assert_eq!(inside_at(SATURDAY + 28 * HOUR), 0, "04:00 Sunday");
        assert_eq!(
            counts(&first, [&ada], "door", SATURDAY + 28 * HOUR).checked_in,
            1
        );
        let e = evaluate_utc(&scans, [], |_| nightly);
        assert_eq!(e.outcomes["s2"], ScanOutcome::NotInside);
        assert_eq!(e.outcomes["s3"], ScanOutcome::Counted);
        // Without re-entry, Sunday's entry repeats Saturday's.
        let strict_nightly = ListRules {
            exit_all_at: Some(four_am()),
            ..STRICT
        };
        let e = evaluate_utc(&scans, [], |_| strict_nightly);
        assert_eq!(e.outcomes["s3"], ScanOutcome::Duplicate { of: "s1".into() });
        // At the door: inside before 04:00, out after.
        let p = &first.presence[&("ada".into(), "door".into())];
        assert_eq!(
            decide(
                Some(&ada),
                Direction::Entry,
                p,
                &door("door", nightly, SATURDAY + 27 * HOUR)
            ),
            Answer::AlreadyCheckedIn { scan: "s1".into() }
        );
        assert_eq!(
            decide(
                Some(&ada),
                Direction::Entry,
                p,
                &door("door", nightly, SATURDAY + 28 * HOUR)
            ),
            Answer::Admitted
        );
    }

    #[test]
    fn a_second_entry_is_a_duplicate_of_the_first() {
        let a = scan("s1", "ada", "door", Direction::Entry, 1_000, "t1");
        let b = scan("s2", "ada", "door", Direction::Entry, 2_000, "t2");
        let e = evaluate_utc([&b, &a], [], |_| STRICT);
        assert_eq!(e.outcomes["s1"], ScanOutcome::Counted);
        assert_eq!(e.outcomes["s2"], ScanOutcome::Duplicate { of: "s1".into() });
        assert_eq!(e.duplicates.len(), 1);
        let p = &e.presence[&("ada".into(), "door".into())];
        assert!(p.inside && p.checked_in());
        // Same time: the scan id breaks the tie.
        let c = scan("s0", "ada", "door", Direction::Entry, 1_000, "t1");
        let e = evaluate_utc([&a, &c], [], |_| STRICT);
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
        let strict = evaluate_utc(&scans, [], |_| STRICT);
        assert_eq!(
            strict.outcomes["s3"],
            ScanOutcome::Duplicate { of: "s1".into() }
        );
        assert_eq!(strict.outcomes["s4"], ScanOutcome::NotInside);
        let reentry = evaluate_utc(&scans, [], |_| REENTRY);
        assert_eq!(reentry.outcomes["s3"], ScanOutcome::Counted);
        assert_eq!(reentry.outcomes["s4"], ScanOutcome::Counted);
        assert_eq!(reentry.outcomes["s5"], ScanOutcome::NotInside);
        assert!(!reentry.presence[&("ada".into(), "door".into())].inside);
        let multi = ListRules {
            allow_multiple_entries: true,
            ..STRICT
        };
        let twice = [
            scan("s1", "ada", "door", Direction::Entry, 1_000, "t1"),
            scan("s2", "ada", "door", Direction::Entry, 2_000, "t2"),
        ];
        assert!(evaluate_utc(&twice, [], |_| multi).duplicates.is_empty());
    }

    #[test]
    fn annulments_inside_the_window_undo_a_scan() {
        let a = scan("s1", "ada", "door", Direction::Entry, 1_000, "t1");
        let b = scan("s2", "ada", "door", Direction::Entry, 2_000, "t2");
        let in_time = annul("a1", &a, 60_000);
        let e = evaluate_utc([&a, &b], [&in_time], |_| STRICT);
        assert_eq!(e.outcomes["s1"], ScanOutcome::Annulled);
        assert_eq!(
            e.outcomes["s2"],
            ScanOutcome::Counted,
            "no longer a duplicate"
        );
        let too_late = annul("a2", &a, DEFAULT_ANNUL_WINDOW_MS + 1);
        let e = evaluate_utc([&a, &b], [&too_late], |_| STRICT);
        assert_eq!(e.outcomes["s1"], ScanOutcome::Counted);
    }

    #[test]
    fn answers_and_counts() {
        let ticket = Ticket {
            attendee_id: "ada".into(),
            revoked: false,
            lists: vec!["door".into()],
            ..Ticket::default()
        };
        let nobody = Presence::default();
        assert_eq!(
            decide(None, Direction::Entry, &nobody, &door("door", STRICT, 0)),
            Answer::UnknownTicket
        );
        assert_eq!(
            decide(
                Some(&ticket),
                Direction::Entry,
                &nobody,
                &door("vip", STRICT, 0)
            ),
            Answer::NotValidOnList
        );
        let revoked = Ticket {
            revoked: true,
            ..ticket.clone()
        };
        assert_eq!(
            decide(
                Some(&revoked),
                Direction::Entry,
                &nobody,
                &door("door", STRICT, 0)
            ),
            Answer::Revoked
        );
        assert_eq!(
            decide(
                Some(&ticket),
                Direction::Entry,
                &nobody,
                &door("door", STRICT, 0)
            ),
            Answer::Admitted
        );
        let a = scan("s1", "ada", "door", Direction::Entry, 1_000, "t1");
        let e = evaluate_utc([&a], [], |_| STRICT);
        let p = &e.presence[&("ada".into(), "door".into())];
        assert_eq!(
            decide(Some(&ticket), Direction::Entry, p, &door("door", STRICT, 0)),
            Answer::AlreadyCheckedIn { scan: "s1".into() }
        );
        assert_eq!(
            decide(Some(&ticket), Direction::Exit, p, &door("door", STRICT, 0)),
            Answer::Exited
        );
        let bob = Ticket {
            attendee_id: "bob".into(),
            revoked: false,
            lists: vec![],
            ..Ticket::default()
        };
        let eve = Ticket {
            attendee_id: "eve".into(),
            revoked: true,
            lists: vec![],
            ..Ticket::default()
        };
        assert_eq!(
            counts(&e, [&ticket, &bob, &eve], "door", 2_000),
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
                &claims,
                None,
                revoked,
                direction,
                &nobody,
                &door("door", STRICT, now),
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
            ..Ticket::default()
        };
        assert_eq!(
            decide_signed(
                &claims,
                Some(&local),
                None,
                Direction::Entry,
                &nobody,
                &door("door", STRICT, 15_000)
            ),
            Answer::NotValidOnList
        );
        let inside = after_entry_s1(true);
        assert_eq!(
            decide_signed(
                &claims,
                None,
                None,
                Direction::Entry,
                &inside,
                &door("door", STRICT, 15_000)
            ),
            Answer::AlreadyCheckedIn { scan: "s1".into() }
        );
    }

    /// Scans `unit_ms` apart at most 20 times: a few seconds, or (at
    /// three hours) two and a half days, across midnights and check-outs.
    fn arbitrary_scans(unit_ms: i64) -> impl Strategy<Value = (Vec<Scan>, Vec<Annulment>)> {
        let one = (0..4u8, 0..2u8, any::<bool>(), 0..20i64, 0..3u8, 0..3u32);
        proptest::collection::vec(one, 1..40).prop_map(move |raw| {
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
                    SATURDAY + wall * unit_ms,
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
        /// deliver) gives the same states and the same duplicates, under
        /// every kind of rule; and the rules of count and time hold.
        #[test]
        fn every_order_gives_the_same_answer(
            seed in any::<u64>(),
            rules_pick in 0..6u8,
            in_berlin in any::<bool>(),
            (scans, annulments) in (prop_oneof![Just(1_000i64), Just(3 * HOUR)])
                .prop_flat_map(arbitrary_scans),
        ) {
            let calendar = if in_berlin {
                Calendar::named("Europe/Berlin").unwrap()
            } else {
                Calendar::utc()
            };
            let open = ListRules { allow_multiple_entries: true, allow_entry_after_exit: true, ..STRICT };
            let rules = move |list: &str| match (rules_pick, list) {
                (0, _) => STRICT,
                (1, _) => REENTRY,
                (2, "l0") => STRICT,
                (2, _) => open,
                (3, _) => ListRules { max_entries_per_day: NonZeroU32::new(2), ..open },
                (4, _) => ListRules { exit_all_at: Some(four_am()), ..REENTRY },
                _ => ListRules {
                    max_entries_per_day: NonZeroU32::new(1),
                    exit_all_at: TimeOfDay::new(23, 30),
                    ..open
                },
            };
            let reference = evaluate(&scans, &annulments, rules, DEFAULT_ANNUL_WINDOW_MS, &calendar);
            let mut shuffled: Vec<Scan> = scans.iter().chain(scans.iter().take(3)).cloned().collect();
            let mut state = seed;
            for i in (1..shuffled.len()).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (state >> 33) as usize % (i + 1));
            }
            let mut annulled = annulments.clone();
            annulled.reverse();
            let other = evaluate(&shuffled, &annulled, rules, DEFAULT_ANNUL_WINDOW_MS, &calendar);
            prop_assert_eq!(&reference, &other);
            // Every duplicate repeats a counted entry of the same attendee and list.
            for d in &reference.duplicates {
                prop_assert_eq!(&reference.outcomes[&d.of], &ScanOutcome::Counted);
            }
            // No more counted entries a day than the list allows.
            let mut per_day: HashMap<(&str, &str, i32), u32> = HashMap::new();
            for s in &scans {
                if s.direction == Direction::Entry && reference.outcomes[&s.id] == ScanOutcome::Counted {
                    *per_day.entry((&s.attendee_id, &s.list_id, calendar.day(s.hlc.wall_ms))).or_default() += 1;
                }
            }
            for ((_, list, _), n) in per_day {
                if let Some(limit) = rules(list).max_entries_per_day {
                    prop_assert!(n <= limit.get());
                }
            }
            // A stay on a list with a check-out of everyone ends at the
            // first one after its entry, and nobody is inside after it.
            let by_id: HashMap<&str, &Scan> = scans.iter().map(|s| (s.id.as_str(), s)).collect();
            for ((_, list), p) in &reference.presence {
                if let (Some(time), true) = (rules(list).exit_all_at, p.inside) {
                    let entered = by_id[p.last_entry.as_deref().unwrap()].hlc.wall_ms;
                    prop_assert_eq!(p.stay_ends_at_ms, calendar.next_time_of_day(time, entered));
                    prop_assert!(!p.at(entered + 25 * HOUR).inside);
                }
            }
        }
    }
}
