//! UniFFI bindings of client-core for check-in tablets (Android, iOS).
//!
//! The API follows a tablet's day: [`open_tablet`], sign in
//! ([`Tablet::sign_in`], [`Tablet::submit_totp`]), list and download events
//! ([`Tablet::list_events`]), choose an event and a door
//! ([`Tablet::choose_event`]), scan ([`Tablet::check_in`]), search, annul,
//! counts, duplicates, sync status and a [`TabletListener`], the member's
//! settings, a kiosk lock with a local PIN, sign-out. A revoked device is
//! wiped by client-core and reported as [`SessionState::Revoked`].
//!
//! No call blocks the caller's thread on disk or network: those calls are
//! `async` (a coroutine in Kotlin, `async` in Swift and Python) and run on
//! the library's own tokio runtime (network) or its blocking pool (SQLite).
//! The few plain calls read memory only.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use client_core::{Account, ClientCore, DocEvent, DocumentId, ServerTrust, SyncConfig, SyncHandle};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

mod error;
mod keychain;
mod kiosk;
mod types;

pub use error::TabletError;
pub use keychain::SecureStore;
pub use types::*;

uniffi::setup_scaffolding!("sync_core");

/// The library's runtime: sync, sign-in and every call's work run here, so
/// the app needs none of its own (and its UI thread is never used).
static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sync-core")
        .enable_all()
        .build()
        .expect("cannot start the sync-core runtime")
});

/// Runs network work on the library's runtime; the caller only awaits.
async fn in_background<T: Send + 'static>(
    work: impl Future<Output = Result<T, TabletError>> + Send + 'static,
) -> Result<T, TabletError> {
    RUNTIME.spawn(work).await.map_err(TabletError::internal)?
}

/// Runs SQLite work on the runtime's blocking pool.
async fn on_disk<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, TabletError> + Send + 'static,
) -> Result<T, TabletError> {
    RUNTIME
        .spawn_blocking(work)
        .await
        .map_err(TabletError::internal)?
}

fn parse_document_id(text: &str) -> Result<DocumentId, TabletError> {
    DocumentId::parse(text.trim())
        .map_err(|e| TabletError::invalid(format!("`{text}` is not a document id: {e}")))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// What the app hears about, on a library thread (hop to the UI thread
/// before touching views).
#[uniffi::export(with_foreign)]
pub trait TabletListener: Send + Sync {
    fn sync_status_changed(&self, status: SyncStatus);
    fn session_changed(&self, state: SessionState);
    /// An event's data changed here or on another device (a scan, an
    /// attendee, the event's details): re-read counts and lists.
    fn event_changed(&self, document_id: String);
    fn settings_changed(&self, settings: MemberSettings);
    /// The server refused `count` local changes to a document (for example
    /// scans made after the staff member was removed from the event); they
    /// were set aside and the document shows the accepted state.
    fn changes_refused(&self, document_id: String, count: u32);
}

/// The event and door this tablet scans for.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct EventChoice {
    pub document_id: String,
    pub list_id: String,
}

const CHOSEN_EVENT: &str = "tablet.event";
const CHOSEN_LIST: &str = "tablet.list";

/// One tablet: its local replica, its account and its sync connection.
#[derive(uniffi::Object)]
pub struct Tablet {
    core: ClientCore,
    account: Account,
    device_name: String,
    sync: Mutex<Option<SyncHandle>>,
    listener: Mutex<Option<JoinHandle<()>>>,
    chosen: Mutex<Option<(DocumentId, String)>>,
    kiosk_locked: AtomicBool,
}

