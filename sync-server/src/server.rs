//! The HTTP side: routes, authentication at the websocket upgrade, health and
//! metrics, and a graceful shutdown that closes connections, lets documents
//! finish and closes the store.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::api::{self, ApiError, ApiState};
use crate::audit::NewAuditEntry;
use crate::auth::{self, AuthFailure};
use crate::client_ip::{self, ClientIp, ClientIpKey};
use crate::config::Config;
use crate::connection::{self, ConnectionContext};
use crate::live::LiveConnections;
use crate::metrics as m;
use crate::registry::{DocumentSettings, Registry};
use crate::security::SecuritySignals;
use crate::store::{SqliteStore, Store, StoreError};
use crate::tls::ServerTls;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsSetupError),
    #[error("secrets key: {0}")]
    Secrets(#[from] crate::secrets::SecretsError),
    #[error("server failed: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Clone)]
struct AppState {
    store: Store,
    ctx: ConnectionContext,
    metrics: PrometheusHandle,
    max_message_bytes: usize,
    /// Held by every live connection; shutdown waits until all are dropped.
    connection_guard: mpsc::Sender<()>,
    connections_per_principal: Arc<std::sync::Mutex<HashMap<String, usize>>>,
    max_connections_per_principal: usize,
}

/// One open connection counted against its principal's cap; uncounted on drop.
struct PrincipalSlot {
    counts: Arc<std::sync::Mutex<HashMap<String, usize>>>,
    principal: String,
}

impl PrincipalSlot {
    fn take(state: &AppState, principal: &str) -> Option<Self> {
        let mut counts = state
            .connections_per_principal
            .lock()
            .expect("connection counts poisoned");
        let count = counts.entry(principal.to_owned()).or_default();
        if *count >= state.max_connections_per_principal {
            return None;
        }
        *count += 1;
        Some(Self {
            counts: state.connections_per_principal.clone(),
            principal: principal.to_owned(),
        })
    }
}

impl Drop for PrincipalSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().expect("connection counts poisoned");
        if let Some(count) = counts.get_mut(&self.principal) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.principal);
            }
        }
    }
}

/// A server that is accepting connections.
pub struct RunningServer {
    addr: SocketAddr,
    tls: Option<ServerTls>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), ServeError>>,
}

impl RunningServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://ADDR/sync`, or `wss://` with TLS.
    pub fn sync_url(&self) -> String {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        format!("{scheme}://{}/sync", self.addr)
    }

    /// The TLS listener's configuration (to reload it), if it has one.
    pub fn tls(&self) -> Option<&ServerTls> {
        self.tls.as_ref()
    }

    /// Stops accepting, closes connections, persists everything, closes the store.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        let _ = self.shutdown.send(true);
        self.wait().await
    }

    /// Runs until shut down (by [`RunningServer::shutdown`] or a signal handler
    /// holding [`RunningServer::shutdown_handle`]).
    pub async fn wait(self) -> Result<(), ServeError> {
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(ServeError::Io(std::io::Error::other(e))),
        }
    }

    pub fn shutdown_handle(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Opens the store `config` names (PostgreSQL when `database_url` is set,
/// else the embedded SQLite store in `data_dir`), migrates it, and serves.
pub async fn start(config: &Config) -> Result<RunningServer, ServeError> {
    let store = open_store(config).await?;
    std::fs::create_dir_all(&config.data_dir)?;
    let storage_id = storage_id(&config.data_dir)?;
    start_with_store(config, store, storage_id).await
}

/// The store `config` names, migrated.
pub async fn open_store(config: &Config) -> Result<Store, StoreError> {
    match &config.database_url {
        #[cfg(feature = "postgres")]
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(Store::new(crate::store::PostgresStore::connect(url).await?))
        }
        #[cfg(not(feature = "postgres"))]
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Err(StoreError::Database(
                "this build of the server has no PostgreSQL support (built without the `postgres` feature); use the embedded store or a build with it".into(),
            ))
        }
        Some(other) => Err(StoreError::Database(format!(
            "unsupported database URL `{}`: expected postgres://",
            other.split('@').next_back().unwrap_or_default()
        ))),
        None => Ok(Store::new(SqliteStore::open(
            &config.data_dir,
            config.synchronous_full,
        )?)),
    }
}

