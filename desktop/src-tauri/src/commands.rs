//! The typed commands the web UI invokes. Local data (events, attendees,
//! counts, settings) comes from client-core's replica and works offline;
//! users, devices, the audit log and backups are the server's and need it.

use std::num::NonZeroU32;
use std::sync::Arc;

use base64::Engine;
use client_core::event_model::EventInfo;
use client_core::event_model::calendar::{Calendar, TimeOfDay, Weekdays};
use client_core::event_model::document::{self, CheckinList};
use client_core::event_model::rules::{EntryWindow, ListRules};
use client_core::{
    AttendeeView, AuditFilter, AuditPage, AuditVerification, Device, DocumentId, DuplicateView,
    EventSummary, ImportProgress, ImportReport, IssueTicketRequest, IssuedTicket, Role, ScanView,
    ServerStatus, SettingValue, SignInStep, UnknownRole, User,
};
use serde::{Deserialize, Serialize};
use tauri::{AppHandle, Emitter, State};

use crate::dto::{CmdResult, CommandError, SessionDto, StatusDto};
use crate::state::AppState;

type AppStateRef<'a> = State<'a, Arc<AppState>>;

fn document(text: &str) -> CmdResult<DocumentId> {
    DocumentId::parse(text.trim())
        .map_err(|e| CommandError::invalid(format!("`{text}` is not a document id: {e}")))
}

/// Runs SQLite work off the async runtime's threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> CmdResult<T> + Send + 'static,
) -> CmdResult<T> {
    tauri::async_runtime::spawn_blocking(work)
        .await
        .map_err(|e| CommandError::new("internal", e.to_string()))?
}

// ---- session ----

#[derive(Serialize)]
pub struct AppInfo {
    server_url: String,
    server_ca_pem: Option<String>,
    server_pinned_keys: Vec<String>,
    data_dir: String,
    session: SessionDto,
    status: StatusDto,
}

#[tauri::command]
pub async fn app_info(state: AppStateRef<'_>) -> CmdResult<AppInfo> {
    let connection = state.connection.lock().await;
    Ok(AppInfo {
        server_url: connection.server.url.clone(),
        server_ca_pem: connection.server.ca_pem.clone(),
        server_pinned_keys: connection.server.pinned_keys.clone(),
        data_dir: state.data_dir.display().to_string(),
        session: connection.account.state().into(),
        status: state.core.sync_status().into(),
    })
}

#[tauri::command]
pub async fn set_server(
    app: AppHandle,
    state: AppStateRef<'_>,
    url: String,
    ca_pem: Option<String>,
    pinned_keys: Option<Vec<String>>,
) -> CmdResult<()> {
    let server = crate::state::ServerSettings {
        url,
        ca_pem,
        pinned_keys: pinned_keys.unwrap_or_default(),
    };
    state.set_server(&app, server).await
}

#[derive(Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum SignInAnswer {
    SignedIn { session: SessionDto },
    SecondFactor { challenge: String },
    Enroll { challenge: String },
}

#[tauri::command]
pub async fn sign_in(
    state: AppStateRef<'_>,
    email: String,
    password: String,
) -> CmdResult<SignInAnswer> {
    let account = state.account().await;
    let device = format!("Admin desktop ({})", std::env::consts::OS);
    Ok(
        match account.sign_in(email.trim(), &password, &device).await? {
            SignInStep::SignedIn(_) => SignInAnswer::SignedIn {
                session: account.state().into(),
            },
            SignInStep::SecondFactorRequired { challenge } => {
                SignInAnswer::SecondFactor { challenge }
            }
            SignInStep::EnrollmentRequired { challenge } => SignInAnswer::Enroll { challenge },
        },
    )
}

