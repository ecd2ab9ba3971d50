//! Offline check-in analytics from the local index: arrivals per time
//! bucket and list, the peak, each device's tally and the median time
//! between its scans, duplicates per door, no-shows per ticket type; and
//! the check-in report as CSV. The same figures on a tablet and on the
//! desktop, from whatever this replica holds, without the network.
//!
//! The figures over scans are a pure fold ([`ScanTally`]) fed one row at a
//! time, so they are tested without SQLite and depend on the set of scans,
//! never on the order the rows come in.

use std::collections::{BTreeMap, HashMap};

use rusqlite::params;
use serde::Serialize;
use sync_protocol::DocumentId;

use crate::{ClientCore, ClientError};

/// Counted entries on one list in one bucket of time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Arrivals {
    pub list_id: String,
    /// Start of the bucket (Unix ms, a multiple of the bucket's width).
    pub start_ms: i64,
    pub entries: u64,
}

/// The busiest bucket, all lists together.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Peak {
    pub start_ms: i64,
    pub entries: u64,
    pub per_minute: f64,
}

/// What one device scanned.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct DeviceTally {
    pub device_id: String,
    /// Counted entries.
    pub entries: u64,
    /// Counted exits.
    pub exits: u64,
    pub duplicates: u64,
    pub annulled: u64,
    /// Payments taken at the door for unpaid tickets (not annulled scans).
    pub payments_taken: u64,
    /// Median time between two consecutive scans of the device (any
    /// outcome), where it made two or more.
    pub median_gap_ms: Option<i64>,
}

/// What happened at one door.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ListTally {
    pub list_id: String,
    pub entries: u64,
    pub exits: u64,
    pub duplicates: u64,
}

/// Who came, per ticket type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TicketTypeTally {
    pub ticket_type: String,
    /// Valid tickets of the type (not revoked).
    pub expected: u64,
    /// Of those, checked in on any list.
    pub checked_in: u64,
    pub no_shows: u64,
}

/// The check-in figures of one event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckinReport {
    pub bucket_minutes: u32,
    /// By list, then time.
    pub arrivals: Vec<Arrivals>,
    pub peak: Option<Peak>,
    pub devices: Vec<DeviceTally>,
    pub lists: Vec<ListTally>,
    pub ticket_types: Vec<TicketTypeTally>,
}

/// Why a report was not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("a bucket of {0} minutes: choose 1 to 1440")]
    BucketWidth(u32),
}

/// One scan as the figures need it.
#[derive(Debug, Clone, Copy)]
pub struct ScanRow<'a> {
    pub list_id: &'a str,
    pub device_id: &'a str,
    pub entry: bool,
    /// `counted`, `duplicate`, `annulled`, `not_inside`.
    pub outcome: &'a str,
    pub wall_ms: i64,
    pub payment_taken: bool,
}

/// The figures over scans, folded one row at a time.
#[derive(Debug, Default)]
pub struct ScanTally {
    bucket_ms: i64,
    arrivals: BTreeMap<(String, i64), u64>,
    devices: HashMap<String, (DeviceTally, Vec<i64>)>,
    lists: HashMap<String, ListTally>,
}

impl ScanTally {
    pub fn new(bucket_minutes: u32) -> Result<Self, ReportError> {
        if !(1..=1440).contains(&bucket_minutes) {
            return Err(ReportError::BucketWidth(bucket_minutes));
        }
        Ok(Self {
            bucket_ms: i64::from(bucket_minutes) * 60_000,
            ..Self::default()
        })
    }