/// A stable id for this data directory, which automerge-repo peers use to tell stores apart.
fn storage_id(data_dir: &std::path::Path) -> Result<String, std::io::Error> {
    let path = data_dir.join("storage-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
        _ => {
            let id = uuid::Uuid::new_v4().to_string();
            std::fs::write(&path, &id)?;
            Ok(id)
        }
    }
}

/// Starts serving over an already opened store.
pub async fn start_with_store(
    config: &Config,
    store: Store,
    storage_id: String,
) -> Result<RunningServer, ServeError> {
    let tls = ServerTls::from_paths(config.tls_cert.as_deref(), config.tls_key.as_deref())?;
    let secrets = Arc::new(config.secret_keys()?);
    m::install();
    m::set_build_info(if config.database_url.is_some() {
        "postgres"
    } else {
        "sqlite"
    });
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr()?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let server_peer_id = format!("sync-server-{}", uuid::Uuid::new_v4());
    let live = LiveConnections::default();
    let security = SecuritySignals::default();
    // Nodes sharing a store (PostgreSQL) share what they hear of presence.
    let presence = match store.node.change_feed() {
        Some(feed) => crate::cluster::share_presence(feed, store.clone(), shutdown_rx.clone()),
        None => crate::presence::PresenceBoard::default(),
    };
    let registry = Registry::new(
        store.clone(),
        DocumentSettings {
            evict_after: Duration::from_secs(config.evict_after_secs),
            memory_budget_bytes: config.document_memory_budget_mib.saturating_mul(1 << 20),
            compact_after_chunks: config.compact_after_chunks.max(1),
            pace_unanswered: Duration::from_millis(config.pace_unanswered_ms),
            server_peer_id: server_peer_id.clone(),
            security: security.clone(),
            presence: presence.clone(),
            settings_backup_debounce: Duration::from_secs(config.settings_backup_debounce_secs),
            settings_retention: crate::settings_backup::Retention {
                keep_all_minutes: config.settings_backup_keep_all_minutes,
                hourly_hours: config.settings_backup_hourly_hours,
                daily_days: config.settings_backup_daily_days,
            },
        },
    );
    let api_state = ApiState::new(
        store.clone(),
        live.clone(),
        security,
        presence,
        registry.clone(),
        config,
        secrets,
    )
    .await?;
    if let Some(feed) = store.node.change_feed() {
        registry.follow(feed);
    }
    if let Some(feed) = store.node.change_feed() {
        crate::cluster::follow_revocations(feed, store.clone(), live.clone());
    }
    let (guard_tx, mut guard_rx) = mpsc::channel::<()>(1);
    let state = AppState {
        store: store.clone(),
        ctx: ConnectionContext {
            registry: registry.clone(),
            server_peer_id,
            storage_id,
            max_message_bytes: config.max_message_bytes,
            shutdown: shutdown_rx.clone(),
            message_rate: (
                config.messages_per_second_per_connection,
                config.message_burst_per_connection,
            ),
            live,
        },
        metrics: m::install(),
        max_message_bytes: config.max_message_bytes,
        connection_guard: guard_tx,
        connections_per_principal: Arc::default(),
        max_connections_per_principal: config.max_connections_per_principal,
    };
    let per_user = api_state.per_user.clone();
    let app = router(state, api_state, store.clone(), config, shutdown_rx.clone());
    tracing::info!(%addr, tls = tls.is_some(), "sync server listening");

    if config.database_url.is_none() && config.backup_every_secs > 0 {
        tokio::spawn(crate::scheduled_backup::run(
            config.data_dir.clone(),
            Duration::from_secs(config.backup_every_secs),
            config.backup_min_free_mib,
            shutdown_rx.clone(),
        ));
    }
    if let Some(limiter) = per_user {
        let mut stop = shutdown_rx.clone();
        // Forget users who have been quiet, so the table stays small.
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = tick.tick() => limiter.retain_recent(),
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        });
    }
    {
        // Expired tokens and challenges go, so the session tables stay small.
        let (store, mut stop) = (store.clone(), shutdown_rx.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(600));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                match store.accounts.prune_expired(auth::unix_ms()).await {
                    Ok(0) => {}
                    Ok(deleted) => tracing::info!(deleted, "expired session rows pruned"),
                    Err(error) => tracing::warn!(%error, "pruning expired session rows failed"),
                }
                if let Some(ledger) = store.node.throttle_ledger() {
                    let policy = crate::identity::throttle::ThrottlePolicy::default();
                    if let Err(error) = ledger.throttle_prune(&policy, auth::unix_ms()).await {
                        tracing::warn!(%error, "pruning sign-in throttle rows failed");
                    }
                }
            }
        });
    }
    let mut stop = shutdown_rx.clone();
    let serve_tls = tls.clone();
    if let Some(tls) = &tls
        && config.tls_reload_check_secs > 0
    {
        let every = Duration::from_secs(config.tls_reload_check_secs);
        tls.clone().watch_files(every, shutdown_rx.clone());
    }
    let task = tokio::spawn(async move {
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        match serve_tls {
            None => {
                axum::serve(listener, service)
                    .with_graceful_shutdown(async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await?
            }
            Some(tls) => {
                let handle = axum_server::Handle::new();
                let draining = handle.clone();
                tokio::spawn(async move {
                    let _ = stop.wait_for(|s| *s).await;
                    // Like `axum::serve`: stop accepting, let open
                    // connections finish (sockets close on the same signal).
                    draining.graceful_shutdown(None);
                });
                axum_server::from_tcp_rustls(listener.into_std()?, tls.rustls_config())?
                    .handle(handle)
                    .serve(service)
                    .await?
            }
        }
        tracing::info!("no longer accepting; waiting for connections to close");
        // Every connection holds a guard clone; recv() returns None once all
        // are gone (the router's own copy went with `app`).
        let _ = tokio::time::timeout(Duration::from_secs(10), guard_rx.recv()).await;
        registry.shutdown().await;
        store.node.close().await?;
        tracing::info!("shutdown complete");
        Ok(())
    });
    Ok(RunningServer {
        addr,
        tls,
        shutdown: shutdown_tx,
        task,
    })
}

