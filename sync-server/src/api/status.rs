//! `GET /api/status`: the server's health at a glance, for administrators and
//! the desktop app's "Server health" screen. Polled every few seconds, so it
//! is not written to the audit log (every other administrator read is): an
//! open dashboard would otherwise add an entry every few seconds.

use std::time::Instant;

use api_types::{BackupStatus, BackupTaken, SecurityAlert, ServerStatus, StoreStatus};
use axum::Json;
use axum::extract::State;

use super::{ApiError, ApiState, Caller, ErrorBody};
use crate::audit;
use crate::store::records::AuditQuery;

/// Audit entries read per page while counting the day's alerts; at most
/// `ALERT_PAGES` pages (a day with more alerts says "at least" that many).
const ALERT_PAGE: u32 = 1000;
const ALERT_PAGES: usize = 10;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// What the status reports about this process, fixed when it starts.
#[derive(Debug, Clone)]
pub struct ServerFacts {
    pub started: Instant,
    pub started_ms: i64,
    /// `sqlite` or `postgres`.
    pub store_kind: &'static str,
    /// Where scheduled backups of the embedded store go, and how often
    /// (`None` when none are taken).
    pub scheduled_backups: Option<(std::path::PathBuf, u64)>,
}

impl ServerFacts {
    pub fn of(config: &crate::config::Config) -> Self {
        let embedded = config.database_url.is_none();
        Self {
            started: Instant::now(),
            started_ms: crate::auth::unix_ms(),
            store_kind: if embedded { "sqlite" } else { "postgres" },
            scheduled_backups: (embedded && config.backup_every_secs > 0).then(|| {
                (
                    crate::scheduled_backup::directory(&config.data_dir),
                    config.backup_every_secs,
                )
            }),
        }
    }
}

/// The server's health: version, uptime, the store's kind, latency and
/// migrations, documents loaded, connections, devices online, the last
/// scheduled backup, security alerts of the last 24 hours (administrators).
#[utoipa::path(get, path = "/api/status", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = ServerStatus), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn status(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<ServerStatus>, ApiError> {
    caller.require_admin()?;
    let facts = &state.facts;
    let asked = Instant::now();
    let readiness = state.store.node.readiness().await?;
    let latency_ms = asked.elapsed().as_secs_f64() * 1000.0;
    let now_ms = crate::auth::unix_ms();
    let (security_alerts_24h, last_security_alert) = alerts_since(&state, now_ms - DAY_MS).await?;
    Ok(Json(ServerStatus {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        git: env!("SYNC_GIT_REVISION").to_owned(),
        started_at: audit::time_at_ms(facts.started_ms),
        uptime_s: facts.started.elapsed().as_secs(),
        store: StoreStatus {
            kind: facts.store_kind.to_owned(),
            latency_ms,
            schema_version: readiness.schema_version,
            expected_version: readiness.expected_version,
            migrations_pending: readiness.schema_version != readiness.expected_version,
        },
        documents_loaded: state.registry.documents_loaded() as u64,
        connections: state.live.len() as u64,
        devices_online: state.presence.devices_online() as u64,
        backups: backups(facts, now_ms),
        security_alerts_24h,
        last_security_alert,
    }))
}

/// The day's `security.alert` entries: how many, and the newest.
async fn alerts_since(
    state: &ApiState,
    since_ms: i64,
) -> Result<(u64, Option<SecurityAlert>), ApiError> {
    let mut query = AuditQuery {
        after_seq: 0,
        limit: ALERT_PAGE,
        action: Some("security.alert".to_owned()),
        actor: None,
        result: None,
        since: Some(audit::time_at_ms(since_ms)),
    };
    let (mut count, mut newest) = (0, None);
    for _ in 0..ALERT_PAGES {
        let page = state.store.audit.query_audit(&query).await?;
        count += page.len() as u64;
        let full = page.len() == ALERT_PAGE as usize;
        if let Some(last) = page.into_iter().last() {
            query.after_seq = last.seq;
            newest = Some(last);
        }
        if !full {
            break;
        }
    }
    let newest = newest.map(|entry| SecurityAlert {
        kind: entry.entry.details["kind"]
            .as_str()
            .unwrap_or("unknown")
            .to_owned(),
        at: entry.at,
        actor: entry.entry.actor,
    });
    Ok((count, newest))
}

fn backups(facts: &ServerFacts, now_ms: i64) -> BackupStatus {
    let Some((dir, every_s)) = &facts.scheduled_backups else {
        return BackupStatus {
            scheduled: false,
            every_s: None,
            count: 0,
            last: None,
            problem: None,
        };
    };
    // A backup folder that cannot be read is part of the report, not a
    // failure of it.
    let (listed, problem) = match crate::scheduled_backup::list(dir) {
        Ok(listed) => (listed, None),
        Err(e) => (
            Vec::new(),
            Some(format!("cannot list {}: {e}", dir.display())),
        ),
    };
    BackupStatus {
        scheduled: true,
        every_s: Some(*every_s),
        count: listed.len() as u64,
        last: listed.first().map(|newest| BackupTaken {
            taken_at: audit::time_at_ms(newest.taken_ms),
            age_s: u64::try_from((now_ms - newest.taken_ms) / 1000).unwrap_or(0),
            bytes: newest.bytes,
        }),
        problem,
    }
}