    pub fn add(&mut self, row: ScanRow<'_>) {
        let counted = row.outcome == "counted";
        let (device, times) = match self.devices.get_mut(row.device_id) {
            Some(known) => known,
            None => self
                .devices
                .entry(row.device_id.to_owned())
                .or_insert_with(|| {
                    let tally = DeviceTally {
                        device_id: row.device_id.to_owned(),
                        ..DeviceTally::default()
                    };
                    (tally, Vec::new())
                }),
        };
        times.push(row.wall_ms);
        let list = match self.lists.get_mut(row.list_id) {
            Some(known) => known,
            None => self
                .lists
                .entry(row.list_id.to_owned())
                .or_insert_with(|| ListTally {
                    list_id: row.list_id.to_owned(),
                    ..ListTally::default()
                }),
        };
        match (row.entry, row.outcome) {
            (true, "counted") => {
                device.entries += 1;
                list.entries += 1;
            }
            (false, "counted") => {
                device.exits += 1;
                list.exits += 1;
            }
            (_, "duplicate") => {
                device.duplicates += 1;
                list.duplicates += 1;
            }
            (_, "annulled") => device.annulled += 1,
            _ => {}
        }
        if row.payment_taken && row.outcome != "annulled" {
            device.payments_taken += 1;
        }
        if row.entry && counted {
            let start = row.wall_ms.div_euclid(self.bucket_ms) * self.bucket_ms;
            // Few lists: the key's string is made once per bucket.
            match self.arrivals.get_mut(&(row.list_id.to_owned(), start)) {
                Some(n) => *n += 1,
                None => {
                    self.arrivals.insert((row.list_id.to_owned(), start), 1);
                }
            }
        }
    }

    /// The figures, with the per-ticket-type ones made elsewhere.
    pub fn report(self, ticket_types: Vec<TicketTypeTally>) -> CheckinReport {
        let bucket_minutes = (self.bucket_ms / 60_000) as u32;
        let mut per_bucket: BTreeMap<i64, u64> = BTreeMap::new();
        for ((_, start), n) in &self.arrivals {
            *per_bucket.entry(*start).or_default() += n;
        }
        // The earliest of the busiest buckets.
        let peak = per_bucket
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(start, entries)| Peak {
                start_ms: *start,
                entries: *entries,
                per_minute: *entries as f64 / f64::from(bucket_minutes),
            });
        let arrivals = self
            .arrivals
            .into_iter()
            .map(|((list_id, start_ms), entries)| Arrivals {
                list_id,
                start_ms,
                entries,
            })
            .collect();
        let mut devices: Vec<DeviceTally> = self
            .devices
            .into_values()
            .map(|(mut tally, mut times)| {
                tally.median_gap_ms = median_gap(&mut times);
                tally
            })
            .collect();
        devices.sort_by(|a, b| a.device_id.cmp(&b.device_id));
        let mut lists: Vec<ListTally> = self.lists.into_values().collect();
        lists.sort_by(|a, b| a.list_id.cmp(&b.list_id));
        CheckinReport {
            bucket_minutes,
            arrivals,
            peak,
            devices,
            lists,
            ticket_types,
        }
    }
}

/// The median gap between consecutive times (sorted here); the lower
/// middle one for an even count.
fn median_gap(times: &mut [i64]) -> Option<i64> {
    if times.len() < 2 {
        return None;
    }
    times.sort_unstable();
    let mut gaps: Vec<i64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let middle = (gaps.len() - 1) / 2;
    Some(*gaps.select_nth_unstable(middle).1)
}