/// A TOTP code, or a recovery code when `recovery` is set.
#[tauri::command]
pub async fn submit_code(
    state: AppStateRef<'_>,
    challenge: String,
    code: String,
    recovery: bool,
) -> CmdResult<SessionDto> {
    let account = state.account().await;
    let code = code.trim();
    if recovery {
        account.submit_recovery_code(&challenge, code).await?;
    } else {
        account.submit_totp(&challenge, code).await?;
    }
    Ok(account.state().into())
}

#[derive(Serialize)]
pub struct EnrollmentDto {
    secret: String,
    otpauth_uri: String,
    qr_png_base64: String,
}

#[tauri::command]
pub async fn start_enrollment(
    state: AppStateRef<'_>,
    challenge: String,
) -> CmdResult<EnrollmentDto> {
    let enrollment = state.account().await.start_enrollment(&challenge).await?;
    Ok(EnrollmentDto {
        secret: enrollment.secret,
        otpauth_uri: enrollment.otpauth_uri,
        qr_png_base64: base64::engine::general_purpose::STANDARD.encode(enrollment.qr_png),
    })
}

#[derive(Serialize)]
pub struct EnrolledDto {
    session: SessionDto,
    recovery_codes: Vec<String>,
}

#[tauri::command]
pub async fn confirm_enrollment(
    state: AppStateRef<'_>,
    challenge: String,
    code: String,
) -> CmdResult<EnrolledDto> {
    let account = state.account().await;
    let (_, recovery_codes) = account.confirm_enrollment(&challenge, code.trim()).await?;
    Ok(EnrolledDto {
        session: account.state().into(),
        recovery_codes,
    })
}

#[tauri::command]
pub async fn sign_out(state: AppStateRef<'_>) -> CmdResult<()> {
    Ok(state.account().await.sign_out().await?)
}

#[tauri::command]
pub async fn step_up(state: AppStateRef<'_>, code: String) -> CmdResult<()> {
    Ok(state.account().await.step_up(code.trim()).await?)
}

#[tauri::command]
pub fn sync_status(state: AppStateRef<'_>) -> StatusDto {
    state.core.sync_status().into()
}

// ---- events and lists ----

/// The events on this computer; when the server answers, also those not
/// downloaded yet (they start downloading).
#[tauri::command]
pub async fn list_events(state: AppStateRef<'_>) -> CmdResult<Vec<EventSummary>> {
    if let Ok(listed) = state.account().await.event_documents().await {
        let core = state.core.clone();
        blocking(move || {
            for (_, id) in listed {
                core.find(id)?;
            }
            Ok(())
        })
        .await?;
    }
    let core = state.core.clone();
    blocking(move || Ok(core.events()?)).await
}

/// A list and its rules as the list form edits them: days and times as
/// text (`sat,sun`, empty for every day; `04:00`), dates as Unix ms.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListDto {
    id: String,
    name: String,
    allow_multiple_entries: bool,
    allow_entry_after_exit: bool,
    #[serde(default)]
    valid_from_ms: Option<i64>,
    #[serde(default)]
    valid_until_ms: Option<i64>,
    #[serde(default)]
    weekdays: String,
    #[serde(default)]
    max_entries_per_day: Option<u32>,
    #[serde(default)]
    exit_all_at: Option<String>,
}

impl From<CheckinList> for ListDto {
    fn from(l: CheckinList) -> Self {
        let rules = l.rules;
        Self {
            id: l.id,
            name: l.name,
            allow_multiple_entries: rules.allow_multiple_entries,
            allow_entry_after_exit: rules.allow_entry_after_exit,
            valid_from_ms: rules.window.valid_from_ms,
            valid_until_ms: rules.window.valid_until_ms,
            weekdays: if rules.window.weekdays.is_every_day() {
                String::new()
            } else {
                rules.window.weekdays.to_string()
            },
            max_entries_per_day: rules.max_entries_per_day.map(|n| n.get()),
            exit_all_at: rules.exit_all_at.map(|t| t.to_string()),
        }
    }
}

