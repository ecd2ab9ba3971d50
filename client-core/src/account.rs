//! Signing in and keeping a session: password, then a TOTP or recovery code
//! (or, the first time, enrolling an authenticator), through the server's
//! REST API. Tokens live in the OS keychain through `keyring-core` (the app
//! picks the store at startup: [`use_platform_keychain`], or a mock in
//! tests); the access token is refreshed shortly before it expires, rotating
//! the refresh token. A revoked device wipes its local documents; a session
//! that ended asks the user to sign in again. None of this touches local
//! data otherwise: offline, or signed out, every local write stays in the
//! store and syncs after the next sign-in.

use std::sync::Arc;

use api_types::{
    EnrollConfirmRequest, EnrollConfirmResponse, EnrollStartRequest, EnrollStartResponse,
    ErrorBody, LoginRequest, MeResponse, RefreshRequest, RegisterDocumentRequest,
    RegisteredDocument, SecondFactorRequest, SessionTokens, SignInResponse, SignInStatus,
};
use base64::Engine;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::{Mutex, watch};

use crate::time::now_ms;
use crate::tls::{self, ServerTrust, TrustError};
use crate::{ClientCore, ClientError};

const KEYCHAIN_SERVICE: &str = "sync-client";
/// Refresh when the access token has less than this left.
const REFRESH_MARGIN_MS: i64 = 60_000;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("cannot reach the server: {0}")]
    Network(String),
    /// The server answered, but its certificate failed this device's trust
    /// (unknown authority, expired, another name, a key that is not the pin).
    #[error("the server's certificate is not trusted: {0}")]
    UntrustedCertificate(String),
    /// The trust settings themselves are unusable (no roots at all, say).
    #[error("TLS settings: {0}")]
    Trust(#[from] TrustError),
    /// The server said no; `code` is its stable error code
    /// (`invalid_credentials`, `invalid_code`, `code_replayed`, `throttled`, ...).
    #[error("{message}")]
    Refused {
        code: String,
        message: String,
        retry_after_secs: Option<u64>,
    },
    #[error("not signed in")]
    SignedOut,
    #[error("this device was revoked; its local data was wiped")]
    DeviceRevoked,
    #[error("keychain: {0}")]
    Keychain(String),
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    #[error("local store: {0}")]
    Local(#[from] ClientError),
}

impl AccountError {
    /// The server's error code, when it refused.
    pub fn code(&self) -> Option<&str> {
        match self {
            AccountError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
}

pub use api_types::UserInfo;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub user: UserInfo,
    pub device_id: String,
    pub session_id: String,
}

/// What the keychain holds for a session: the tokens as the server sent them.
type StoredSession = SessionTokens;

fn session_info(session: &StoredSession) -> SessionInfo {
    SessionInfo {
        user: session.user.clone(),
        device_id: session.device_id.clone(),
        session_id: session.session_id.clone(),
    }
}

/// The documents `GET /api/me` names for this session.
struct Me {
    settings_document: Option<sync_protocol::DocumentId>,
    org_config_document: Option<sync_protocol::DocumentId>,
}

/// The next step of a sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInStep {
    /// Ask for a TOTP code (or a recovery code) and pass it with `challenge`.
    SecondFactorRequired {
        challenge: String,
    },
    /// The account must enroll an authenticator first ([`Account::start_enrollment`]).
    EnrollmentRequired {
        challenge: String,
    },
    SignedIn(SessionInfo),
}

/// A new authenticator to show the user.
#[derive(Debug, Clone)]
pub struct Enrollment {
    pub secret: String,
    pub otpauth_uri: String,
    pub qr_png: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionState {
    SignedOut,
    SignedIn(SessionInfo),
    /// The session ended (signed out elsewhere, expired, or a reused token
    /// ended it): sign in again. Local data and pending changes are kept.
    NeedsSignIn {
        reason: String,
    },
    /// This device was revoked and its local documents were wiped.
    Revoked,
}

/// Sets the platform's keychain as keyring-core's default store. Call it
/// first thing in `main`, before any thread starts.
///
/// On Linux that is the kernel's key store. A process started outside a
/// login session (a service, a container, a test runner) has no session
/// keyring of its own, and the user-session keyring it falls back to refuses
/// writes (EACCES); so one is joined here, which threads started afterwards
/// inherit. Secrets also go to the user's persistent keyring, which the
/// session keyring links to, so they outlive the process (for the kernel's
/// persistent-keyring expiry, days; not across reboots).
pub fn use_platform_keychain() -> Result<(), AccountError> {
    #[cfg(target_os = "linux")]
    {
        linux_keyutils::KeyRing::from_special_id(linux_keyutils::KeyRingIdentifier::Session, true)
            .map_err(|e| AccountError::Keychain(format!("no session keyring: {e:?}")))?;
        let store = linux_keyutils_keyring_store::Store::new()
            .map_err(|e| AccountError::Keychain(e.to_string()))?;
        keyring_core::set_default_store(store);
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(AccountError::Keychain(
            "no keychain store is wired for this platform yet".into(),
        ))
    }
}

/// One account on one server, for one local store. Cheap to clone.
#[derive(Clone)]
pub struct Account {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("server", &self.inner.base)
            .field("state", &*self.inner.state.borrow())
            .finish_non_exhaustive()
    }
}

struct Inner {
    core: ClientCore,
    base: String,
    trust: ServerTrust,
    http: reqwest::Client,
    keychain: keyring_core::Entry,
    /// Held across a refresh, so concurrent callers wait for one exchange.
    session: Mutex<Option<StoredSession>>,
    state: watch::Sender<SessionState>,
}

/// Sends an API request: the JSON body of a success, or the server's
/// refusal (its stable `error` code and message).
async fn answer(request: reqwest::RequestBuilder) -> Result<Value, AccountError> {
    let (status, text) = send(request).await?;
    let body: Value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)
            .map_err(|_| AccountError::Protocol(format!("HTTP {status}: {text}")))?
    };
    if status.is_success() {
        Ok(body)
    } else {
        Err(refusal(status, body))
    }
}