fn router(
    state: AppState,
    api_state: ApiState,
    store: Store,
    config: &Config,
    shutdown: watch::Receiver<bool>,
) -> Router {
    let router = Router::new()
        .route("/sync", get(sync_upgrade))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(state)
        .merge(api::router(api_state))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
            let request_id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id)
        }))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid));
    let router = match per_ip_limit(config, shutdown) {
        Some(limit) => router.layer(limit),
        None => router,
    };
    // Outside the limiter: its plain-text refusals under /api get the JSON
    // error body too, as do axum's extractor rejections.
    let router = router.layer(axum::middleware::from_fn(api::json_errors));
    // Outside the address limiter, so its refusals of sign-in requests are seen.
    let router = router.layer(axum::middleware::from_fn_with_state(
        store,
        audit_refused_sign_in,
    ));
    // Outermost: every layer and handler inside sees the same client address.
    let trusted: Arc<[std::net::IpAddr]> = config.trusted_proxies.clone().into();
    router.layer(axum::middleware::from_fn_with_state(
        trusted,
        client_ip::resolve_layer,
    ))
}

/// Audits sign-in requests refused by the per-address limiter (the API's
/// own refusals are audited where they happen).
async fn audit_refused_sign_in(
    State(store): State<Store>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path().to_owned();
    let address = request
        .extensions()
        .get::<ClientIp>()
        .map(|c| c.0.to_string());
    let response = next.run(request).await;
    if response.status() == StatusCode::TOO_MANY_REQUESTS
        && path.starts_with("/api/auth/")
        && response.extensions().get::<api::Answered>().is_none()
    {
        let mut entry = NewAuditEntry::new("anonymous", "auth.rate_limited", "denied")
            .details(serde_json::json!({ "path": path, "limit": "per_address" }));
        entry.address = address;
        if let Err(error) = store.audit.append_audit(entry).await {
            tracing::error!(%error, "audit log write failed");
        }
    }
    response
}