impl ListDto {
    /// The rules the form describes, or what is wrong with them.
    fn rules(&self) -> CmdResult<ListRules> {
        let invalid = |e: &dyn std::fmt::Display| CommandError::invalid(e.to_string());
        let weekdays = match self.weekdays.trim() {
            "" => Weekdays::EVERY_DAY,
            days => days.parse().map_err(|e| invalid(&e))?,
        };
        let exit_all_at = match self.exit_all_at.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(time) => Some(time.parse::<TimeOfDay>().map_err(|e| invalid(&e))?),
        };
        if let (Some(from), Some(until)) = (self.valid_from_ms, self.valid_until_ms)
            && until <= from
        {
            return Err(CommandError::invalid(
                "the list's \"until\" must come after its \"from\"",
            ));
        }
        let max_entries_per_day = match self.max_entries_per_day {
            None => None,
            Some(n) => Some(NonZeroU32::new(n).ok_or_else(|| {
                CommandError::invalid("entries per day: at least 1, or empty for no limit")
            })?),
        };
        Ok(ListRules {
            allow_multiple_entries: self.allow_multiple_entries,
            allow_entry_after_exit: self.allow_entry_after_exit,
            window: EntryWindow {
                valid_from_ms: self.valid_from_ms,
                valid_until_ms: self.valid_until_ms,
                weekdays,
            },
            max_entries_per_day,
            exit_all_at,
        })
    }
}

#[derive(Serialize)]
pub struct EventDetails {
    document: String,
    info: EventInfo,
    lists: Vec<ListDto>,
}

#[tauri::command]
pub async fn event_details(state: AppStateRef<'_>, document_id: String) -> CmdResult<EventDetails> {
    let id = document(&document_id)?;
    let core = state.core.clone();
    blocking(move || {
        let info = core
            .read(id, document::read_info)?
            .map_err(|e| CommandError::new("not_found", e.to_string()))?;
        let lists = core
            .checkin_lists(id)?
            .into_iter()
            .map(ListDto::from)
            .collect();
        Ok(EventDetails {
            document: id.to_string(),
            info,
            lists,
        })
    })
    .await
}

fn check_info(info: &EventInfo) -> CmdResult<()> {
    if info.id.trim().is_empty() || info.name.trim().is_empty() {
        return Err(CommandError::invalid("an event needs an id and a name"));
    }
    if info.annul_window_ms < 0 {
        return Err(CommandError::invalid(
            "the annulment window cannot be negative",
        ));
    }
    Calendar::named(&info.time_zone).map_err(|e| CommandError::invalid(e.to_string()))?;
    Ok(())
}

/// Creates an event (`document_id` empty) or changes its details.
#[tauri::command]
pub async fn save_event(
    state: AppStateRef<'_>,
    document_id: Option<String>,
    info: EventInfo,
) -> CmdResult<String> {
    check_info(&info)?;
    let core = state.core.clone();
    match document_id.filter(|d| !d.is_empty()) {
        Some(text) => {
            let id = document(&text)?;
            blocking(move || Ok(core.update_event_info(id, &info)?)).await?;
            Ok(id.to_string())
        }
        None => {
            let event_id = info.id.clone();
            let id = blocking(move || Ok(core.create_event(&info)?)).await?;
            state.register(id, "event", Some(&event_id)).await?;
            Ok(id.to_string())
        }
    }
}

#[tauri::command]
pub async fn save_list(
    state: AppStateRef<'_>,
    document_id: String,
    list: ListDto,
) -> CmdResult<()> {
    let id = document(&document_id)?;
    if list.id.trim().is_empty() || list.name.trim().is_empty() {
        return Err(CommandError::invalid(
            "a check-in list needs an id and a name",
        ));
    }
    let rules = list.rules()?;
    let core = state.core.clone();
    blocking(move || {
        Ok(core.put_checkin_list(
            id,
            &CheckinList {
                id: list.id.trim().to_owned(),
                name: list.name.trim().to_owned(),
                rules,
            },
        )?)
    })
    .await
}

