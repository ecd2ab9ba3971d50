//! The REST API under `/api`: sign-in (password, second factor, enrollment),
//! sessions (refresh, logout, step-up), devices, and administration (users,
//! assignments, API keys, audit log, document registration), and signed
//! ticket codes (an event's key, codes issued). Every route is
//! described in the OpenAPI document served at `/api/openapi.json`, which is
//! generated from the same router, so the two cannot drift apart.

mod accounts;
mod audit;
mod contract;
mod documents;
mod error;
mod sessions;
mod settings;
mod sign_in;
mod status;
mod tickets;

pub use status::ServerFacts;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, FromRequestParts};

use crate::client_ip::ClientIp;
use axum::http::request::Parts;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use contract::json_errors;
pub use error::{Answered, ApiError, ErrorBody};

use crate::audit::NewAuditEntry;
use crate::auth::{self, Principal, Role};
use crate::identity::session::SessionPolicy;
use crate::identity::throttle::{Throttle, ThrottlePolicy};
use crate::live::{Cut, LiveConnections};
use crate::security::SecuritySignals;
use crate::store::Store;

/// Everything the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    pub live: LiveConnections,
    pub security: SecuritySignals,
    pub policy: SessionPolicy,
    pub require_2fa: Vec<Role>,
    pub totp_issuer: String,
    /// Failed sign-in steps, keyed `account:<email or id>` and `address:<ip>`
    /// (in memory; nodes on a shared store use its `ThrottleLedger` instead).
    pub throttle: Arc<Mutex<Throttle>>,
    pub throttle_policy: ThrottlePolicy,
    /// Derives the pair a refresh returns (shared by all nodes through the store).
    pub token_secret: Arc<Vec<u8>>,
    /// Seal TOTP secrets (and the token secret) at rest.
    pub secrets: Arc<crate::secrets::SecretKeys>,
    /// Requests per signed-in user or API key (`None`: unlimited).
    pub per_user: Option<Arc<governor::DefaultKeyedRateLimiter<String>>>,
    /// Devices online per document (from presence beacons).
    pub presence: crate::presence::PresenceBoard,
    /// The live documents (for writes made by the server, e.g. restores).
    pub registry: crate::registry::Registry,
    /// This process's start, store kind and backup schedule (`/api/status`).
    pub facts: ServerFacts,
    /// Each event's ticket signing key, derived from a sealed shared secret.
    pub ticket_keys: crate::ticket_keys::TicketKeys,
}

impl ApiState {
    pub async fn new(
        store: Store,
        live: LiveConnections,
        security: SecuritySignals,
        presence: crate::presence::PresenceBoard,
        registry: crate::registry::Registry,
        config: &crate::config::Config,
        secrets: Arc<crate::secrets::SecretKeys>,
    ) -> Result<Self, crate::store::StoreError> {
        let token_secret =
            crate::secrets::shared_secret(&store, &secrets, "refresh_token_key").await?;
        let ticket_secret =
            crate::secrets::shared_secret(&store, &secrets, crate::ticket_keys::SECRET_NAME)
                .await?;
        // A store from before sealing (or sealed by a previous key) is
        // sealed under the current key now.
        let resealed = crate::secrets::reseal_all(&store, &secrets).await?;
        if resealed.resealed > 0 || resealed.unknown > 0 {
            tracing::info!(
                ?resealed,
                key = secrets.current_id(),
                "TOTP secrets sealed at rest"
            );
        }
        let throttle_policy = ThrottlePolicy {
            free_attempts: config.sign_in_free_attempts,
            ..ThrottlePolicy::default()
        };
        let require_2fa = [Role::Admin, Role::Staff, Role::Member]
            .into_iter()
            .filter(|role| config.requires_2fa(*role))
            .collect();
        Ok(Self {
            store,
            live,
            security,
            policy: config.session_policy(),
            require_2fa,
            totp_issuer: config.totp_issuer.clone(),
            throttle: Arc::new(Mutex::new(Throttle::new(throttle_policy))),
            throttle_policy,
            token_secret: Arc::new(token_secret),
            secrets,
            presence,
            registry,
            facts: ServerFacts::of(config),
            ticket_keys: crate::ticket_keys::TicketKeys::new(ticket_secret),
            per_user: std::num::NonZeroU32::new(config.http_requests_per_second_per_user).map(
                |rate| {
                    let burst = std::num::NonZeroU32::new(config.http_burst_per_user.max(1))
                        .unwrap_or(rate);
                    Arc::new(governor::RateLimiter::keyed(
                        governor::Quota::per_second(rate).allow_burst(burst),
                    ))
                },
            ),
        })
    }