/// Sends a request: the status and the body as text (`Network` when no answer came).
async fn send(
    request: reqwest::RequestBuilder,
) -> Result<(reqwest::StatusCode, String), AccountError> {
    let response = request.send().await.map_err(network_error)?;
    let status = response.status();
    let text = response.text().await.map_err(network_error)?;
    Ok((status, text))
}

/// No answer came: a refused certificate, or the server is out of reach.
fn network_error(error: reqwest::Error) -> AccountError {
    match tls::untrusted_reason(&error) {
        Some(reason) => AccountError::UntrustedCertificate(reason),
        None => AccountError::Network(error.to_string()),
    }
}

/// The server's refusal, from its error body. A body that is not one (a
/// proxy's page, say) is refused as `unknown` with the HTTP status.
fn refusal(status: reqwest::StatusCode, body: Value) -> AccountError {
    match serde_json::from_value::<ErrorBody>(body) {
        Ok(body) => AccountError::Refused {
            code: body.error,
            message: body.message,
            retry_after_secs: body.retry_after_secs,
        },
        Err(_) => AccountError::Refused {
            code: "unknown".to_owned(),
            message: status.to_string(),
            retry_after_secs: None,
        },
    }
}

/// A successful answer read as the API type it should be.
pub(crate) fn parse<T: DeserializeOwned>(value: Value) -> Result<T, AccountError> {
    serde_json::from_value(value).map_err(|e| AccountError::Protocol(e.to_string()))
}

/// A request body as JSON (a body type that cannot be one is a bug of this crate).
pub(crate) fn json_body(body: &impl Serialize) -> Result<Value, AccountError> {
    serde_json::to_value(body).map_err(|e| AccountError::Protocol(format!("a request body: {e}")))
}

/// `http://host:port` from either that or the sync URL `ws://host:port/sync`.
fn api_base(server: &str) -> String {
    let base = server
        .replacen("wss://", "https://", 1)
        .replacen("ws://", "http://", 1);
    base.trim_end_matches('/')
        .trim_end_matches("/sync")
        .to_owned()
}