/// Opens (or creates) the tablet's local store in `config.data_dir` and
/// starts syncing with the servers (sync waits while nobody is signed in).
/// Session tokens are kept in `secure_store`.
#[uniffi::export]
pub async fn open_tablet(
    config: TabletConfig,
    secure_store: Arc<dyn SecureStore>,
) -> Result<Arc<Tablet>, TabletError> {
    in_background(async move {
        let Some(first) = config.server_urls.first().cloned() else {
            return Err(TabletError::invalid("at least one server URL is needed"));
        };
        if config.data_dir.trim().is_empty() {
            return Err(TabletError::invalid("a data directory is needed"));
        }
        keyring_core::set_default_store(Arc::new(keychain::ForeignStore(secure_store)));
        let dir = PathBuf::from(&config.data_dir);
        let core = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir).map_err(|e| TabletError::Storage {
                detail: format!("cannot create the data directory {}: {e}", dir.display()),
            })?;
            ClientCore::open(dir.join("tablet.sqlite3")).map_err(TabletError::from)
        })
        .await
        .map_err(TabletError::internal)??;
        let mut trust = ServerTrust::default();
        if let Some(pem) = &config.extra_ca_pem {
            trust = trust
                .with_extra_ca_pem(pem)
                .map_err(|e| TabletError::invalid(e.to_string()))?;
        }
        for pin in &config.pinned_server_keys {
            trust = trust
                .with_pinned_key(pin)
                .map_err(|e| TabletError::invalid(e.to_string()))?;
        }
        let account = Account::with_trust(&core, &first, trust)?;
        let chosen = match (
            core.device_value(CHOSEN_EVENT)?,
            core.device_value(CHOSEN_LIST)?,
        ) {
            (Some(event), Some(list)) => DocumentId::parse(&event).ok().map(|id| (id, list)),
            _ => None,
        };
        if let Some((event, list)) = &chosen {
            core.set_presence(*event, Some(list));
        }
        let kiosk_locked = core.device_value(kiosk::PIN_HASH)?.is_some();
        let sync = core.start_sync(
            SyncConfig::with_account(first, &account)
                .with_fallbacks(config.server_urls.iter().skip(1).cloned()),
        );
        Ok(Arc::new(Tablet {
            core,
            account,
            device_name: config.device_name,
            sync: Mutex::new(Some(sync)),
            listener: Mutex::new(None),
            chosen: Mutex::new(chosen),
            kiosk_locked: AtomicBool::new(kiosk_locked),
        }))
    })
    .await
}

impl Tablet {
    fn unlocked(&self) -> Result<(), TabletError> {
        if self.kiosk_locked.load(Ordering::SeqCst) {
            return Err(TabletError::kiosk_locked());
        }
        Ok(())
    }

    fn chosen(&self) -> Result<(DocumentId, String), TabletError> {
        self.chosen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(TabletError::no_event_chosen)
    }

    /// A scan at the chosen door (`payment_confirmed`: the second step of
    /// an unpaid ticket).
    async fn scan(
        &self,
        ticket_code: String,
        direction: Direction,
        payment_confirmed: bool,
    ) -> Result<CheckInResult, TabletError> {
        let (event, list) = self.chosen()?;
        let code = ticket_code.trim().to_owned();
        if code.is_empty() {
            return Err(TabletError::invalid("the ticket code is empty"));
        }
        let core = self.core.clone();
        on_disk(move || {
            let result = if payment_confirmed {
                core.check_in_confirming_payment(event, &code, &list, direction.into())?
            } else {
                core.check_in(event, &code, &list, direction.into())?
            };
            Ok(result.into())
        })
        .await
    }

    /// The organisation's kiosk PIN length (6 while the configuration is unknown).
    async fn pin_length(&self) -> i64 {
        self.org_config()
            .await
            .map(|c| c.kiosk_pin_length)
            .unwrap_or(6)
    }
}

#[uniffi::export]
impl Tablet {
    // ---- session ----

    pub fn session_state(&self) -> SessionState {
        self.account.state().into()
    }

    /// Signs in with a password; staff and admins then pass a code.
    pub async fn sign_in(
        &self,
        email: String,
        password: String,
    ) -> Result<SignInStep, TabletError> {
        let (account, device) = (self.account.clone(), self.device_name.clone());
        in_background(async move {
            Ok(match account.sign_in(&email, &password, &device).await? {
                client_core::SignInStep::SignedIn(info) => SignInStep::SignedIn {
                    session: info.into(),
                },
                client_core::SignInStep::SecondFactorRequired { challenge } => {
                    SignInStep::SecondFactorRequired { challenge }
                }
                client_core::SignInStep::EnrollmentRequired { challenge } => {
                    SignInStep::EnrollmentRequired { challenge }
                }
            })
        })
        .await
    }