    /// A user's TOTP secret (base32), opened from its sealed form.
    pub fn totp_secret(&self, user: &crate::store::User) -> Result<Option<String>, ApiError> {
        let Some(stored) = &user.totp_secret else {
            return Ok(None);
        };
        let plain = self
            .secrets
            .open(&crate::secrets::totp_purpose(&user.id), stored)
            .map_err(ApiError::SecretUnavailable)?;
        String::from_utf8(plain)
            .map(Some)
            .map_err(|_| ApiError::SecretUnavailable(crate::secrets::SecretsError::Tampered))
    }

    /// Appends to the audit log; a failure is logged, never shown to the caller.
    pub async fn audit(&self, entry: NewAuditEntry) {
        if let Err(error) = self.store.audit.append_audit(entry).await {
            tracing::error!(%error, "audit log write failed");
        }
    }

    /// Closes the connections `cut` covers, here and on every other node.
    pub async fn cut(&self, cut: Cut, reason: &str) {
        let closed = self.live.cut(&cut, reason);
        tracing::info!(?cut, closed, reason, "access revoked");
        let (kind, id) = cut.parts();
        if let Err(error) = self.store.node.announce_revocation(kind, id).await {
            tracing::error!(%error, "could not announce a revocation to other nodes");
        }
    }
}

/// The document a request names (in its path or query, as `field`) with
/// its registration (`None`: a generic document nobody registered).
async fn named_document(
    state: &ApiState,
    field: &str,
    text: &str,
) -> Result<
    (
        sync_protocol::DocumentId,
        Option<crate::store::records::DocumentScope>,
    ),
    ApiError,
> {
    let id = sync_protocol::DocumentId::parse(text.trim())
        .map_err(|e| ApiError::BadRequest(format!("{field}: {e}")))?;
    let scope = state.store.documents.document_scope(id).await?;
    Ok((id, scope))
}

/// The caller's address: the TCP peer, or the client a trusted proxy names
/// (see `client_ip`).
#[derive(Debug, Clone)]
pub struct ClientAddress(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let resolved = parts.extensions.get::<ClientIp>().map(|c| c.0);
        let peer = || {
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip())
        };
        Ok(ClientAddress(
            resolved
                .or_else(peer)
                .map_or_else(|| "unknown".into(), |ip| ip.to_string()),
        ))
    }
}

/// An authenticated caller (`Authorization: Bearer <access token or API key>`).
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub address: String,
}

impl Caller {
    pub fn audit(&self, action: &str, result: &str) -> NewAuditEntry {
        let mut entry = NewAuditEntry::new(self.principal.audit_name(), action, result)
            .address(self.address.clone());
        entry.device = self.principal.device_id().map(str::to_owned);
        entry
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.principal.role == Role::Admin {
            Ok(())
        } else {
            Err(ApiError::Forbidden("administrators only".into()))
        }
    }

