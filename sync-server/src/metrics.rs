//! Metric names, their help texts, and the Prometheus recorder. Every family
//! is described when the recorder is installed and its unlabelled (and
//! known labelled) series start at zero, so a fresh server's `/metrics`
//! already lists what an operator will chart; process metrics (memory, CPU,
//! descriptors, threads) come from `metrics-process` at each scrape.

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
/// for one peer, `shared`, a copy of the one made for a peer in the same
/// sync state (`doc_core::DocumentCore::outgoing`), or `from_history`, the
/// changes picked from the recent history (`doc_core::message_from_history`).
pub const SYNC_MESSAGES_MADE: &str = "sync_messages_made_total";
/// Peers' messages without changes, by how they were taken: `shortcut`
/// (`doc_core::receive_answer`, no walk of the whole history) or
/// `automerge`.
pub const SYNC_ANSWERS: &str = "sync_answers_total";
/// Peers that spoke and were found to be owed nothing without asking
/// automerge (`doc_core::in_sync`; mostly listeners answering a fan-out).
pub const SYNC_PEERS_IN_SYNC: &str = "sync_peers_in_sync_total";
/// Messages carrying the whole document (automerge's answer to a peer
/// holding nothing or lacking a third of the changes), by whether the
/// document was `saved` for it or a save at the same heads `reused`
/// (`doc_core::whole_document`).
pub const SYNC_WHOLE_DOCUMENTS: &str = "sync_whole_documents_total";
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
/// The store's own families (recorded by `server-store`; described here with the rest).
pub use server_store::metrics::{STORE_GROUP_SIZE, STORE_SECONDS};
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

/// Scheduled backups of the embedded store, by result: ok, failed, low_disk.
pub const BACKUPS: &str = "sync_backups_total";
/// When the last scheduled backup was taken and verified (0: none yet).
pub const BACKUP_LAST_SUCCESS: &str = "sync_backup_last_success_timestamp_seconds";

/// `sync_build_info{version, git, store}`, set when a server starts.
pub const BUILD_INFO: &str = "sync_build_info";

