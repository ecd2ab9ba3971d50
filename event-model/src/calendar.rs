//! The event's wall clock: its time zone, the days of the week, times of
//! day. The door rules that speak of days (weekdays, entries per day, the
//! nightly check-out of everyone) read an instant through the event's time
//! zone, never the tablet's, so every replica sees the same day.
//!
//! The time zone database is bundled into the app (jiff's
//! `tzdb-bundle-always`) rather than read from the device: a tablet with an
//! old system database would otherwise put an instant on another day.

use std::fmt;
use std::str::FromStr;

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};
use serde::{Deserialize, Serialize};

/// A time zone name the bundled database does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown time zone `{0}` (expected an IANA name such as Europe/Berlin)")]
pub struct UnknownTimeZone(pub String);

/// The event's time zone, for reading instants as local days and times.
#[derive(Debug, Clone)]
pub struct Calendar {
    zone: TimeZone,
}

impl Default for Calendar {
    fn default() -> Self {
        Self::utc()
    }
}

impl Calendar {
    pub const fn utc() -> Self {
        Self {
            zone: TimeZone::UTC,
        }
    }

    /// The calendar of an IANA time zone name; empty means UTC.
    pub fn named(name: &str) -> Result<Self, UnknownTimeZone> {
        if name.is_empty() {
            return Ok(Self::utc());
        }
        jiff::tz::db()
            .get(name)
            .map(|zone| Self { zone })
            .map_err(|_| UnknownTimeZone(name.to_owned()))
    }

    fn zoned(&self, at_ms: i64) -> Zoned {
        let at_ms = at_ms.clamp(
            Timestamp::MIN.as_millisecond(),
            Timestamp::MAX.as_millisecond(),
        );
        // In range by the clamp.
        Timestamp::from_millisecond(at_ms)
            .unwrap_or(Timestamp::UNIX_EPOCH)
            .to_zoned(self.zone.clone())
    }

    /// The local day of an instant, as a number that grows by one a day
    /// (days since 1970-01-01), for counting entries per day.
    pub fn day(&self, at_ms: i64) -> i32 {
        day_number(self.zoned(at_ms).date())
    }

    pub fn weekday(&self, at_ms: i64) -> Weekday {
        self.zoned(at_ms).date().weekday()
    }

    /// The first instant after `after_ms` at which the local clock shows
    /// `time` (on a day when a clock change skips it, the instant it would
    /// have shown it: 02:30 on the night clocks jump from 02:00 to 03:00
    /// is 03:30; when it shows it twice, the first). `None` past the
    /// calendar's end (year 9999).
    pub fn next_time_of_day(&self, time: TimeOfDay, after_ms: i64) -> Option<i64> {
        let now = self.zoned(after_ms);
        let mut date = now.date();
        // At most two days ahead: today's time may have passed.
        for _ in 0..3 {
            let at = date
                .at(time.hour(), time.minute(), 0, 0)
                .to_zoned(self.zone.clone())
                .ok()?
                .timestamp()
                .as_millisecond();
            if at > after_ms {
                return Some(at);
            }
            date = date.tomorrow().ok()?;
        }
        None
    }
}

fn day_number(date: Date) -> i32 {
    const EPOCH: Date = Date::constant(1970, 1, 1);
    // Whole days between two dates in range cannot overflow an i32.
    date.since((jiff::Unit::Day, EPOCH))
        .map(|span| span.get_days())
        .unwrap_or(0)
}

/// The days of the week a list or ticket admits on (Monday is bit 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Weekdays(u8);

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const FULL_DAY_NAMES: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

impl Weekdays {
    pub const EVERY_DAY: Self = Self(0x7f);

    /// From the bits (Monday is bit 0); bits above Sunday are ignored.
    pub fn from_bits(bits: u8) -> Self {
        Self(bits & 0x7f)
    }

    pub fn bits(self) -> u8 {
        self.0
    }

    pub fn is_every_day(self) -> bool {
        self == Self::EVERY_DAY
    }

    pub fn contains(self, day: Weekday) -> bool {
        self.0 & (1 << day.to_monday_zero_offset()) != 0
    }
}

impl Default for Weekdays {
    fn default() -> Self {
        Self::EVERY_DAY
    }
}

/// `mon,tue,...` in week order.
impl fmt::Display for Weekdays {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = DAY_NAMES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, name)| *name)
            .collect();
        f.write_str(&names.join(","))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarTextError {
    #[error("`{0}` is not a day of the week (mon, tue, wed, thu, fri, sat, sun)")]
    Weekday(String),
    #[error("no day of the week given")]
    NoWeekday,
    #[error("`{0}` is not a time of day (HH:MM, 00:00 to 23:59)")]
    TimeOfDay(String),
}

/// Names (three letters or whole) separated by commas, any case (`Sat,sunday`).
impl FromStr for Weekdays {
    type Err = CalendarTextError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut bits = 0u8;
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let lower = name.to_ascii_lowercase();
            let day = DAY_NAMES
                .iter()
                .position(|d| *d == lower)
                .or_else(|| FULL_DAY_NAMES.iter().position(|d| *d == lower))
                .ok_or_else(|| CalendarTextError::Weekday(name.to_owned()))?;
            bits |= 1 << day;
        }
        if bits == 0 {
            return Err(CalendarTextError::NoWeekday);
        }
        Ok(Self(bits))
    }
}

