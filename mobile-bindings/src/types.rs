//! The records and enums the bindings pass, converted from client-core's.

use client_core::event_model::document::CheckinList;
use client_core::event_model::rules::{self, Answer};
use client_core::settings_model::org::OrgConfig as CoreOrgConfig;
use client_core::{
    AttendeeView, CheckInResult as CoreCheckIn, DuplicateView, EventSummary, ScanView,
    SessionState as CoreSession, Settings as CoreSettings, SyncStatus as CoreSyncStatus,
};

/// Where a tablet keeps its data and which servers it talks to.
#[derive(Debug, Clone, uniffi::Record)]
pub struct TabletConfig {
    /// A directory the app owns; the local database lives in it.
    pub data_dir: String,
    /// Sync URLs (`ws://host:port/sync`), tried in turn; the first also
    /// answers the sign-in API.
    pub server_urls: Vec<String>,
    /// Shown to admins in the device list ("Door 2 tablet").
    pub device_name: String,
    /// A CA certificate (PEM) trusted beside the platform's roots: the
    /// venue's own CA when its server has a private certificate.
    #[uniffi(default = None)]
    pub extra_ca_pem: Option<String>,
    /// SHA-256 pins of the server's public key (base64, `sha256//` allowed):
    /// when given, a server whose key matches none is refused.
    #[uniffi(default = [])]
    pub pinned_server_keys: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum SignInStep {
    SignedIn {
        session: SessionInfo,
    },
    /// Ask for a TOTP code (or a recovery code) and pass it with `challenge`.
    SecondFactorRequired {
        challenge: String,
    },
    /// The account has no authenticator yet: enroll one
    /// (`start_enrollment`, then `confirm_enrollment` with its first code).
    EnrollmentRequired {
        challenge: String,
    },
}

/// A new authenticator to show: the QR code (PNG) or the secret to type.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Enrollment {
    pub secret: String,
    pub otpauth_uri: String,
    pub qr_png: Vec<u8>,
}

/// A confirmed enrollment: signed in, and recovery codes to show once.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct EnrolledSession {
    pub session: SessionInfo,
    pub recovery_codes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SessionInfo {
    pub user_id: String,
    pub email: String,
    pub role: String,
    pub device_id: String,
}

