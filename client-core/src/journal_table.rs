//! The scan journal's table and the signal that wakes its writer: what the
//! replica holds and the check-in path writes. The writer itself, which
//! needs the whole replica, is `journal`, above both.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use event_model::rules::Scan;
use rusqlite::{Connection, params};

use crate::ClientError;

/// Wakes the writer.
#[derive(Default)]
pub(crate) struct Signal {
    woken: Mutex<bool>,
    ready: Condvar,
}

impl Signal {
    pub(crate) fn wake(&self) {
        *self.woken.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.ready.notify_one();
    }

    /// Waits for a wake-up or `timeout`; returns whether it was woken.
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
        let woken = self.woken.lock().unwrap_or_else(|p| p.into_inner());
        let (mut woken, _) = self
            .ready
            .wait_timeout_while(woken, timeout, |w| !*w)
            .unwrap_or_else(|p| p.into_inner());
        std::mem::replace(&mut *woken, false)
    }
}

/// Journaled scans in the store.
pub(crate) fn count(conn: &Connection) -> Result<u64, ClientError> {
    let n: i64 = conn.query_row("SELECT count(*) FROM scan_journal", [], |r| r.get(0))?;
    Ok(n as u64)
}

/// Journals a scan (inside the caller's transaction).
pub(crate) fn record(conn: &Connection, key: &str, scan: &Scan) -> Result<(), ClientError> {
    let json = serde_json::to_string(scan)
        .map_err(|e| ClientError::Corrupt(format!("scan {}: {e}", scan.id)))?;
    conn.prepare_cached(
        "INSERT INTO scan_journal (document_id, scan_id, record) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![key, scan.id, json])?;
    Ok(())
}