#[derive(Clone, Serialize)]
struct ImportProgressDto {
    phase: &'static str,
    rows: u64,
    total: Option<u64>,
}

/// Imports attendees from a CSV file (streamed; the window hears
/// `import-progress`); good rows are imported, broken ones reported by line.
#[tauri::command]
pub async fn import_csv(
    app: AppHandle,
    state: AppStateRef<'_>,
    document_id: String,
    path: String,
) -> CmdResult<ImportReport> {
    let id = document(&document_id)?;
    let file = std::fs::File::open(path.trim())
        .map_err(|e| CommandError::invalid(format!("cannot open {path}: {e}")))?;
    let core = state.core.clone();
    blocking(move || {
        let mut last_emit = std::time::Instant::now();
        let report = core.import_attendees_csv(id, std::io::BufReader::new(file), |progress| {
            let dto = match progress {
                ImportProgress::Read { rows } => ImportProgressDto {
                    phase: "reading",
                    rows,
                    total: None,
                },
                ImportProgress::Writing { total } => ImportProgressDto {
                    phase: "writing",
                    rows: total,
                    total: Some(total),
                },
            };
            // A progress bar needs a few updates a second, not one per row.
            if dto.phase == "writing" || last_emit.elapsed().as_millis() >= 100 {
                last_emit = std::time::Instant::now();
                let _ = app.emit("import-progress", dto);
            }
            true
        })?;
        report.ok_or_else(|| CommandError::new("aborted", "the import was cancelled"))
    })
    .await
}

#[tauri::command]
pub async fn search(
    state: AppStateRef<'_>,
    document_id: String,
    query: String,
) -> CmdResult<Vec<AttendeeView>> {
    let id = document(&document_id)?;
    let core = state.core.clone();
    blocking(move || Ok(core.search_attendees(id, &query, 100)?)).await
}

// ---- the live dashboard ----

#[derive(Serialize)]
pub struct ListCounts {
    list: ListDto,
    expected: u64,
    checked_in: u64,
    inside: u64,
    /// Tablets heard on this list in the last 30 s.
    tablets: Vec<client_core::PeerPresence>,
}

#[derive(Serialize)]
pub struct Dashboard {
    expected: u64,
    checked_in: u64,
    inside: u64,
    lists: Vec<ListCounts>,
    recent: Vec<ScanView>,
    duplicates: Vec<DuplicateView>,
    /// Tablets heard on the event with no list chosen.
    other_tablets: Vec<client_core::PeerPresence>,
    /// Arrivals per 15 minutes and list, the peak, each device's tally,
    /// no-shows per ticket type (from this computer's data).
    report: client_core::CheckinReport,
}

#[tauri::command]
pub async fn dashboard(state: AppStateRef<'_>, document_id: String) -> CmdResult<Dashboard> {
    let id = document(&document_id)?;
    let core = state.core.clone();
    blocking(move || {
        let total = core.counts(id, None)?;
        let mut presence = core.presence(id);
        let mut lists = Vec::new();
        for list in core.checkin_lists(id)? {
            let counts = core.counts(id, Some(&list.id))?;
            let (here, rest): (Vec<_>, Vec<_>) = presence
                .into_iter()
                .partition(|p| p.list_id.as_deref() == Some(list.id.as_str()));
            presence = rest;
            lists.push(ListCounts {
                list: list.into(),
                expected: counts.expected,
                checked_in: counts.checked_in,
                inside: counts.inside,
                tablets: here,
            });
        }
        Ok(Dashboard {
            expected: total.expected,
            checked_in: total.checked_in,
            inside: total.inside,
            lists,
            recent: core.recent_scans(id, 20)?,
            duplicates: core.duplicates(id)?,
            other_tablets: presence,
            report: core
                .checkin_report(id, 15)?
                .map_err(|e| CommandError::invalid(e.to_string()))?,
        })
    })
    .await
}