    /// The authenticator's 6-digit code for the sign-in `challenge`.
    pub async fn submit_totp(
        &self,
        challenge: String,
        code: String,
    ) -> Result<SessionInfo, TabletError> {
        let account = self.account.clone();
        in_background(async move { Ok(account.submit_totp(&challenge, code.trim()).await?.into()) })
            .await
    }

    /// One of the account's recovery codes instead of a TOTP code (each works once).
    pub async fn submit_recovery_code(
        &self,
        challenge: String,
        code: String,
    ) -> Result<SessionInfo, TabletError> {
        let account = self.account.clone();
        in_background(async move {
            Ok(account
                .submit_recovery_code(&challenge, code.trim())
                .await?
                .into())
        })
        .await
    }

    /// Starts enrolling an authenticator for an `EnrollmentRequired` challenge.
    pub async fn start_enrollment(&self, challenge: String) -> Result<Enrollment, TabletError> {
        let account = self.account.clone();
        in_background(async move {
            let e = account.start_enrollment(&challenge).await?;
            Ok(Enrollment {
                secret: e.secret,
                otpauth_uri: e.otpauth_uri,
                qr_png: e.qr_png,
            })
        })
        .await
    }

    /// Confirms the authenticator with its current code: signed in.
    pub async fn confirm_enrollment(
        &self,
        challenge: String,
        code: String,
    ) -> Result<EnrolledSession, TabletError> {
        let account = self.account.clone();
        in_background(async move {
            let (session, recovery_codes) =
                account.confirm_enrollment(&challenge, code.trim()).await?;
            Ok(EnrolledSession {
                session: session.into(),
                recovery_codes,
            })
        })
        .await
    }

    /// Ends the session here and on the server; local data stays (scans not
    /// yet synced go out after the next sign-in).
    pub async fn sign_out(&self) -> Result<(), TabletError> {
        self.unlocked()?;
        let account = self.account.clone();
        in_background(async move { Ok(account.sign_out().await?) }).await
    }

    // ---- events ----

    /// The events this tablet may work on: those on this device, plus (when
    /// the server can be reached) those assigned to the signed-in staff
    /// member, which start downloading now (`downloaded` turns true, and
    /// the listener hears `event_changed`). Offline, the local list.
    pub async fn list_events(&self) -> Result<Vec<EventInfo>, TabletError> {
        let (core, account) = (self.core.clone(), self.account.clone());
        in_background(async move {
            let assigned = match account.event_documents().await {
                Ok(list) => list,
                Err(
                    client_core::AccountError::Network(_) | client_core::AccountError::SignedOut,
                ) => Vec::new(),
                Err(other) => return Err(other.into()),
            };
            // Each event's ticket key first, so signed codes are admitted
            // while the event downloads; without it (an older server, no
            // network) plain codes work once the download ends.
            let mut keys = Vec::new();
            for (_, id) in &assigned {
                match account.ticket_key(*id).await {
                    Ok(key) => keys.push((*id, key.public_key)),
                    Err(error) => tracing::info!(doc = %id, %error, "no ticket key for the event"),
                }
            }
            tokio::task::spawn_blocking(move || {
                for (id, key) in &keys {
                    core.learn_ticket_key(*id, key)?;
                }
                for (_, id) in &assigned {
                    core.find(*id)?;
                }
                let mut events: Vec<EventInfo> =
                    core.events()?.into_iter().map(EventInfo::from).collect();
                for (event_id, id) in assigned {
                    let id = id.to_string();
                    if !events.iter().any(|e| e.document_id == id) {
                        events.push(EventInfo {
                            document_id: id,
                            event_id,
                            name: String::new(),
                            starts_at: String::new(),
                            location: String::new(),
                            downloaded: false,
                        });
                    }
                }
                Ok(events)
            })
            .await
            .map_err(TabletError::internal)?
        })
        .await
    }

    /// The doors (check-in lists) of a downloaded event.
    pub async fn checkin_lists(
        &self,
        document_id: String,
    ) -> Result<Vec<CheckinListInfo>, TabletError> {
        let core = self.core.clone();
        let id = parse_document_id(&document_id)?;
        on_disk(move || {
            Ok(core
                .checkin_lists(id)?
                .into_iter()
                .map(CheckinListInfo::from)
                .collect())
        })
        .await
    }