impl From<client_core::SessionInfo> for SessionInfo {
    fn from(info: client_core::SessionInfo) -> Self {
        Self {
            user_id: info.user.id,
            email: info.user.email,
            role: info.user.role.to_string(),
            device_id: info.device_id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum SessionState {
    SignedOut,
    SignedIn {
        session: SessionInfo,
    },
    /// The session ended elsewhere or expired: sign in again. Local data
    /// and scans not yet synced are kept and sync after the next sign-in.
    NeedsSignIn {
        reason: String,
    },
    /// An admin revoked this device: its local data was wiped.
    Revoked,
}

impl From<CoreSession> for SessionState {
    fn from(state: CoreSession) -> Self {
        match state {
            CoreSession::SignedOut => SessionState::SignedOut,
            CoreSession::SignedIn(info) => SessionState::SignedIn {
                session: info.into(),
            },
            CoreSession::NeedsSignIn { reason } => SessionState::NeedsSignIn { reason },
            CoreSession::Revoked => SessionState::Revoked,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct EventInfo {
    pub document_id: String,
    pub event_id: String,
    /// Empty until the event's document has been downloaded.
    pub name: String,
    pub starts_at: String,
    pub location: String,
    /// The event's data is on this tablet (scans can be answered).
    pub downloaded: bool,
}

impl From<EventSummary> for EventInfo {
    fn from(e: EventSummary) -> Self {
        Self {
            document_id: e.document_id,
            event_id: e.event_id,
            name: e.name,
            starts_at: e.starts_at,
            location: e.location,
            downloaded: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct CheckinListInfo {
    pub list_id: String,
    pub name: String,
    pub allow_multiple_entries: bool,
    pub allow_entry_after_exit: bool,
    /// Entries from (Unix ms).
    pub valid_from_ms: Option<i64>,
    /// Entries until (Unix ms, exclusive).
    pub valid_until_ms: Option<i64>,
    /// Days of the week it admits on (`sat,sun`), in the event's time zone.
    pub weekdays: String,
    pub max_entries_per_day: Option<u32>,
    /// When everyone inside is checked out (`04:00`, the event's clock).
    pub exit_all_at: Option<String>,
}

impl From<CheckinList> for CheckinListInfo {
    fn from(list: CheckinList) -> Self {
        let rules = list.rules;
        Self {
            list_id: list.id,
            name: list.name,
            allow_multiple_entries: rules.allow_multiple_entries,
            allow_entry_after_exit: rules.allow_entry_after_exit,
            valid_from_ms: rules.window.valid_from_ms,
            valid_until_ms: rules.window.valid_until_ms,
            weekdays: rules.window.weekdays.to_string(),
            max_entries_per_day: rules.max_entries_per_day.map(|n| n.get()),
            exit_all_at: rules.exit_all_at.map(|t| t.to_string()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Direction {
    Entry,
    Exit,
}

impl From<Direction> for rules::Direction {
    fn from(d: Direction) -> Self {
        match d {
            Direction::Entry => rules::Direction::Entry,
            Direction::Exit => rules::Direction::Exit,
        }
    }
}

impl From<rules::Direction> for Direction {
    fn from(d: rules::Direction) -> Self {
        match d {
            rules::Direction::Entry => Direction::Entry,
            rules::Direction::Exit => Direction::Exit,
        }
    }
}

/// The answer shown at the door.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum CheckInAnswer {
    /// Let them in: the scan was recorded.
    Admitted,
    /// An exit was recorded.
    Exited,
    /// Already in (see `previous`): nothing recorded.
    AlreadyCheckedIn,
    UnknownTicket,
    NotValidOnList,
    /// The ticket was cancelled.
    Revoked,
    /// A signed code whose signature does not hold: forged or altered.
    InvalidSignature,
    /// A signed code of another event.
    OtherEvent,
    /// Not valid yet (see `valid_from_ms`).
    NotYetValid,
    /// No longer valid (see `valid_until_ms`).
    Expired,
    /// Not on this day of the week (see `valid_weekdays`).
    NotValidToday,
    /// The list's entries per day are used up today (see `daily_limit`).
    DailyLimitReached,
    /// Let in and recorded; show staff `attention_note` first (an ID
    /// check, a VIP).
    AdmittedWithAttention,
    /// Not paid: nothing recorded. Staff take payment, then
    /// `check_in_confirming_payment` with the same code admits.
    ConfirmPayment,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Attendee {
    pub attendee_id: String,
    pub ticket_code: String,
    pub name: String,
    pub email: String,
    pub ticket_type: String,
    pub revoked: bool,
    /// What staff must see when they come in.
    pub attention: Option<String>,
    /// Not paid yet: the first entry asks staff to confirm payment.
    pub unpaid: bool,
}

impl From<AttendeeView> for Attendee {
    fn from(a: AttendeeView) -> Self {
        Self {
            attendee_id: a.attendee_id,
            ticket_code: a.ticket_code,
            name: a.name,
            email: a.email,
            ticket_type: a.ticket_type,
            revoked: a.revoked,
            attention: a.attention,
            unpaid: a.unpaid,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Scan {
    pub scan_id: String,
    pub attendee_id: String,
    pub list_id: String,
    pub direction: Direction,
    pub device_id: String,
    pub staff_id: String,
    /// When it happened, unix ms (the scanning device's clock).
    pub wall_ms: i64,
    /// `admitted`, `exited`, `duplicate`, `annulled`, ...
    pub outcome: String,
    /// Admitted on a signed code's word.
    pub by_signature: bool,
    /// Payment was taken at the door.
    pub payment_taken: bool,
}

impl From<ScanView> for Scan {
    fn from(s: ScanView) -> Self {
        Self {
            scan_id: s.scan_id,
            attendee_id: s.attendee_id,
            list_id: s.list_id,
            direction: s.direction.into(),
            device_id: s.device_id,
            staff_id: s.staff_id,
            wall_ms: s.wall_ms,
            outcome: s.outcome,
            by_signature: s.by_signature,
            payment_taken: s.payment_taken,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct CheckInResult {
    pub answer: CheckInAnswer,
    pub attendee: Option<Attendee>,
    /// The scan recorded, if one was (admitted or exited).
    pub scan_id: Option<String>,
    /// For `AlreadyCheckedIn`: the entry that counted (when, which list,
    /// which device, which staff member).
    pub previous: Option<Scan>,
    /// A signed code whose signature held: the event's key vouched for the
    /// attendee, who may not be in this tablet's list yet (`attendee` is
    /// then what the code says: id and ticket type, no name).
    pub verified_by_signature: bool,
    /// For `NotYetValid`: from when the ticket is valid (Unix ms).
    pub valid_from_ms: Option<i64>,
    /// For `Expired`: when the ticket stopped being valid (Unix ms).
    pub valid_until_ms: Option<i64>,
    /// For `NotValidToday`: the days it admits on (`sat,sun`).
    pub valid_weekdays: Option<String>,
    /// For `DailyLimitReached`: the entries a day allowed.
    pub daily_limit: Option<u32>,
    /// For `AdmittedWithAttention` (and `ConfirmPayment`, where the
    /// attendee has one): what staff must see or do.
    pub attention_note: Option<String>,
}

impl From<CoreCheckIn> for CheckInResult {
    fn from(r: CoreCheckIn) -> Self {
        let answer = match r.answer {
            Answer::Admitted => CheckInAnswer::Admitted,
            Answer::Exited => CheckInAnswer::Exited,
            Answer::AlreadyCheckedIn { .. } => CheckInAnswer::AlreadyCheckedIn,
            Answer::UnknownTicket => CheckInAnswer::UnknownTicket,
            Answer::NotValidOnList => CheckInAnswer::NotValidOnList,
            Answer::Revoked => CheckInAnswer::Revoked,
            Answer::InvalidSignature => CheckInAnswer::InvalidSignature,
            Answer::OtherEvent => CheckInAnswer::OtherEvent,
            Answer::NotYetValid { .. } => CheckInAnswer::NotYetValid,
            Answer::Expired { .. } => CheckInAnswer::Expired,
            Answer::NotValidToday { .. } => CheckInAnswer::NotValidToday,
            Answer::DailyLimitReached { .. } => CheckInAnswer::DailyLimitReached,
            Answer::AdmittedWithAttention { .. } => CheckInAnswer::AdmittedWithAttention,
            Answer::ConfirmPayment { .. } => CheckInAnswer::ConfirmPayment,
        };
        let attention_note = match &r.answer {
            Answer::AdmittedWithAttention { note } => Some(note.clone()),
            Answer::ConfirmPayment { note } => note.clone(),
            _ => None,
        };
        let (valid_from_ms, valid_until_ms) = match r.answer {
            Answer::NotYetValid { from_ms } => (Some(from_ms), None),
            Answer::Expired { until_ms } => (None, Some(until_ms)),
            _ => (None, None),
        };
        let valid_weekdays = match r.answer {
            Answer::NotValidToday { weekdays } => Some(weekdays.to_string()),
            _ => None,
        };
        let daily_limit = match r.answer {
            Answer::DailyLimitReached { limit } => Some(limit),
            _ => None,
        };
        Self {
            answer,
            attendee: r.attendee.map(Into::into),
            scan_id: r.scan_id,
            previous: r.previous.map(Into::into),
            verified_by_signature: r.verified_by_signature,
            valid_from_ms,
            valid_until_ms,
            valid_weekdays,
            daily_limit,
            attention_note,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct Counts {
    /// Valid tickets.
    pub expected: u64,
    /// Of those, checked in at least once.
    pub checked_in: u64,
    /// Inside now.
    pub inside: u64,
}

impl From<rules::Counts> for Counts {
    fn from(c: rules::Counts) -> Self {
        Self {
            expected: c.expected,
            checked_in: c.checked_in,
            inside: c.inside,
        }
    }
}

/// Two entries for one ticket with no exit between them: the later scan,
/// and the one that counted.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Duplicate {
    pub scan: Scan,
    pub original: Option<Scan>,
    pub attendee_name: String,
    pub ticket_code: String,
}

impl From<DuplicateView> for Duplicate {
    fn from(d: DuplicateView) -> Self {
        Self {
            scan: d.scan.into(),
            original: d.original.map(Into::into),
            attendee_name: d.attendee_name,
            ticket_code: d.ticket_code,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SyncStatus {
    pub connected: bool,
    /// Local changes (scans) the server has not confirmed yet.
    pub pending_changes: u64,
    /// When the server last confirmed every local change, unix ms.
    pub last_sync_ms: Option<i64>,
    /// The last failure as it came (for a details view).
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
    /// The last failure in plain words ("Can't reach the server").
    pub problem: Option<String>,
    /// A stable name for it (`unreachable`, `untrusted_server`,
    /// `not_signed_in`, `server_error`, `local_storage`, `settings`).
    pub problem_code: Option<String>,
    /// When sync tries again (unix ms), while it waits after a failure.
    pub next_retry_ms: Option<i64>,
}

impl From<CoreSyncStatus> for SyncStatus {
    fn from(s: CoreSyncStatus) -> Self {
        Self {
            connected: s.connected,
            pending_changes: s.pending_changes,
            last_sync_ms: s.last_sync_ms(),
            last_error_ms: s.last_error_ms(),
            next_retry_ms: s.next_retry_ms(),
            problem: s.problem.map(|p| p.plain().to_owned()),
            problem_code: s.problem.map(|p| p.code().to_owned()),
            last_error: s.last_error,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct MemberSettings {
    /// `light`, `dark` or `system`.
    pub theme: String,
    pub language: String,
    pub default_checkin_list: Option<String>,
    pub sounds: bool,
    pub notifications: bool,
}

impl From<CoreSettings> for MemberSettings {
    fn from(s: CoreSettings) -> Self {
        Self {
            theme: s.theme,
            language: s.language,
            default_checkin_list: s.default_checkin_list,
            sounds: s.sounds,
            notifications: s.notifications,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum SettingValue {
    Flag { value: bool },
    Number { value: i64 },
    Text { value: String },
}

impl From<SettingValue> for client_core::SettingValue {
    fn from(v: SettingValue) -> Self {
        match v {
            SettingValue::Flag { value } => client_core::SettingValue::Bool(value),
            SettingValue::Number { value } => client_core::SettingValue::Int(value),
            SettingValue::Text { value } => client_core::SettingValue::Text(value),
        }
    }
}

/// The organisation's configuration, as far as a tablet uses it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct OrgConfig {
    pub organisation_name: String,
    pub support_contact: String,
    pub default_language: String,
    pub kiosk_auto_lock_minutes: i64,
    pub kiosk_pin_length: i64,
    pub duplicate_alert_sound: bool,
}

impl From<CoreOrgConfig> for OrgConfig {
    fn from(c: CoreOrgConfig) -> Self {
        Self {
            organisation_name: c.organisation_name,
            support_contact: c.support_contact,
            default_language: c.default_language,
            kiosk_auto_lock_minutes: c.kiosk_auto_lock_minutes,
            kiosk_pin_length: c.kiosk_pin_length,
            duplicate_alert_sound: c.duplicate_alert_sound,
        }
    }
}

/// Another tablet heard on the chosen event.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct TabletPresence {
    pub device_id: String,
    pub list_id: Option<String>,
    pub last_synced_ms: Option<i64>,
    pub heard_ms: i64,
}

impl From<client_core::PeerPresence> for TabletPresence {
    fn from(p: client_core::PeerPresence) -> Self {
        Self {
            device_id: p.device_id,
            list_id: p.list_id,
            last_synced_ms: p.last_synced_ms,
            heard_ms: p.heard_ms,
        }
    }
}

/// Counted entries on one list in one bucket of time.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Arrivals {
    pub list_id: String,
    /// Start of the bucket (Unix ms).
    pub start_ms: i64,
    pub entries: u64,
}

/// The busiest bucket, all lists together.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Peak {
    pub start_ms: i64,
    pub entries: u64,
    pub per_minute: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct DeviceTally {
    pub device_id: String,
    pub entries: u64,
    pub exits: u64,
    pub duplicates: u64,
    pub annulled: u64,
    /// Payments taken at the door (not annulled).
    pub payments_taken: u64,
    /// Median time between two of its scans (ms), from two scans on.
    pub median_gap_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ListTally {
    pub list_id: String,
    pub entries: u64,
    pub exits: u64,
    pub duplicates: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct TicketTypeTally {
    pub ticket_type: String,
    pub expected: u64,
    pub checked_in: u64,
    pub no_shows: u64,
}

/// The check-in figures of the chosen event.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct CheckinReport {
    pub bucket_minutes: u32,
    pub arrivals: Vec<Arrivals>,
    pub peak: Option<Peak>,
    pub devices: Vec<DeviceTally>,
    pub lists: Vec<ListTally>,
    pub ticket_types: Vec<TicketTypeTally>,
}

impl From<client_core::CheckinReport> for CheckinReport {
    fn from(r: client_core::CheckinReport) -> Self {
        Self {
            bucket_minutes: r.bucket_minutes,
            arrivals: r
                .arrivals
                .into_iter()
                .map(|a| Arrivals {
                    list_id: a.list_id,
                    start_ms: a.start_ms,
                    entries: a.entries,
                })
                .collect(),
            peak: r.peak.map(|p| Peak {
                start_ms: p.start_ms,
                entries: p.entries,
                per_minute: p.per_minute,
            }),
            devices: r
                .devices
                .into_iter()
                .map(|d| DeviceTally {
                    device_id: d.device_id,
                    entries: d.entries,
                    exits: d.exits,
                    duplicates: d.duplicates,
                    annulled: d.annulled,
                    payments_taken: d.payments_taken,
                    median_gap_ms: d.median_gap_ms,
                })
                .collect(),
            lists: r
                .lists
                .into_iter()
                .map(|l| ListTally {
                    list_id: l.list_id,
                    entries: l.entries,
                    exits: l.exits,
                    duplicates: l.duplicates,
                })
                .collect(),
            ticket_types: r
                .ticket_types
                .into_iter()
                .map(|t| TicketTypeTally {
                    ticket_type: t.ticket_type,
                    expected: t.expected,
                    checked_in: t.checked_in,
                    no_shows: t.no_shows,
                })
                .collect(),
        }
    }
}