/// Requests per address (the peer's IP; a forwarded header only from a
/// trusted proxy, see `client_ip`). `None` when disabled (rate 0).
fn per_ip_limit(
    config: &Config,
    mut shutdown: watch::Receiver<bool>,
) -> Option<
    tower_governor::GovernorLayer<
        ClientIpKey,
        governor::middleware::StateInformationMiddleware,
        axum::body::Body,
    >,
> {
    if config.http_requests_per_second_per_ip == 0 {
        return None;
    }
    let period = Duration::from_secs(1) / config.http_requests_per_second_per_ip;
    let governor = tower_governor::governor::GovernorConfigBuilder::default()
        .key_extractor(ClientIpKey)
        .period(period)
        .burst_size(config.http_burst_per_ip.max(1))
        .use_headers()
        .finish()?;
    let limiter = governor.limiter().clone();
    // Forget addresses that have been quiet, so the table cannot grow without bound.
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = tick.tick() => limiter.retain_recent(),
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    });
    Some(
        tower_governor::GovernorLayer::new(governor).error_handler(|error| {
            metrics::counter!(m::HTTP_RATE_LIMITED, "per" => "address").increment(1);
            axum::response::Response::from(error)
        }),
    )
}

async fn sync_upgrade(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    client: Option<axum::Extension<ClientIp>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    // The client's address (behind a trusted proxy, the one it names).
    let address = SocketAddr::new(client.map_or(peer.ip(), |c| c.0.0), peer.port());
    // Authenticate before anything websocket-related: no token, no upgrade.
    let principal = match auth::token_from_request(&headers, query.as_deref()) {
        None => Err(AuthFailure::Missing),
        Some(token) => auth::authenticate(&state.store, &token, auth::unix_ms()).await,
    };
    let principal = match principal {
        Ok(principal) => principal,
        Err(failure) => {
            if let AuthFailure::Store(error) = &failure {
                tracing::error!(%error, "token check failed");
            } else {
                metrics::counter!(m::AUTH_FAILURES, "reason" => failure.code()).increment(1);
                audit_rejection(&state, address, failure.code()).await;
            }
            // The same JSON error body as the REST API (`wipe` for a revoked device).
            return ApiError::Unauthenticated(failure).into_response();
        }
    };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let Some(slot) = PrincipalSlot::take(&state, &principal.audit_name()) else {
        metrics::counter!(m::CONNECTIONS_REFUSED, "reason" => "per_principal_cap").increment(1);
        return (
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "this token already holds {} sync connections",
                state.max_connections_per_principal
            ),
        )
            .into_response();
    };
    let guard = state.connection_guard.clone();
    let ctx = state.ctx.clone();
    upgrade
        // tungstenite reserves a 128 KiB read buffer per socket by default;
        // most connections sit idle, so start small (it grows for big messages).
        .read_buffer_size(8 * 1024)
        .write_buffer_size(8 * 1024)
        .max_message_size(state.max_message_bytes)
        .max_frame_size(state.max_message_bytes)
        .on_upgrade(move |socket| async move {
            connection::serve(socket, ctx, principal, address).await;
            drop(slot);
            drop(guard);
        })
}

/// A refused sign-in at the upgrade is audited (with the address, never the token).
async fn audit_rejection(state: &AppState, address: SocketAddr, reason: &str) {
    let entry = NewAuditEntry::new("anonymous", "auth.token_rejected", "denied")
        .address(address.ip().to_string())
        .details(serde_json::json!({ "reason": reason }));
    if let Err(error) = state.store.audit.append_audit(entry).await {
        tracing::error!(%error, "audit log write failed");
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.node.readiness().await {
        Ok(ready) if ready.schema_version == ready.expected_version => Json(serde_json::json!({
            "status": "ready",
            "schema_version": ready.schema_version,
        }))
        .into_response(),
        Ok(ready) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({
                "status": "migrations pending",
                "schema_version": ready.schema_version,
                "expected_version": ready.expected_version,
            })),
        )
            .into_response(),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "store unavailable", "error": error.to_string() })),
        )
            .into_response(),
    }
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    m::render(&state.metrics).into_response()
}