    /// Privileged actions need a TOTP code entered within the step-up window.
    pub fn require_step_up(&self, state: &ApiState) -> Result<(), ApiError> {
        let fresh = match &self.principal.credential {
            auth::Credential::Session {
                second_factor_ms, ..
            } => crate::identity::session::step_up_fresh(
                *second_factor_ms,
                auth::unix_ms(),
                &state.policy,
            ),
            auth::Credential::ApiKey => false,
        };
        if fresh {
            Ok(())
        } else {
            Err(ApiError::StepUpRequired)
        }
    }
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let ClientAddress(address) = ClientAddress::from_request_parts(parts, state)
            .await
            .unwrap_or_else(|never| match never {});
        let Some(token) = auth::token_from_request(&parts.headers, None) else {
            return Err(ApiError::Unauthenticated(auth::AuthFailure::Missing));
        };
        match auth::authenticate(&state.store, &token, auth::unix_ms()).await {
            Ok(principal) => {
                if let Some(limiter) = &state.per_user
                    && let Err(not_until) = limiter.check_key(&principal.audit_name())
                {
                    metrics::counter!(crate::metrics::HTTP_RATE_LIMITED, "per" => "user")
                        .increment(1);
                    let wait = not_until.wait_time_from(governor::clock::Clock::now(
                        &governor::clock::DefaultClock::default(),
                    ));
                    return Err(ApiError::RateLimited(wait));
                }
                Ok(Caller { principal, address })
            }
            Err(auth::AuthFailure::Store(error)) => Err(ApiError::Store(error)),
            Err(failure) => {
                metrics::counter!(crate::metrics::AUTH_FAILURES, "reason" => failure.code())
                    .increment(1);
                state
                    .audit(
                        NewAuditEntry::new("anonymous", "auth.token_rejected", "denied")
                            .address(address)
                            .details(serde_json::json!({ "reason": failure.code(), "path": parts.uri.path() })),
                    )
                    .await;
                Err(ApiError::Unauthenticated(failure))
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sync-server API",
        description = "Sign-in, sessions, devices and administration. Sync itself is the automerge-repo websocket protocol at /sync."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "sign-in", description = "Password, second factor, enrollment, sessions"),
        (name = "devices"),
        (name = "admin", description = "Users, assignments, API keys, audit log, documents"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The `/api` routes, and the OpenAPI document that describes them.
pub fn router(state: ApiState) -> axum::Router {
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(sign_in::login))
        .routes(routes!(sign_in::second_factor))
        .routes(routes!(sign_in::enroll_start))
        .routes(routes!(sign_in::enroll_confirm))
        .routes(routes!(sessions::refresh))
        .routes(routes!(sessions::logout))
        .routes(routes!(sessions::logout_everywhere))
        .routes(routes!(sessions::step_up))
        .routes(routes!(sessions::change_password))
        .routes(routes!(sessions::me))
        .routes(routes!(accounts::list_devices))
        .routes(routes!(accounts::revoke_device))
        .routes(routes!(accounts::list_users, accounts::create_user))
        .routes(routes!(accounts::update_user))
        .routes(routes!(accounts::reset_user_2fa))
        .routes(routes!(accounts::end_user_sessions))
        .routes(routes!(accounts::set_user_events))
        .routes(routes!(accounts::list_api_keys, accounts::create_api_key))
        .routes(routes!(accounts::revoke_api_key))
        .routes(routes!(audit::query_audit))
        .routes(routes!(audit::export_audit))
        .routes(routes!(audit::verify_audit))
        .routes(routes!(
            documents::list_documents,
            documents::register_document
        ))
        .routes(routes!(documents::document_presence))
        .routes(routes!(status::status))
        .routes(routes!(settings::list_backups))
        .routes(routes!(settings::restore_backup))
        .routes(routes!(tickets::ticket_key))
        .routes(routes!(tickets::issue_ticket))
        .with_state(state)
        .split_for_parts();
    let mut openapi = openapi;
    contract::document_common_failures(&mut openapi);
    let openapi = Arc::new(openapi);
    router.route(
        "/api/openapi.json",
        axum::routing::get(move || {
            let openapi = openapi.clone();
            async move { axum::Json(openapi.as_ref().clone()) }
        }),
    )
}