    /// Scans go to this event and door from now on (remembered across
    /// restarts); the tablet announces itself there to the dashboard. An
    /// event still downloading may be chosen once its ticket key is here
    /// (`list_events` fetches it): signed codes are admitted meanwhile.
    pub async fn choose_event(
        &self,
        document_id: String,
        list_id: String,
    ) -> Result<(), TabletError> {
        self.unlocked()?;
        let id = parse_document_id(&document_id)?;
        let core = self.core.clone();
        let list = list_id.clone();
        on_disk(move || {
            // Before its download ends an event has no lists yet; with its
            // ticket key the tablet already admits signed codes at the door
            // it was told to work (under the strictest rules until the list
            // arrives), so that door may be chosen.
            let early = !core.has_document(id) && core.ticket_key(id)?.is_some();
            if !early && !core.checkin_lists(id)?.iter().any(|l| l.id == list) {
                return Err(TabletError::not_found(format!(
                    "check-in list `{list}` in event {id} (is the event downloaded?)"
                )));
            }
            core.set_device_value(CHOSEN_EVENT, Some(&id.to_string()))?;
            core.set_device_value(CHOSEN_LIST, Some(&list))?;
            core.set_presence(id, Some(&list));
            Ok(())
        })
        .await?;
        *self.chosen.lock().unwrap_or_else(|p| p.into_inner()) = Some((id, list_id));
        Ok(())
    }

    pub fn chosen_event(&self) -> Option<EventChoice> {
        self.chosen().ok().map(|(id, list)| EventChoice {
            document_id: id.to_string(),
            list_id: list,
        })
    }

    // ---- at the door ----

    /// A scan: looks the ticket up locally, applies the door's rules and
    /// records the scan durably before answering. Works offline.
    pub async fn check_in(
        &self,
        ticket_code: String,
        direction: Direction,
    ) -> Result<CheckInResult, TabletError> {
        self.scan(ticket_code, direction, false).await
    }

    /// The second step of `CONFIRM_PAYMENT`: staff took payment for an
    /// unpaid ticket; the same scan again, now admitted and recorded.
    pub async fn check_in_confirming_payment(
        &self,
        ticket_code: String,
        direction: Direction,
    ) -> Result<CheckInResult, TabletError> {
        self.scan(ticket_code, direction, true).await
    }

    /// Attendees by ticket code prefix or any part of name or email.
    pub async fn search(&self, query: String, limit: u32) -> Result<Vec<Attendee>, TabletError> {
        let (event, _) = self.chosen()?;
        let core = self.core.clone();
        on_disk(move || {
            Ok(core
                .search_attendees(event, &query, limit.clamp(1, 500) as usize)?
                .into_iter()
                .map(Attendee::from)
                .collect())
        })
        .await
    }

    /// Annuls a scan made by mistake, within the event's annulment window.
    pub async fn annul(&self, scan_id: String) -> Result<(), TabletError> {
        let (event, _) = self.chosen()?;
        let core = self.core.clone();
        on_disk(move || match core.annul(event, &scan_id)? {
            Ok(()) => Ok(()),
            Err(client_core::AnnulError::UnknownScan(scan)) => {
                Err(TabletError::not_found(format!("scan {scan}")))
            }
            Err(client_core::AnnulError::TooLate { window_minutes }) => {
                Err(TabletError::annul_too_late(window_minutes))
            }
        })
        .await
    }

    /// Counts for one door (`list_id`), or the whole event (`None`).
    pub async fn counts(&self, list_id: Option<String>) -> Result<Counts, TabletError> {
        let (event, _) = self.chosen()?;
        let core = self.core.clone();
        on_disk(move || Ok(core.counts(event, list_id.as_deref())?.into())).await
    }

    /// The chosen event's check-in figures from this tablet's data
    /// (offline too): arrivals per `bucket_minutes` and list, the peak,
    /// each device's tally, each door's, no-shows per ticket type.
    pub async fn checkin_report(&self, bucket_minutes: u32) -> Result<CheckinReport, TabletError> {
        let (event, _) = self.chosen()?;
        let core = self.core.clone();
        on_disk(move || match core.checkin_report(event, bucket_minutes)? {
            Ok(report) => Ok(report.into()),
            Err(refused) => Err(TabletError::invalid(refused.to_string())),
        })
        .await
    }

