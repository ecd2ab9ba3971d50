//! Threat signals: token reuse, bursts of failed codes and bursts of refused
//! writes each raise a `security.alert` audit entry and the
//! `sync_security_alerts_total{kind}` metric.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::audit::NewAuditEntry;
use crate::identity::threat::BurstDetector;
use crate::metrics as m;
use crate::store::Store;

/// Failed codes for one account within this window that make a burst.
pub const FAILED_CODE_BURST: (usize, Duration) = (5, Duration::from_secs(10 * 60));
/// Refused writes by one actor within this window that make a burst.
pub const REFUSED_WRITE_BURST: (usize, Duration) = (10, Duration::from_secs(60));

#[derive(Debug, Clone)]
pub struct SecuritySignals {
    failed_codes: Arc<Mutex<BurstDetector>>,
    refused_writes: Arc<Mutex<BurstDetector>>,
}

impl Default for SecuritySignals {
    fn default() -> Self {
        Self {
            failed_codes: Arc::new(Mutex::new(BurstDetector::new(
                FAILED_CODE_BURST.0,
                FAILED_CODE_BURST.1,
            ))),
            refused_writes: Arc::new(Mutex::new(BurstDetector::new(
                REFUSED_WRITE_BURST.0,
                REFUSED_WRITE_BURST.1,
            ))),
        }
    }
}

impl SecuritySignals {
    /// Raises an alert now.
    pub async fn alert(
        &self,
        store: &Store,
        kind: &'static str,
        actor: &str,
        address: Option<&str>,
        details: serde_json::Value,
    ) {
        metrics::counter!(m::SECURITY_ALERTS, "kind" => kind).increment(1);
        tracing::warn!(kind, actor, "security alert");
        let mut details = details;
        if let Some(object) = details.as_object_mut() {
            object.insert("kind".into(), kind.into());
        }
        let mut entry = NewAuditEntry::new(actor, "security.alert", "alert").details(details);
        if let Some(address) = address {
            entry = entry.address(address);
        }
        if let Err(error) = store.audit.append_audit(entry).await {
            tracing::error!(%error, "audit log write failed");
        }
    }

    /// A wrong TOTP or recovery code for `account`.
    pub async fn failed_code(&self, store: &Store, account: &str, address: &str) {
        let burst = self
            .failed_codes
            .lock()
            .expect("detector poisoned")
            .record(account, Instant::now());
        if burst {
            let (count, window) = FAILED_CODE_BURST;
            self.alert(
                store,
                "failed_code_burst",
                account,
                Some(address),
                serde_json::json!({ "failures": count, "window_secs": window.as_secs() }),
            )
            .await;
        }
    }

    /// A write refused for `actor`.
    pub async fn refused_write(&self, store: &Store, actor: &str, address: &str) {
        let burst = self
            .refused_writes
            .lock()
            .expect("detector poisoned")
            .record(actor, Instant::now());
        if burst {
            let (count, window) = REFUSED_WRITE_BURST;
            self.alert(
                store,
                "refused_write_burst",
                actor,
                Some(address),
                serde_json::json!({ "refusals": count, "window_secs": window.as_secs() }),
            )
            .await;
        }
    }
}