impl Account {
    /// The account of `core` on `server` (its base URL or sync URL), with any
    /// session the keychain still holds. Needs keyring-core's default store set.
    pub fn new(core: &ClientCore, server: &str) -> Result<Self, AccountError> {
        Self::with_trust(core, server, ServerTrust::default())
    }

    /// Like [`Account::new`], trusting the servers `trust` names (a venue's
    /// CA, a pinned key); sync started with [`SyncConfig::with_account`]
    /// trusts the same.
    ///
    /// [`SyncConfig::with_account`]: crate::SyncConfig::with_account
    pub fn with_trust(
        core: &ClientCore,
        server: &str,
        trust: ServerTrust,
    ) -> Result<Self, AccountError> {
        let base = api_base(server);
        tls::warn_if_cleartext(&base);
        let tls_config = trust.client_config()?;
        let install = match core.meta("install_id")? {
            Some(id) => id,
            None => {
                let id = uuid::Uuid::new_v4().to_string();
                core.set_meta("install_id", &id)?;
                id
            }
        };
        let keychain = keyring_core::Entry::new(KEYCHAIN_SERVICE, &format!("{base}|{install}"))
            .map_err(|e| AccountError::Keychain(e.to_string()))?;
        let stored = match keychain.get_password() {
            Ok(text) => serde_json::from_str::<StoredSession>(&text).ok(),
            Err(keyring_core::Error::NoEntry) => None,
            Err(e) => return Err(AccountError::Keychain(e.to_string())),
        };
        let state = match &stored {
            Some(session) => SessionState::SignedIn(session_info(session)),
            None => SessionState::SignedOut,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                core: core.clone(),
                base,
                trust,
                // An unreachable server must fail fast (the app then works
                // offline), not after the operating system's TCP timeout.
                http: reqwest::Client::builder()
                    .use_preconfigured_tls(tls_config)
                    .connect_timeout(std::time::Duration::from_secs(5))
                    .timeout(std::time::Duration::from_secs(60))
                    .build()
                    .map_err(|e| AccountError::Network(e.to_string()))?,
                keychain,
                session: Mutex::new(stored),
                state: watch::channel(state).0,
            }),
        })
    }

    /// The servers this account trusts.
    pub fn trust(&self) -> &ServerTrust {
        &self.inner.trust
    }

    pub fn state(&self) -> SessionState {
        self.inner.state.borrow().clone()
    }

    pub fn watch_state(&self) -> watch::Receiver<SessionState> {
        self.inner.state.subscribe()
    }

    async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: &impl Serialize,
    ) -> Result<Value, AccountError> {
        let mut request = self
            .inner
            .http
            .post(format!("{}{path}", self.inner.base))
            .json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        answer(request).await
    }

    /// Step 1: email and password. `device_name` is what device lists show.
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        device_name: &str,
    ) -> Result<SignInStep, AccountError> {
        let device_id = self.inner.core.meta("device_id")?;
        let reply = self
            .post(
                "/api/auth/login",
                None,
                &LoginRequest {
                    email: email.to_owned(),
                    password: password.to_owned(),
                    device_name: device_name.to_owned(),
                    app_version: env!("CARGO_PKG_VERSION").to_owned(),
                    device_id,
                },
            )
            .await;
        let reply: SignInResponse = parse(self.check_revoked(reply).await?)?;
        let challenge = || {
            reply.challenge.clone().ok_or_else(|| {
                AccountError::Protocol("a sign-in step without its challenge".into())
            })
        };
        match reply.status {
            SignInStatus::SecondFactorRequired => Ok(SignInStep::SecondFactorRequired {
                challenge: challenge()?,
            }),
            SignInStatus::EnrollmentRequired => Ok(SignInStep::EnrollmentRequired {
                challenge: challenge()?,
            }),
            SignInStatus::SignedIn => Ok(SignInStep::SignedIn(self.adopt_signed_in(reply).await?)),
        }
    }

    /// Step 2 with a code from the authenticator.
    pub async fn submit_totp(
        &self,
        challenge: &str,
        code: &str,
    ) -> Result<SessionInfo, AccountError> {
        self.second_factor(SecondFactorRequest {
            challenge: challenge.to_owned(),
            code: Some(code.to_owned()),
            recovery_code: None,
        })
        .await
    }

    /// Step 2 with one of the recovery codes (each works once).
    pub async fn submit_recovery_code(
        &self,
        challenge: &str,
        code: &str,
    ) -> Result<SessionInfo, AccountError> {
        self.second_factor(SecondFactorRequest {
            challenge: challenge.to_owned(),
            code: None,
            recovery_code: Some(code.to_owned()),
        })
        .await
    }

    async fn second_factor(&self, body: SecondFactorRequest) -> Result<SessionInfo, AccountError> {
        let reply = self.post("/api/auth/second-factor", None, &body).await;
        self.adopt_signed_in(parse(self.check_revoked(reply).await?)?)
            .await
    }

    /// Enrollment, step 1: the secret to show (URI and QR image).
    pub async fn start_enrollment(&self, challenge: &str) -> Result<Enrollment, AccountError> {
        let reply: EnrollStartResponse = parse(
            self.post(
                "/api/auth/enroll/start",
                None,
                &EnrollStartRequest {
                    challenge: challenge.to_owned(),
                },
            )
            .await?,
        )?;
        let qr_png = base64::engine::general_purpose::STANDARD
            .decode(&reply.qr_png_base64)
            .map_err(|e| AccountError::Protocol(format!("QR image: {e}")))?;
        Ok(Enrollment {
            secret: reply.secret,
            otpauth_uri: reply.otpauth_uri,
            qr_png,
        })
    }

    /// Enrollment, step 2: a current code confirms it. Returns the session and
    /// the recovery codes, which the user must see now (they are not kept).
    pub async fn confirm_enrollment(
        &self,
        challenge: &str,
        code: &str,
    ) -> Result<(SessionInfo, Vec<String>), AccountError> {
        let reply: EnrollConfirmResponse = parse(
            self.post(
                "/api/auth/enroll/confirm",
                None,
                &EnrollConfirmRequest {
                    challenge: challenge.to_owned(),
                    code: code.to_owned(),
                },
            )
            .await?,
        )?;
        Ok((self.adopt(reply.session).await?, reply.recovery_codes))
    }

    /// The session of a sign-in step that says it signed in.
    async fn adopt_signed_in(&self, reply: SignInResponse) -> Result<SessionInfo, AccountError> {
        match (reply.status, reply.session) {
            (SignInStatus::SignedIn, Some(session)) => self.adopt(session).await,
            (status, _) => Err(AccountError::Protocol(format!(
                "expected a session, the server said {status:?}"
            ))),
        }
    }

    /// Keeps a new session: keychain, device id, state.
    async fn adopt(&self, stored: StoredSession) -> Result<SessionInfo, AccountError> {
        self.save(&stored)?;
        self.inner.core.set_meta("device_id", &stored.device_id)?;
        // Scans record who made them.
        self.inner.core.set_meta("user_id", &stored.user.id)?;
        let info = session_info(&stored);
        *self.inner.session.lock().await = Some(stored);
        self.inner
            .state
            .send_replace(SessionState::SignedIn(info.clone()));
        Ok(info)
    }

    fn save(&self, session: &StoredSession) -> Result<(), AccountError> {
        let text =
            serde_json::to_string(session).map_err(|e| AccountError::Protocol(e.to_string()))?;
        self.inner
            .keychain
            .set_password(&text)
            .map_err(|e| AccountError::Keychain(e.to_string()))
    }

    fn forget(&self) -> Result<(), AccountError> {
        match self.inner.keychain.delete_credential() {
            Ok(()) | Err(keyring_core::Error::NoEntry) => Ok(()),
            Err(e) => Err(AccountError::Keychain(e.to_string())),
        }
    }

    /// A `device_revoked` refusal wipes local data before it is returned.
    async fn check_revoked(
        &self,
        reply: Result<Value, AccountError>,
    ) -> Result<Value, AccountError> {
        match reply {
            Err(AccountError::Refused { code, .. }) if code == "device_revoked" => {
                self.device_revoked().await?;
                Err(AccountError::DeviceRevoked)
            }
            other => other,
        }
    }

    /// This device was revoked: forget the session and the device, wipe local documents.
    async fn device_revoked(&self) -> Result<(), AccountError> {
        *self.inner.session.lock().await = None;
        self.forget()?;
        self.inner.core.set_meta("device_id", "")?;
        self.inner.core.wipe_local_data()?;
        self.inner.state.send_replace(SessionState::Revoked);
        Ok(())
    }

    /// The session ended on the server: tokens go, local data stays.
    fn session_ended(
        &self,
        session: &mut Option<StoredSession>,
        reason: &str,
    ) -> Result<(), AccountError> {
        *session = None;
        self.forget()?;
        self.inner.state.send_replace(SessionState::NeedsSignIn {
            reason: reason.to_owned(),
        });
        Ok(())
    }

    /// A valid access token, refreshed first if it is about to expire.
    /// Offline this fails with `Network` and changes nothing.
    pub async fn access_token(&self) -> Result<String, AccountError> {
        self.access_token_until().await.map(|(token, _)| token)
    }

    /// Like [`Account::access_token`], with the token's expiry (unix ms),
    /// read under the same lock so a concurrent refresh cannot mix them up.
    pub(crate) async fn access_token_until(&self) -> Result<(String, i64), AccountError> {
        let mut session = self.inner.session.lock().await;
        let Some(current) = session.as_ref() else {
            return Err(AccountError::SignedOut);
        };
        if current.access_expires_ms - REFRESH_MARGIN_MS <= now_ms() {
            self.refresh_locked(&mut session).await?;
        }
        let current = session.as_ref().ok_or(AccountError::SignedOut)?;
        Ok((current.access_token.clone(), current.access_expires_ms))
    }

    /// Exchanges the refresh token for a new pair now.
    pub async fn refresh(&self) -> Result<String, AccountError> {
        let mut session = self.inner.session.lock().await;
        self.refresh_locked(&mut session).await
    }

    async fn refresh_locked(
        &self,
        session: &mut Option<StoredSession>,
    ) -> Result<String, AccountError> {
        let Some(current) = session.clone() else {
            return Err(AccountError::SignedOut);
        };
        let reply = self
            .post(
                "/api/auth/refresh",
                None,
                &RefreshRequest {
                    refresh_token: current.refresh_token,
                },
            )
            .await;
        match reply {
            Ok(body) => {
                let next: StoredSession = parse(body)?;
                self.save(&next)?;
                let token = next.access_token.clone();
                *session = Some(next);
                Ok(token)
            }
            Err(AccountError::Refused { code, message, .. }) if code == "device_revoked" => {
                drop(message);
                *session = None;
                self.device_revoked().await?;
                Err(AccountError::DeviceRevoked)
            }
            // Anything else the server refuses (reuse, revoked, expired,
            // invalid, disabled) ends this session; a network error does not.
            Err(AccountError::Refused {
                code,
                message,
                retry_after_secs,
            }) if code != "rate_limited" && code != "store_unavailable" => {
                self.session_ended(session, &code)?;
                Err(AccountError::Refused {
                    code,
                    message,
                    retry_after_secs,
                })
            }
            Err(other) => Err(other),
        }
    }

    /// What to do after the sync endpoint answered 401 with `code`.
    pub(crate) async fn unauthorized(&self, code: &str) -> Result<(), AccountError> {
        match code {
            "token_expired" => self.refresh().await.map(|_| ()),
            "device_revoked" => self.device_revoked().await,
            other => {
                let mut session = self.inner.session.lock().await;
                self.session_ended(&mut session, other)
            }
        }
    }

    /// Declares document `id` to the server as a `kind` document (`event`
    /// with the event id as `scope`, `settings` for the signed-in member,
    /// `org_config`), which decides who may sync it. Do it before the
    /// document has content, or the server refuses that content.
    pub async fn register_document(
        &self,
        id: sync_protocol::DocumentId,
        kind: &str,
        scope: Option<&str>,
    ) -> Result<(), AccountError> {
        let request = RegisterDocumentRequest::new(id.to_string(), kind, scope).map_err(|e| {
            AccountError::Refused {
                code: "invalid_request".into(),
                message: e.to_string(),
                retry_after_secs: None,
            }
        })?;
        let token = self.access_token().await?;
        self.post("/api/documents", Some(&token), &request).await?;
        Ok(())
    }

    /// The event documents this account may sync, as `(event id, document)`:
    /// for staff, those of the events they are assigned to; admins all.
    /// Pass each to [`ClientCore::find`] to download it.
    pub async fn event_documents(
        &self,
    ) -> Result<Vec<(String, sync_protocol::DocumentId)>, AccountError> {
        let listed: Vec<RegisteredDocument> = parse(self.get("/api/documents?kind=event").await?)?;
        listed
            .into_iter()
            .map(|item| {
                let id = sync_protocol::DocumentId::parse(&item.document_id).map_err(|e| {
                    AccountError::Protocol(format!("bad document id {}: {e}", item.document_id))
                })?;
                Ok((item.scope, id))
            })
            .collect()
    }

    /// Creates the member's settings document: registered with the server
    /// first, then given its content (which then syncs to the other devices).
    pub async fn create_settings(&self) -> Result<sync_protocol::DocumentId, AccountError> {
        let id = self.inner.core.create_document()?;
        self.register_document(id, "settings", None).await?;
        self.inner.core.init_settings(id)?;
        Ok(id)
    }

    /// Creates the organisation's configuration document (admins; there is
    /// one per organisation, so a second is refused with code `conflict`):
    /// registered first, then given its content.
    pub async fn create_org_config(&self) -> Result<sync_protocol::DocumentId, AccountError> {
        let id = self.inner.core.create_document()?;
        self.register_document(id, "org_config", None).await?;
        self.inner.core.init_org_config(id)?;
        Ok(id)
    }

    /// The organisation configuration document: the one this device uses,
    /// else the one the server names (synced from then on); `None` while no
    /// admin has created one (apps then use `OrgConfig::default()`).
    pub async fn open_org_config(&self) -> Result<Option<sync_protocol::DocumentId>, AccountError> {
        if let Some(id) = self.inner.core.org_config_document()? {
            return Ok(Some(id));
        }
        match self.me().await?.org_config_document {
            Some(id) => {
                self.inner.core.use_org_config(id)?;
                Ok(Some(id))
            }
            None => Ok(None),
        }
    }

    /// The member's settings document: the one already registered on the
    /// server (another device made it; this one then syncs it), else a new
    /// one ([`Account::create_settings`]).
    pub async fn open_settings(&self) -> Result<sync_protocol::DocumentId, AccountError> {
        if let Some(id) = self.inner.core.settings_document()? {
            return Ok(id);
        }
        match self.me().await?.settings_document {
            Some(id) => {
                self.inner.core.use_settings(id)?;
                Ok(id)
            }
            None => self.create_settings().await,
        }
    }

    /// Who the server says this session is, with the documents it names.
    async fn me(&self) -> Result<Me, AccountError> {
        let me: MeResponse = parse(self.get("/api/me").await?)?;
        let document = |id: Option<String>| {
            id.map(|id| {
                sync_protocol::DocumentId::parse(&id)
                    .map_err(|e| AccountError::Protocol(format!("document id `{id}`: {e}")))
            })
            .transpose()
        };
        Ok(Me {
            settings_document: document(me.settings_document)?,
            org_config_document: document(me.org_config_document)?,
        })
    }

    /// A GET of the API with the session's access token.
    /// The replica this account signs in for.
    pub(crate) fn core(&self) -> &crate::ClientCore {
        &self.inner.core
    }

    async fn get(&self, path: &str) -> Result<Value, AccountError> {
        self.request(reqwest::Method::GET, path, None).await
    }

    /// A request of the API with the session's access token; a JSON answer.
    pub(crate) async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, AccountError> {
        answer(self.authorized(method, path, body).await?).await
    }

    /// Like [`Account::request`], for answers that are text (JSON lines).
    pub(crate) async fn request_text(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> Result<String, AccountError> {
        let (status, text) = send(self.authorized(method, path, None).await?).await?;
        if status.is_success() {
            Ok(text)
        } else {
            Err(refusal(
                status,
                serde_json::from_str(&text).unwrap_or(Value::Null),
            ))
        }
    }

    async fn authorized(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<reqwest::RequestBuilder, AccountError> {
        let token = self.access_token().await?;
        let mut request = self
            .inner
            .http
            .request(method, format!("{}{path}", self.inner.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        Ok(request)
    }

    /// The server's backups of a settings document, newest first:
    /// `(backup id, taken at unix ms, the settings)`.
    pub async fn settings_backups(
        &self,
        settings: sync_protocol::DocumentId,
    ) -> Result<Vec<(String, i64, Value)>, AccountError> {
        let backups: Vec<api_types::SettingsBackup> = parse(
            self.get(&format!("/api/settings/{settings}/backups"))
                .await?,
        )?;
        Ok(backups
            .into_iter()
            .map(|backup| (backup.id, backup.taken_ms, backup.settings))
            .collect())
    }

    /// Restores a backup: the server writes it as a new change, which then
    /// reaches every device of the member (this one included).
    pub async fn restore_settings_backup(
        &self,
        settings: sync_protocol::DocumentId,
        backup_id: &str,
    ) -> Result<(), AccountError> {
        let token = self.access_token().await?;
        self.post(
            &format!("/api/settings/{settings}/backups/{backup_id}/restore"),
            Some(&token),
            &json!({}),
        )
        .await?;
        Ok(())
    }

    /// Ends the session here and on the server (when reachable). Tokens are
    /// wiped; local data and pending changes stay.
    pub async fn sign_out(&self) -> Result<(), AccountError> {
        let mut session = self.inner.session.lock().await;
        if let Some(current) = session.take()
            && let Err(error) = self
                .post("/api/auth/logout", Some(&current.access_token), &json!({}))
                .await
        {
            tracing::info!(%error, "server logout failed; forgetting the session locally");
        }
        self.forget()?;
        self.inner.state.send_replace(SessionState::SignedOut);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_reads_the_error_body_and_anything_else_is_unknown() {
        let body = json!({
            "error": "throttled",
            "message": "too many failed attempts; try again in 30 s",
            "retry_after_secs": 30,
        });
        match refusal(reqwest::StatusCode::TOO_MANY_REQUESTS, body) {
            AccountError::Refused {
                code,
                message,
                retry_after_secs,
            } => {
                assert_eq!(code, "throttled");
                assert_eq!(message, "too many failed attempts; try again in 30 s");
                assert_eq!(retry_after_secs, Some(30));
            }
            other => panic!("{other:?}"),
        }
        // A proxy's page is no error body: the status says what happened.
        let error = refusal(reqwest::StatusCode::BAD_GATEWAY, Value::Null);
        assert_eq!(error.code(), Some("unknown"));
        assert_eq!(error.to_string(), "502 Bad Gateway");
    }

    #[test]
    fn a_session_kept_before_the_shared_types_still_opens() {
        // What the keychain held when client-core had a session type of
        // its own (the role as a string).
        let kept = r#"{"access_token":"a","refresh_token":"r","access_expires_ms":1,
            "refresh_expires_ms":2,"session_id":"s","device_id":"d",
            "user":{"id":"u","email":"e@example.org","role":"staff","totp_enrolled":true}}"#;
        let session: StoredSession = serde_json::from_str(kept).unwrap();
        let info = session_info(&session);
        assert_eq!(info.user.role, api_types::Role::Staff);
        assert_eq!(
            (info.device_id.as_str(), info.session_id.as_str()),
            ("d", "s")
        );
        // And what is kept now reads back the same.
        let again: StoredSession =
            serde_json::from_str(&serde_json::to_string(&session).unwrap()).unwrap();
        assert_eq!(again, session);
    }

    #[test]
    fn the_api_base_comes_from_either_url() {
        assert_eq!(
            api_base("ws://127.0.0.1:8080/sync"),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            api_base("wss://sync.example.org/sync/"),
            "https://sync.example.org"
        );
        assert_eq!(api_base("http://h:1/"), "http://h:1");
    }
}