impl TryFrom<String> for Weekdays {
    type Error = CalendarTextError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<Weekdays> for String {
    fn from(days: Weekdays) -> Self {
        days.to_string()
    }
}

/// A local time of day, to the minute (`HH:MM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TimeOfDay(u16);

impl TimeOfDay {
    pub fn new(hour: u8, minute: u8) -> Option<Self> {
        (hour < 24 && minute < 60).then(|| Self(u16::from(hour) * 60 + u16::from(minute)))
    }

    pub fn hour(self) -> i8 {
        (self.0 / 60) as i8
    }

    pub fn minute(self) -> i8 {
        (self.0 % 60) as i8
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.hour(), self.minute())
    }
}

impl FromStr for TimeOfDay {
    type Err = CalendarTextError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || CalendarTextError::TimeOfDay(text.to_owned());
        let (hour, minute) = text.trim().split_once(':').ok_or_else(bad)?;
        if minute.len() != 2 || hour.is_empty() || hour.len() > 2 {
            return Err(bad());
        }
        let hour: u8 = hour.parse().map_err(|_| bad())?;
        let minute: u8 = minute.parse().map_err(|_| bad())?;
        Self::new(hour, minute).ok_or_else(bad)
    }
}

impl TryFrom<String> for TimeOfDay {
    type Error = CalendarTextError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<TimeOfDay> for String {
    fn from(time: TimeOfDay) -> Self {
        time.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-05 (a Saturday) 12:00 UTC.
    const SATURDAY_NOON_UTC: i64 = 1_796_472_000_000;
    const HOUR: i64 = 3_600_000;

    #[test]
    fn days_and_weekdays_are_read_in_the_event_zone() {
        let utc = Calendar::utc();
        assert_eq!(utc.weekday(SATURDAY_NOON_UTC), Weekday::Saturday);
        assert_eq!(
            utc.day(SATURDAY_NOON_UTC + HOUR) - utc.day(SATURDAY_NOON_UTC),
            0
        );
        assert_eq!(
            utc.day(SATURDAY_NOON_UTC + 12 * HOUR) - utc.day(SATURDAY_NOON_UTC),
            1
        );
        // 23:30 in Auckland (UTC+13 in December) is already Sunday there.
        let auckland = Calendar::named("Pacific/Auckland").unwrap();
        assert_eq!(auckland.weekday(SATURDAY_NOON_UTC), Weekday::Sunday);
        assert!(matches!(
            Calendar::named("Mars/Olympus"),
            Err(UnknownTimeZone(name)) if name == "Mars/Olympus"
        ));
        assert_eq!(Calendar::named("").unwrap().day(0), 0);
    }

    #[test]
    fn the_next_time_of_day_follows_the_local_clock() {
        let utc = Calendar::utc();
        let four = TimeOfDay::new(4, 0).unwrap();
        // From Saturday noon, the next 04:00 is Sunday's.
        assert_eq!(
            utc.next_time_of_day(four, SATURDAY_NOON_UTC),
            Some(SATURDAY_NOON_UTC + 16 * HOUR)
        );
        // Exactly at it: the next one, a day later.
        assert_eq!(
            utc.next_time_of_day(four, SATURDAY_NOON_UTC + 16 * HOUR),
            Some(SATURDAY_NOON_UTC + 40 * HOUR)
        );
        let berlin = Calendar::named("Europe/Berlin").unwrap();
        // 04:00 in Berlin in December is 03:00 UTC.
        assert_eq!(
            berlin.next_time_of_day(four, SATURDAY_NOON_UTC),
            Some(SATURDAY_NOON_UTC + 15 * HOUR)
        );
        // 02:30 does not exist in Berlin on 2026-03-29: the instant after the gap.
        let gap_day = berlin.zoned(1_774_742_400_000); // 2026-03-29 00:00 UTC
        let half_past_two = TimeOfDay::new(2, 30).unwrap();
        // 02:30 CET would be 01:30 UTC; the clock shows 03:30 CEST then.
        assert_eq!(
            berlin.next_time_of_day(half_past_two, gap_day.timestamp().as_millisecond()),
            Some(1_774_742_400_000 + 90 * 60_000)
        );
        assert_eq!(utc.next_time_of_day(four, i64::MAX), None);
    }

    #[test]
    fn weekdays_and_times_read_and_print() {
        let weekend: Weekdays = "Sat, sun".parse().unwrap();
        assert_eq!(weekend.to_string(), "sat,sun");
        assert!(weekend.contains(Weekday::Sunday) && !weekend.contains(Weekday::Monday));
        assert_eq!("monday".parse::<Weekdays>().unwrap().bits(), 1);
        assert!(matches!(
            "funday".parse::<Weekdays>(),
            Err(CalendarTextError::Weekday(_))
        ));
        assert!("month".parse::<Weekdays>().is_err());
        assert_eq!("".parse::<Weekdays>(), Err(CalendarTextError::NoWeekday));
        assert!(Weekdays::default().is_every_day());
        assert_eq!(Weekdays::from_bits(0xff), Weekdays::EVERY_DAY);
        assert_eq!("4:05".parse::<TimeOfDay>().unwrap().to_string(), "04:05");
        for bad in ["24:00", "12:60", "12", "1:5", "ab:cd", "123:00"] {
            assert!(bad.parse::<TimeOfDay>().is_err(), "{bad}");
        }
        let json = serde_json::to_string(&weekend).unwrap();
        assert_eq!(json, "\"sat,sun\"");
        assert_eq!(serde_json::from_str::<Weekdays>(&json).unwrap(), weekend);
        assert!(serde_json::from_str::<TimeOfDay>("\"25:00\"").is_err());
    }
}