/// Writes the check-in report (one row per attendee) as CSV to `path`.
#[tauri::command]
pub async fn export_report(
    state: AppStateRef<'_>,
    document_id: String,
    path: String,
) -> CmdResult<u64> {
    let id = document(&document_id)?;
    if path.trim().is_empty() {
        return Err(CommandError::invalid(
            "choose a file to write the report to",
        ));
    }
    let core = state.core.clone();
    blocking(move || {
        let csv = core.checkin_report_csv(id)?;
        std::fs::write(path.trim(), &csv)
            .map_err(|e| CommandError::invalid(format!("cannot write {}: {e}", path.trim())))?;
        Ok(csv.lines().count().saturating_sub(1) as u64)
    })
    .await
}

// ---- signed tickets ----

/// The key the event's signed codes are checked with, if they are on.
#[tauri::command]
pub async fn ticket_key(state: AppStateRef<'_>, document_id: String) -> CmdResult<Option<String>> {
    let id = document(&document_id)?;
    let core = state.core.clone();
    blocking(move || Ok(core.ticket_key(id)?)).await
}

/// Turns signed codes on: the server's key for the event goes into it.
#[tauri::command]
pub async fn enable_signed_tickets(
    state: AppStateRef<'_>,
    document_id: String,
) -> CmdResult<String> {
    let id = document(&document_id)?;
    Ok(state.account().await.enable_signed_tickets(id).await?)
}

/// A signed code for one attendee (the server signs it), with its QR image.
#[tauri::command]
pub async fn issue_ticket(
    state: AppStateRef<'_>,
    document_id: String,
    request: IssueTicketRequest,
) -> CmdResult<IssuedTicket> {
    let id = document(&document_id)?;
    if request.attendee_id.trim().is_empty() {
        return Err(CommandError::invalid("a signed code needs an attendee id"));
    }
    Ok(state.account().await.issue_ticket(id, &request).await?)
}

/// Refuses every signed code of an attendee issued until now (a code
/// issued afterwards, a replacement, is good).
#[tauri::command]
pub async fn revoke_signed_codes(
    state: AppStateRef<'_>,
    document_id: String,
    attendee_id: String,
) -> CmdResult<()> {
    let id = document(&document_id)?;
    if attendee_id.trim().is_empty() {
        return Err(CommandError::invalid("which attendee's codes?"));
    }
    let core = state.core.clone();
    blocking(move || Ok(core.revoke_signed_codes(id, attendee_id.trim())?)).await
}

// ---- users, devices, audit (the server's) ----

#[tauri::command]
pub async fn users(state: AppStateRef<'_>) -> CmdResult<Vec<User>> {
    Ok(state.account().await.users().await?)
}

#[tauri::command]
pub async fn create_user(
    state: AppStateRef<'_>,
    email: String,
    role: String,
    password: String,
) -> CmdResult<User> {
    let role: Role = role
        .parse()
        .map_err(|e: UnknownRole| CommandError::invalid(e.to_string()))?;
    Ok(state
        .account()
        .await
        .create_user(email.trim(), role, &password)
        .await?)
}

#[tauri::command]
pub async fn update_user(
    state: AppStateRef<'_>,
    id: String,
    role: Option<String>,
    disabled: Option<bool>,
) -> CmdResult<()> {
    let role: Option<Role> = role
        .map(|role| role.parse())
        .transpose()
        .map_err(|e: UnknownRole| CommandError::invalid(e.to_string()))?;
    Ok(state
        .account()
        .await
        .update_user(&id, role, disabled)
        .await?)
}

#[tauri::command]
pub async fn set_user_events(
    state: AppStateRef<'_>,
    id: String,
    events: Vec<String>,
) -> CmdResult<()> {
    let events: Vec<String> = events
        .into_iter()
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
        .collect();
    Ok(state.account().await.set_user_events(&id, &events).await?)
}