impl ClientCore {
    /// The check-in figures of `event` from this replica's index, with
    /// arrivals in buckets of `bucket_minutes` (5, 15, 60, ...).
    pub fn checkin_report(
        &self,
        event: DocumentId,
        bucket_minutes: u32,
    ) -> Result<Result<CheckinReport, ReportError>, ClientError> {
        let mut tally = match ScanTally::new(bucket_minutes) {
            Ok(tally) => tally,
            Err(refused) => return Ok(Err(refused)),
        };
        let key = event.to_string();
        let conn = self.index_reader();
        // One pass over the event's scans, the strings borrowed from SQLite.
        let mut stmt = conn.prepare_cached(
            "SELECT list_id, device_id, direction, outcome, wall_ms, payment_taken FROM scans
             WHERE document_id = ?1",
        )?;
        let mut rows = stmt.query(params![key])?;
        while let Some(row) = rows.next()? {
            let text = |i: usize| -> rusqlite::Result<&str> {
                row.get_ref(i)?.as_str().map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        i,
                        rusqlite::types::Type::Text,
                        e.into(),
                    )
                })
            };
            tally.add(ScanRow {
                list_id: text(0)?,
                device_id: text(1)?,
                entry: text(2)? == "entry",
                outcome: text(3)?,
                wall_ms: row.get(4)?,
                payment_taken: row.get(5)?,
            });
        }
        // From one covering index (`attendees_by_type`): the attendee's
        // row says whether they checked in on any list.
        let mut stmt = conn.prepare_cached(
            "SELECT ticket_type, count(*), sum(checked_in) FROM attendees
             WHERE document_id = ?1 AND NOT revoked GROUP BY ticket_type ORDER BY ticket_type",
        )?;
        let types = stmt
            .query_map(params![key], |r| {
                let (expected, checked_in): (i64, i64) = (r.get(1)?, r.get(2)?);
                Ok(TicketTypeTally {
                    ticket_type: r.get(0)?,
                    expected: expected as u64,
                    checked_in: checked_in as u64,
                    no_shows: (expected - checked_in).max(0) as u64,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Ok(tally.report(types)))
    }

    /// The check-in report as CSV, one row per attendee (revoked ones
    /// included and marked): whether and when they first came in, on which
    /// lists, and whether they are inside now.
    pub fn checkin_report_csv(&self, event: DocumentId) -> Result<String, ClientError> {
        let key = event.to_string();
        let conn = self.index_reader();
        let mut stmt = conn.prepare_cached(
            "SELECT a.ticket_code, a.name, a.email, a.ticket_type, a.revoked,
                    (SELECT min(s.wall_ms) FROM presence p JOIN scans s
                       ON s.document_id = p.document_id AND s.scan_id = p.first_entry
                     WHERE p.document_id = a.document_id AND p.attendee_id = a.attendee_id),
                    (SELECT group_concat(p.list_id, ';') FROM presence p
                     WHERE p.document_id = a.document_id AND p.attendee_id = a.attendee_id AND p.checked_in),
                    EXISTS (SELECT 1 FROM presence p
                     WHERE p.document_id = a.document_id AND p.attendee_id = a.attendee_id AND p.inside
                       AND (p.stay_ends_at_ms IS NULL OR p.stay_ends_at_ms > ?2))
             FROM attendees a WHERE a.document_id = ?1 ORDER BY a.ticket_code",
        )?;
        let mut out = csv::Writer::from_writer(Vec::new());
        let csv_error = |e: csv::Error| ClientError::Io(std::io::Error::other(e));
        out.write_record([
            "ticket_code",
            "name",
            "email",
            "ticket_type",
            "status",
            "first_entry",
            "lists",
            "inside",
        ])
        .map_err(csv_error)?;
        let mut rows = stmt.query(params![key, crate::time::now_ms()])?;
        while let Some(row) = rows.next()? {
            let revoked: bool = row.get(4)?;
            let first: Option<i64> = row.get(5)?;
            let lists: Option<String> = row.get(6)?;
            let inside: bool = row.get(7)?;
            let status = match (revoked, first) {
                (true, _) => "revoked",
                (false, Some(_)) => "checked_in",
                (false, None) => "no_show",
            };
            let first = first
                .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
                .map(|t| t.to_string())
                .unwrap_or_default();
            out.write_record([
                row.get::<_, String>(0)?.as_str(),
                row.get::<_, String>(1)?.as_str(),
                row.get::<_, String>(2)?.as_str(),
                row.get::<_, String>(3)?.as_str(),
                status,
                &first,
                lists.as_deref().unwrap_or(""),
                if inside { "yes" } else { "no" },
            ])
            .map_err(csv_error)?;
        }
        let bytes = out
            .into_inner()
            .map_err(|e| ClientError::Io(std::io::Error::other(e.to_string())))?;
        String::from_utf8(bytes).map_err(|e| ClientError::Corrupt(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn row<'a>(
        list: &'a str,
        device: &'a str,
        entry: bool,
        outcome: &'a str,
        wall_ms: i64,
    ) -> ScanRow<'a> {
        ScanRow {
            list_id: list,
            device_id: device,
            entry,
            outcome,
            wall_ms,
            payment_taken: false,
        }
    }

    #[test]
    fn arrivals_fall_into_buckets_and_the_peak_is_the_busiest() {
        let mut tally = ScanTally::new(15).unwrap();
        let min = 60_000;
        for (list, device, entry, outcome, at) in [
            ("main", "t1", true, "counted", 0),
            ("main", "t1", true, "counted", 14 * min),
            ("main", "t2", true, "counted", 15 * min),
            ("vip", "t2", true, "counted", 16 * min),
            ("vip", "t2", true, "counted", 29 * min),
            ("main", "t1", true, "duplicate", 30 * min),
            ("main", "t1", false, "counted", 31 * min),
            ("main", "t1", true, "annulled", 32 * min),
            ("main", "t1", false, "not_inside", 40 * min),
        ] {
            tally.add(row(list, device, entry, outcome, at));
        }
        let report = tally.report(Vec::new());
        let arrivals: Vec<(&str, i64, u64)> = report
            .arrivals
            .iter()
            .map(|a| (a.list_id.as_str(), a.start_ms / min, a.entries))
            .collect();
        assert_eq!(arrivals, [("main", 0, 2), ("main", 15, 1), ("vip", 15, 2)]);
        let peak = report.peak.unwrap();
        assert_eq!((peak.start_ms, peak.entries), (15 * min, 3));
        assert!((peak.per_minute - 0.2).abs() < 1e-9);
        let t1 = &report.devices[0];
        assert_eq!(
            (t1.entries, t1.exits, t1.duplicates, t1.annulled),
            (2, 1, 1, 1)
        );
        // t1 scanned at 0, 14, 30, 31, 32, 40: gaps 14, 16, 1, 1, 8 -> 8.
        assert_eq!(t1.median_gap_ms, Some(8 * min));
        let main = &report.lists[0];
        assert_eq!((main.entries, main.exits, main.duplicates), (3, 1, 1));
        assert_eq!(ScanTally::new(0).unwrap_err(), ReportError::BucketWidth(0));
        assert!(ScanTally::new(1441).is_err());
        let mut one = vec![5];
        assert_eq!(median_gap(&mut one), None);
    }

    #[test]
    fn payments_taken_count_per_device_unless_annulled() {
        let mut tally = ScanTally::new(5).unwrap();
        for (device, outcome, paid) in [
            ("t1", "counted", true),
            ("t1", "annulled", true),
            ("t1", "counted", false),
            ("t2", "counted", true),
        ] {
            tally.add(ScanRow {
                payment_taken: paid,
                ..row("main", device, true, outcome, 0)
            });
        }
        let report = tally.report(Vec::new());
        let paid: Vec<u64> = report.devices.iter().map(|d| d.payments_taken).collect();
        assert_eq!(paid, [1, 1]);
    }

    proptest! {
        /// The figures depend on the scans, not the order of the rows; the
        /// arrivals add up to the counted entries, per list and in all.
        #[test]
        fn any_row_order_gives_the_same_figures(
            raw in proptest::collection::vec((0..3u8, 0..3u8, any::<bool>(), 0..4u8, 0..100_000_000i64), 0..200),
            seed in any::<u64>(),
            bucket in prop_oneof![Just(5u32), Just(15), Just(60)],
        ) {
            let lists = ["main", "vip", "side"];
            let devices = ["t1", "t2", "t3"];
            let outcomes = ["counted", "duplicate", "annulled", "not_inside"];
            let rows: Vec<ScanRow> = raw.iter().map(|(l, d, entry, o, at)| {
                row(lists[*l as usize], devices[*d as usize], *entry, outcomes[*o as usize], *at)
            }).collect();
            let mut shuffled = rows.clone();
            let mut state = seed;
            for i in (1..shuffled.len()).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (state >> 33) as usize % (i + 1));
            }
            let fold = |rows: &[ScanRow]| {
                let mut tally = ScanTally::new(bucket).unwrap();
                for r in rows {
                    tally.add(*r);
                }
                tally.report(Vec::new())
            };
            let (a, b) = (fold(&rows), fold(&shuffled));
            prop_assert_eq!(&a, &b);
            let counted_entries = rows.iter().filter(|r| r.entry && r.outcome == "counted").count() as u64;
            prop_assert_eq!(a.arrivals.iter().map(|x| x.entries).sum::<u64>(), counted_entries);
            prop_assert_eq!(a.lists.iter().map(|l| l.entries).sum::<u64>(), counted_entries);
            prop_assert_eq!(a.devices.iter().map(|d| d.entries).sum::<u64>(), counted_entries);
            for list in &a.lists {
                let arrived: u64 = a.arrivals.iter().filter(|x| x.list_id == list.list_id).map(|x| x.entries).sum();
                prop_assert_eq!(arrived, list.entries);
            }
            if let Some(peak) = &a.peak {
                prop_assert!(a.arrivals.iter().all(|x| x.entries <= peak.entries));
            }
        }
    }
}