    /// The check-in report as CSV (one row per attendee), to share.
    pub async fn checkin_report_csv(&self) -> Result<String, TabletError> {
        let (event, _) = self.chosen()?;
        let core = self.core.clone();
        on_disk(move || Ok(core.checkin_report_csv(event)?)).await
    }

    /// Scans flagged as duplicates (two entries with no exit between), to review.
    pub async fn duplicates(&self) -> Result<Vec<Duplicate>, TabletError> {
        let (event, _) = self.chosen()?;
        let core = self.core.clone();
        on_disk(move || {
            Ok(core
                .duplicates(event)?
                .into_iter()
                .map(Duplicate::from)
                .collect())
        })
        .await
    }

    pub async fn recent_scans(&self, limit: u32) -> Result<Vec<Scan>, TabletError> {
        let (event, _) = self.chosen()?;
        let core = self.core.clone();
        on_disk(move || {
            Ok(core
                .recent_scans(event, limit.clamp(1, 500) as usize)?
                .into_iter()
                .map(Scan::from)
                .collect())
        })
        .await
    }

    /// Other tablets heard on the chosen event in the last 30 seconds.
    pub fn tablets_online(&self) -> Vec<TabletPresence> {
        match self.chosen() {
            Ok((event, _)) => self
                .core
                .presence(event)
                .into_iter()
                .map(TabletPresence::from)
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    // ---- sync ----

    pub fn sync_status(&self) -> SyncStatus {
        self.core.sync_status().into()
    }

    /// Sends status, session and document changes to `listener` from now
    /// on (replacing any earlier listener).
    pub fn set_listener(&self, listener: Arc<dyn TabletListener>) {
        let (core, account) = (self.core.clone(), self.account.clone());
        let task = RUNTIME.spawn(forward_events(core, account, listener));
        if let Some(old) = self
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(task)
        {
            old.abort();
        }
    }

    // ---- the member's settings and the organisation's configuration ----

    /// The signed-in member's settings (defaults until they have arrived).
    pub async fn settings(&self) -> Result<MemberSettings, TabletError> {
        let (core, account) = (self.core.clone(), self.account.clone());
        in_background(async move {
            let id = account.open_settings().await?;
            if core.heads(id)?.is_empty() {
                return Ok(client_core::Settings::default().into());
            }
            Ok(core.settings(id)?.into())
        })
        .await
    }

    /// Changes one setting (`theme`, `language`, `default_checkin_list`,
    /// `sounds`, `notifications`); it syncs to the member's other devices.
    pub async fn set_setting(&self, key: String, value: SettingValue) -> Result<(), TabletError> {
        self.unlocked()?;
        let (core, account) = (self.core.clone(), self.account.clone());
        in_background(async move {
            let id = account.open_settings().await?;
            core.set_setting(id, &key, value.into())?;
            Ok(())
        })
        .await
    }

    /// The organisation's configuration (defaults while there is none or it
    /// has not arrived).
    pub async fn org_config(&self) -> Result<OrgConfig, TabletError> {
        let (core, account) = (self.core.clone(), self.account.clone());
        in_background(async move {
            let id = match core.org_config_document()? {
                Some(id) => Some(id),
                None => match account.open_org_config().await {
                    Ok(id) => id,
                    Err(
                        client_core::AccountError::Network(_)
                        | client_core::AccountError::SignedOut,
                    ) => None,
                    Err(other) => return Err(other.into()),
                },
            };
            Ok(match id {
                Some(id) => core.org_config(id)?.into(),
                None => client_core::settings_model::org::OrgConfig::default().into(),
            })
        })
        .await
    }

    // ---- kiosk ----

    /// Locks the tablet to scanning: choosing another event, settings,
    /// sign-out and wiping need `pin` (at least the organisation's PIN
    /// length in digits) until [`Tablet::kiosk_unlock`].
    pub async fn kiosk_lock(&self, pin: String) -> Result<(), TabletError> {
        self.unlocked()?;
        kiosk::check_format(&pin, self.pin_length().await)?;
        let core = self.core.clone();
        on_disk(move || {
            let hash = kiosk::hash(&pin)?;
            core.set_device_value(kiosk::PIN_HASH, Some(&hash))?;
            core.set_device_value(kiosk::FAILURES, None)?;
            core.set_device_value(kiosk::NEXT_ATTEMPT_MS, None)?;
            Ok(())
        })
        .await?;
        self.kiosk_locked.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Unlocks with the PIN. After a few wrong PINs each attempt must wait
    /// (`WrongPin.retry_after_secs`), longer every time.
    pub async fn kiosk_unlock(&self, pin: String) -> Result<(), TabletError> {
        let core = self.core.clone();
        on_disk(move || {
            let Some(hash) = core.device_value(kiosk::PIN_HASH)? else {
                return Ok(());
            };
            let now = now_ms();
            let next: i64 = core
                .device_value(kiosk::NEXT_ATTEMPT_MS)?
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if next > now {
                return Err(TabletError::wrong_pin(((next - now) as u64).div_ceil(1000)));
            }
            if kiosk::matches(&hash, &pin) {
                core.set_device_value(kiosk::PIN_HASH, None)?;
                core.set_device_value(kiosk::FAILURES, None)?;
                core.set_device_value(kiosk::NEXT_ATTEMPT_MS, None)?;
                return Ok(());
            }
            let failures: u32 = core
                .device_value(kiosk::FAILURES)?
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
                + 1;
            let wait = kiosk::wait_after(failures);
            core.set_device_value(kiosk::FAILURES, Some(&failures.to_string()))?;
            core.set_device_value(
                kiosk::NEXT_ATTEMPT_MS,
                Some(&(now + wait.as_millis() as i64).to_string()),
            )?;
            Err(TabletError::wrong_pin(wait.as_secs()))
        })
        .await?;
        self.kiosk_locked.store(false, Ordering::SeqCst);
        Ok(())
    }

    pub fn kiosk_locked(&self) -> bool {
        self.kiosk_locked.load(Ordering::SeqCst)
    }

    // ---- end of the day ----

    /// Deletes every local document (a revoked device does this by itself).
    pub async fn wipe_local_data(&self) -> Result<(), TabletError> {
        self.unlocked()?;
        let core = self.core.clone();
        on_disk(move || Ok(core.wipe_local_data()?)).await
    }

    /// Stops syncing and listening (the app is closing). Scans are already
    /// on disk; those not yet synced go out next time.
    pub async fn shutdown(&self) {
        if let Some(task) = self
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            task.abort();
        }
        let sync = self.sync.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(sync) = sync {
            let _ = RUNTIME.spawn(sync.stop()).await;
        }
    }
}

/// Forwards client-core's notifications to the app's listener.
async fn forward_events(core: ClientCore, account: Account, listener: Arc<dyn TabletListener>) {
    let mut events = core.subscribe();
    let mut status = core.watch_sync_status();
    let mut session = account.watch_state();
    listener.sync_status_changed(status.borrow_and_update().clone().into());
    listener.session_changed(session.borrow_and_update().clone().into());
    loop {
        tokio::select! {
            changed = status.changed() => {
                if changed.is_err() { return; }
                let now = status.borrow_and_update().clone();
                listener.sync_status_changed(now.into());
            }
            changed = session.changed() => {
                if changed.is_err() { return; }
                let now = session.borrow_and_update().clone();
                listener.session_changed(now.into());
            }
            event = events.recv() => match event {
                Ok(DocEvent::Changed { document, .. }) => {
                    let settings = core.settings_document().ok().flatten();
                    if settings == Some(document) {
                        if let Ok(s) = core.settings(document) {
                            listener.settings_changed(s.into());
                        }
                    } else if core.org_config_document().ok().flatten() != Some(document) {
                        listener.event_changed(document.to_string());
                    }
                }
                Ok(DocEvent::Quarantined { document, changes, .. }) => {
                    listener.changes_refused(document.to_string(), changes as u32);
                }
                Ok(DocEvent::Wiped) => listener.session_changed(SessionState::Revoked),
                Ok(_) => {}
                // Missed notifications: whatever changed is re-read on the next one.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}