/// What a family is.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// The series a family has before any traffic.
#[derive(Clone, Copy)]
enum Start {
    /// One unlabelled series at zero.
    One,
    /// These labelled series at zero (none: the family is described and
    /// its series appear with their first value).
    Labelled(&'static [(&'static str, &'static str)]),
}

/// Every family: name, kind, help text, and the series it starts with.
const FAMILIES: &[(&str, Kind, &str, Start)] = &[
    (
        CONNECTIONS,
        Kind::Gauge,
        "Open sync connections.",
        Start::One,
    ),
    (
        CONNECTIONS_TOTAL,
        Kind::Counter,
        "Sync connections accepted.",
        Start::One,
    ),
    (
        MESSAGES_IN,
        Kind::Counter,
        "Websocket messages received.",
        Start::One,
    ),
    (
        MESSAGES_OUT,
        Kind::Counter,
        "Websocket messages sent.",
        Start::One,
    ),
    (
        BYTES_IN,
        Kind::Counter,
        "Bytes of websocket messages received.",
        Start::One,
    ),
    (
        BYTES_OUT,
        Kind::Counter,
        "Bytes of websocket messages sent.",
        Start::One,
    ),
    (
        PROTOCOL_ERRORS,
        Kind::Counter,
        "Protocol errors, by kind: connection (closed), sync_data (refused), change_rejected (refused by validation).",
        Start::Labelled(&[
            ("kind", "connection"),
            ("kind", "sync_data"),
            ("kind", "change_rejected"),
        ]),
    ),
    (
        AUTH_FAILURES,
        Kind::Counter,
        "Upgrades and API calls refused for their credentials, by reason.",
        Start::Labelled(&[("reason", "missing"), ("reason", "invalid")]),
    ),
    (
        SYNC_SECONDS,
        Kind::Histogram,
        "Seconds from a sync message's arrival to its replies being queued.",
        Start::One,
    ),
    (
        SYNC_MESSAGES_MADE,
        Kind::Counter,
        "Sync messages to peers, by how they were made: generated by automerge, shared with a peer in the same state, or with changes picked from the recent history (from_history).",
        Start::Labelled(&[
            ("how", "generated"),
            ("how", "shared"),
            ("how", "from_history"),
        ]),
    ),
    (
        SYNC_WHOLE_DOCUMENTS,
        Kind::Counter,
        "Sync messages carrying the whole document to a fresh peer or one lacking a third of the changes, by whether it was saved for the message or a save at the same heads reused.",
        Start::Labelled(&[("how", "saved"), ("how", "reused")]),
    ),
    (
        SYNC_ANSWERS,
        Kind::Counter,
        "Peers' answers without changes, by how they were taken: shortcut (no history walk) or automerge.",
        Start::Labelled(&[("how", "shortcut"), ("how", "automerge")]),
    ),
    (
        SYNC_PEERS_IN_SYNC,
        Kind::Counter,
        "Peers found owed nothing without asking automerge.",
        Start::One,
    ),
    (
        CHUNKS_WRITTEN,
        Kind::Counter,
        "Store writes of accepted changes (one per document batch).",
        Start::One,
    ),
    (
        DOCUMENTS_LOADED,
        Kind::Gauge,
        "Documents held in memory.",
        Start::One,
    ),
    (
        DOCUMENT_LOADS,
        Kind::Counter,
        "Documents loaded from the store.",
        Start::One,
    ),
    (
        DOCUMENT_EVICTIONS,
        Kind::Counter,
        "Documents leaving memory, by reason: idle, budget (over the memory budget) or failure.",
        Start::Labelled(&[
            ("reason", "idle"),
            ("reason", "budget"),
            ("reason", "failure"),
        ]),
    ),
    (
        DOCUMENT_MEMORY_ESTIMATE,
        Kind::Gauge,
        "Estimated heap bytes of all loaded documents.",
        Start::One,
    ),
    (
        COMPACTIONS,
        Kind::Counter,
        "Documents folded into a new snapshot.",
        Start::One,
    ),
    (
        STORE_SECONDS,
        Kind::Histogram,
        "Seconds per store operation, by op.",
        Start::Labelled(&[
            ("op", "load_document"),
            ("op", "append_chunk"),
            ("op", "compact"),
        ]),
    ),
    (
        STORE_GROUP_SIZE,
        Kind::Histogram,
        "Document writes committed together in one transaction by the embedded store.",
        Start::One,
    ),
    (
        HTTP_RATE_LIMITED,
        Kind::Counter,
        "HTTP requests refused by a rate limit, per address or per user.",
        Start::Labelled(&[("per", "address"), ("per", "user")]),
    ),
    (
        CONNECTIONS_REFUSED,
        Kind::Counter,
        "Sync upgrades refused, by reason.",
        Start::Labelled(&[("reason", "per_principal_cap")]),
    ),
    (
        MESSAGES_THROTTLED,
        Kind::Counter,
        "Messages that waited for a connection's message-rate limit.",
        Start::One,
    ),
    (
        SECURITY_ALERTS,
        Kind::Counter,
        "Security alerts raised, by kind: token_reuse, failed_code_burst, refused_write_burst.",
        Start::Labelled(&[
            ("kind", "token_reuse"),
            ("kind", "failed_code_burst"),
            ("kind", "refused_write_burst"),
        ]),
    ),
    (
        SIGN_IN_FAILURES,
        Kind::Counter,
        "Sign-in steps refused, by reason.",
        Start::Labelled(&[
            ("reason", "wrong_password"),
            ("reason", "unknown_email"),
            ("reason", "user_disabled"),
        ]),
    ),
    (
        SIGN_IN_THROTTLED,
        Kind::Counter,
        "Sign-in steps refused because the account or address must wait, by step: password or code.",
        Start::Labelled(&[("step", "password"), ("step", "code")]),
    ),
    (
        CONNECTIONS_CUT,
        Kind::Counter,
        "Sync connections closed by the server, by reason: revoked or token_expired.",
        Start::Labelled(&[("reason", "revoked"), ("reason", "token_expired")]),
    ),
    (
        BACKUPS,
        Kind::Counter,
        "Scheduled backups of the embedded store, by result: ok, failed, low_disk (not started: too little free disk).",
        Start::Labelled(&[
            ("result", "ok"),
            ("result", "failed"),
            ("result", "low_disk"),
        ]),
    ),
    (
        BACKUP_LAST_SUCCESS,
        Kind::Gauge,
        "Unix time of the last scheduled backup taken and verified; 0 until the first.",
        Start::One,
    ),
    (
        BUILD_INFO,
        Kind::Gauge,
        "Always 1: the server's version, git revision and store kind as labels.",
        // Set by `set_build_info` when a server starts.
        Start::Labelled(&[]),
    ),
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
static PROCESS: OnceLock<metrics_process::Collector> = OnceLock::new();

/// Describes every family and starts its series at zero (see the module).
fn describe_all() {
    for &(name, kind, help, start) in FAMILIES {
        let series: &[(&str, &str)] = match start {
            Start::One => &[],
            Start::Labelled(series) => series,
        };
        let one = matches!(start, Start::One);
        match kind {
            Kind::Counter => {
                metrics::describe_counter!(name, help);
                if one {
                    metrics::counter!(name).absolute(0);
                }
                for &(key, value) in series {
                    metrics::counter!(name, key => value).absolute(0);
                }
            }
            Kind::Gauge => {
                metrics::describe_gauge!(name, help);
                if one {
                    metrics::gauge!(name).set(0.0);
                }
                for &(key, value) in series {
                    metrics::gauge!(name, key => value).set(0.0);
                }
            }
            // Registered, so they render with zero counts.
            Kind::Histogram => {
                metrics::describe_histogram!(name, help);
                if one {
                    drop(metrics::histogram!(name));
                }
                for &(key, value) in series {
                    drop(metrics::histogram!(name, key => value));
                }
            }
        }
    }
    PROCESS
        .get_or_init(metrics_process::Collector::default)
        .describe();
}

/// Records what this server is: version, git revision, store kind.
pub fn set_build_info(store: &'static str) {
    metrics::gauge!(
        BUILD_INFO,
        "version" => env!("CARGO_PKG_VERSION"),
        "git" => env!("SYNC_GIT_REVISION"),
        "store" => store
    )
    .set(1.0);
}

/// The metrics text for a scrape (process metrics read now).
pub fn render(handle: &PrometheusHandle) -> String {
    if let Some(process) = PROCESS.get() {
        process.collect();
    }
    handle.render()
}

/// Installs the process-wide recorder once and returns its handle. Several
/// servers in one test process share it, which is why it is global.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5,
            ];
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .expect("bucket list is not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            describe_all();
            handle
        })
        .clone()
}