#[tauri::command]
pub async fn devices(state: AppStateRef<'_>) -> CmdResult<Vec<Device>> {
    Ok(state.account().await.devices().await?)
}

#[tauri::command]
pub async fn revoke_device(state: AppStateRef<'_>, id: String) -> CmdResult<()> {
    Ok(state.account().await.revoke_device(&id).await?)
}

#[tauri::command]
pub async fn audit(state: AppStateRef<'_>, filter: AuditFilter) -> CmdResult<AuditPage> {
    Ok(state.account().await.audit(&filter).await?)
}

#[tauri::command]
pub async fn server_status(state: AppStateRef<'_>) -> CmdResult<ServerStatus> {
    Ok(state.account().await.server_status().await?)
}

#[tauri::command]
pub async fn verify_audit(state: AppStateRef<'_>) -> CmdResult<AuditVerification> {
    Ok(state.account().await.verify_audit().await?)
}

#[derive(Serialize)]
pub struct Exported {
    path: String,
    entries: usize,
}

/// Saves the audit log (JSON lines) under the app's data folder.
#[tauri::command]
pub async fn export_audit(state: AppStateRef<'_>, since: Option<String>) -> CmdResult<Exported> {
    let text = state
        .account()
        .await
        .export_audit(since.as_deref().filter(|s| !s.is_empty()))
        .await?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let path = state.data_dir.join(format!("audit-{stamp}.ndjson"));
    std::fs::write(&path, &text)
        .map_err(|e| CommandError::new("storage", format!("{}: {e}", path.display())))?;
    Ok(Exported {
        path: path.display().to_string(),
        entries: text.lines().filter(|l| !l.trim().is_empty()).count(),
    })
}

// ---- my settings ----

#[derive(Serialize)]
pub struct MySettings {
    document: String,
    settings: client_core::Settings,
}

#[tauri::command]
pub async fn my_settings(state: AppStateRef<'_>) -> CmdResult<MySettings> {
    let core = state.core.clone();
    // Known on this computer: works offline. Otherwise the server names it (or makes it).
    let id = match core.settings_document()? {
        Some(id) => id,
        None => state.account().await.open_settings().await?,
    };
    let settings = if core.heads(id)?.is_empty() {
        client_core::Settings::default()
    } else {
        core.settings(id)?
    };
    Ok(MySettings {
        document: id.to_string(),
        settings,
    })
}

#[tauri::command]
pub async fn set_setting(
    state: AppStateRef<'_>,
    key: String,
    value: serde_json::Value,
) -> CmdResult<()> {
    let value = match value {
        serde_json::Value::Bool(b) => SettingValue::Bool(b),
        serde_json::Value::String(s) => SettingValue::Text(s),
        serde_json::Value::Number(n) if n.is_i64() => {
            SettingValue::Int(n.as_i64().unwrap_or_default())
        }
        other => return Err(CommandError::invalid(format!("unexpected value {other}"))),
    };
    let id = my_settings(state.clone()).await?.document;
    let id = document(&id)?;
    let core = state.core.clone();
    blocking(move || Ok(core.set_setting(id, &key, value)?)).await
}

#[derive(Serialize)]
pub struct Backup {
    id: String,
    taken_ms: i64,
    settings: serde_json::Value,
}

#[tauri::command]
pub async fn settings_backups(state: AppStateRef<'_>) -> CmdResult<Vec<Backup>> {
    let id = document(&my_settings(state.clone()).await?.document)?;
    Ok(state
        .account()
        .await
        .settings_backups(id)
        .await?
        .into_iter()
        .map(|(id, taken_ms, settings)| Backup {
            id,
            taken_ms,
            settings,
        })
        .collect())
}

#[tauri::command]
pub async fn restore_settings_backup(state: AppStateRef<'_>, backup_id: String) -> CmdResult<()> {
    let id = document(&my_settings(state.clone()).await?.document)?;
    Ok(state
        .account()
        .await
        .restore_settings_backup(id, &backup_id)
        .await?)
}
