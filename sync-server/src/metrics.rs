//! Metric names and the Prometheus recorder.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const CONNECTIONS: &str = "sync_connections";
pub const CONNECTIONS_TOTAL: &str = "sync_connections_total";
pub const MESSAGES_IN: &str = "sync_messages_in_total";
pub const MESSAGES_OUT: &str = "sync_messages_out_total";
pub const BYTES_IN: &str = "sync_bytes_in_total";
pub const BYTES_OUT: &str = "sync_bytes_out_total";
pub const PROTOCOL_ERRORS: &str = "sync_protocol_errors_total";
pub const AUTH_FAILURES: &str = "sync_auth_failures_total";
/// Time from a sync message's arrival to the replies and pushes it caused being queued.
pub const SYNC_SECONDS: &str = "sync_message_handling_seconds";
/// Sync messages to peers, by how they were made: `generated` by automerge
/// for one peer, or `shared`, a copy of the one generated for a peer in the
/// same sync state (`doc_core::DocumentCore::outgoing`).
pub const SYNC_MESSAGES_MADE: &str = "sync_messages_made_total";
/// Peers' messages without changes, by how they were taken: `shortcut`
/// (`doc_core::receive_answer`, no walk of the whole history) or
/// `automerge`.
pub const SYNC_ANSWERS: &str = "sync_answers_total";
/// Peers that spoke and were found to be owed nothing without asking
/// automerge (`doc_core::in_sync`; mostly listeners answering a fan-out).
pub const SYNC_PEERS_IN_SYNC: &str = "sync_peers_in_sync_total";
/// Store writes of accepted changes (one per document batch).
pub const CHUNKS_WRITTEN: &str = "sync_change_batches_written_total";
pub const DOCUMENTS_LOADED: &str = "sync_documents_loaded";
pub const DOCUMENT_LOADS: &str = "sync_document_loads_total";
/// Documents leaving memory, by `reason`: `idle` (no peer for
/// `evict_after_secs`), `budget` (idle while the loaded documents were over
/// `document_memory_budget_mib`) or `failure` (a store error).
pub const DOCUMENT_EVICTIONS: &str = "sync_document_evictions_total";
/// Estimated heap bytes of all loaded documents (`memory_budget`).
pub const DOCUMENT_MEMORY_ESTIMATE: &str = "sync_documents_estimated_bytes";
pub const COMPACTIONS: &str = "sync_compactions_total";
pub const STORE_SECONDS: &str = "store_operation_seconds";
/// Document writes committed together by the embedded store's writer.
pub const STORE_GROUP_SIZE: &str = "store_group_commit_writes";
/// Requests refused by the per-address rate limit.
pub const HTTP_RATE_LIMITED: &str = "http_rate_limited_total";
/// Upgrades refused because the principal holds too many connections.
pub const CONNECTIONS_REFUSED: &str = "sync_connections_refused_total";
/// Messages that had to wait for a connection's message-rate limit.
pub const MESSAGES_THROTTLED: &str = "sync_messages_throttled_total";

/// `security.alert` audit entries raised, by kind.
pub const SECURITY_ALERTS: &str = "sync_security_alerts_total";
/// Sign-in steps (password, code) refused, by reason.
pub const SIGN_IN_FAILURES: &str = "sync_sign_in_failures_total";
/// Sign-in steps refused because the account or address must wait.
pub const SIGN_IN_THROTTLED: &str = "sync_sign_in_throttled_total";
/// Sync connections closed because their session, device or key was revoked.
pub const CONNECTIONS_CUT: &str = "sync_connections_cut_total";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once and returns its handle. Several
/// servers in one test process share it, which is why it is global.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5,
            ];
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .expect("bucket list is not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed")
        })
        .clone()
}
