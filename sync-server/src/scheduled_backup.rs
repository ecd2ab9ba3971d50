//! Backups of the embedded store on a schedule: every `backup_every_secs` a
//! consistent copy goes to `<data_dir>/backups/scheduled/`, is verified
//! before it gets its final name (`backup::backup`: integrity check,
//! migration checksums, the audit chain), and the set is thinned: all of
//! the last hour, the newest per hour for a day, the newest per day for a
//! month, and always the newest (`settings_backup::keep`, the settings
//! backups' policy). A backup
//! is not started when the disk would be left with less than
//! `backup_min_free_mib`; a failure is a log line and a metric, never a
//! stop of the server.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::backup::{BackupError, StoreSummary};
use crate::settings_backup::{Retention, keep};

/// Where scheduled backups of `data_dir` go.
pub fn directory(data_dir: &Path) -> PathBuf {
    data_dir.join("backups").join("scheduled")
}

/// Scheduled backups kept: all of the last hour, the newest per hour for a
/// day, per day for a month.
pub const RETENTION: Retention = Retention {
    keep_all_minutes: 60,
    hourly_hours: 24,
    daily_days: 31,
};

const PREFIX: &str = "store-";
const SUFFIX: &str = ".sqlite3";

/// One scheduled backup on disk. Only verified copies get such a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub path: PathBuf,
    pub taken_ms: i64,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ScheduledError {
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error(
        "not taking a backup: {free_mib} MiB free in {dir}, and a copy of {needed_mib} MiB would leave less than the {min_free_mib} MiB kept free (backup_min_free_mib)"
    )]
    LowDisk {
        dir: PathBuf,
        free_mib: u64,
        needed_mib: u64,
        min_free_mib: u64,
    },
}

fn file_name(taken_ms: i64) -> String {
    let at = chrono::DateTime::from_timestamp_millis(taken_ms).unwrap_or_default();
    format!("{PREFIX}{}{SUFFIX}", at.format("%Y%m%dT%H%M%S%.3fZ"))
}

fn taken_ms(name: &str) -> Option<i64> {
    let stamp = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    let at = chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%S%.3fZ").ok()?;
    Some(at.and_utc().timestamp_millis())
}

/// The scheduled backups in `dir`, newest first.
pub fn list(dir: &Path) -> Result<Vec<Listed>, std::io::Error> {
    let mut listed = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(listed),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if let Some(taken_ms) = name.to_str().and_then(taken_ms) {
            listed.push(Listed {
                path: entry.path(),
                taken_ms,
                bytes: entry.metadata()?.len(),
            });
        }
    }
    listed.sort_by_key(|b| std::cmp::Reverse(b.taken_ms));
    Ok(listed)
}

/// Bytes free for this process in the file system holding `dir`.
fn free_bytes(dir: &Path) -> Result<u64, std::io::Error> {
    let stat = rustix::fs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Takes one verified backup of `data_dir` at `now_ms`, then thins the set.
/// Returns what it holds and the backups deleted by the retention policy.
pub fn take(
    data_dir: &Path,
    now_ms: i64,
    min_free_mib: u64,
) -> Result<(Listed, StoreSummary, usize), ScheduledError> {
    let dir = directory(data_dir);
    std::fs::create_dir_all(&dir).map_err(BackupError::from)?;
    let store_bytes = std::fs::metadata(crate::store::sqlite_database_path(data_dir))
        .map(|m| m.len())
        .unwrap_or(0);
    let free = free_bytes(&dir).map_err(BackupError::from)?;
    const MIB: u64 = 1024 * 1024;
    if free < store_bytes.saturating_add(min_free_mib.saturating_mul(MIB)) {
        return Err(ScheduledError::LowDisk {
            dir,
            free_mib: free / MIB,
            needed_mib: store_bytes.div_ceil(MIB),
            min_free_mib,
        });
    }
    let path = dir.join(file_name(now_ms));
    let summary = crate::backup::backup(data_dir, &path).inspect_err(|_| {
        // A failed copy leaves its partial file; each has a name of its own,
        // so failures would otherwise fill the disk.
        let _ = std::fs::remove_file(path.with_extension("partial"));
    })?;
    let bytes = std::fs::metadata(&path).map_err(BackupError::from)?.len();
    let taken = Listed {
        path,
        taken_ms: now_ms,
        bytes,
    };
    let deleted = thin(&dir, now_ms).map_err(BackupError::from)?;
    Ok((taken, summary, deleted))
}

/// Deletes the backups the retention policy no longer keeps.
fn thin(dir: &Path, now_ms: i64) -> Result<usize, std::io::Error> {
    let listed = list(dir)?;
    let taken: Vec<(String, i64)> = listed
        .iter()
        .map(|b| (b.path.to_string_lossy().into_owned(), b.taken_ms))
        .collect();
    let kept = keep(&taken, now_ms, RETENTION);
    let mut deleted = 0;
    for backup in listed {
        if !kept.contains(backup.path.to_string_lossy().as_ref()) {
            std::fs::remove_file(&backup.path)?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// Runs the schedule until `shutdown`: the first backup one period after
/// start, then every period.
pub async fn run(
    data_dir: PathBuf,
    every: Duration,
    min_free_mib: u64,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    use crate::metrics as m;
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let dir = data_dir.clone();
        let now_ms = crate::auth::unix_ms();
        let result = tokio::task::spawn_blocking(move || take(&dir, now_ms, min_free_mib)).await;
        match result {
            Ok(Ok((taken, summary, deleted))) => {
                tracing::info!(
                    path = %taken.path.display(),
                    bytes = taken.bytes,
                    documents = summary.documents,
                    deleted,
                    "scheduled backup taken and verified"
                );
                metrics::counter!(m::BACKUPS, "result" => "ok").increment(1);
                metrics::gauge!(m::BACKUP_LAST_SUCCESS).set(now_ms as f64 / 1000.0);
            }
            Ok(Err(error @ ScheduledError::LowDisk { .. })) => {
                tracing::error!(%error, "scheduled backup skipped");
                metrics::counter!(m::BACKUPS, "result" => "low_disk").increment(1);
            }
            Ok(Err(error)) => {
                tracing::error!(%error, "scheduled backup failed");
                metrics::counter!(m::BACKUPS, "result" => "failed").increment(1);
            }
            Err(error) => {
                tracing::error!(%error, "scheduled backup task failed");
                metrics::counter!(m::BACKUPS, "result" => "failed").increment(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    fn store() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        drop(crate::store::SqliteStore::open(dir.path(), false).unwrap());
        dir
    }

    #[test]
    fn backups_are_verified_listed_newest_first_and_thinned_hourly_then_daily() {
        let data = store();
        let start = 1_780_000_000_000 - 1_780_000_000_000 % (24 * HOUR);
        // Every 20 minutes for three days.
        let mut now = start;
        while now < start + 72 * HOUR {
            let (taken, summary, _) = take(data.path(), now, 0).unwrap();
            assert_eq!(taken.taken_ms, now);
            assert_eq!(
                summary.schema_version,
                migrations::SERVER_SQLITE.latest_version()
            );
            now += HOUR / 3;
        }
        let last = now - HOUR / 3;
        let listed = list(&directory(data.path())).unwrap();
        assert_eq!(listed[0].taken_ms, last, "newest first");
        assert!(listed.windows(2).all(|w| w[0].taken_ms > w[1].taken_ms));
        // All four of the last hour; the newest of each hour of the last 24
        // (25 hours touched: the window's edge), two of them already among
        // those four; before that only the first day's newest (the second
        // day's newest, 23:40, is inside the last 24 hours).
        let within = |ms: i64| listed.iter().filter(|b| last - b.taken_ms <= ms).count();
        assert_eq!(within(HOUR), 4, "{listed:?}");
        assert_eq!(within(24 * HOUR), 25 + 2, "{listed:?}");
        assert_eq!(listed.len(), 28, "{listed:?}");
        assert_eq!(listed[27].taken_ms, start + 24 * HOUR - HOUR / 3);
        // Each one is a store the restore path accepts.
        let target = tempfile::tempdir().unwrap();
        crate::backup::restore(target.path(), &listed[0].path, false).unwrap();
    }

    #[test]
    fn too_little_free_disk_takes_no_backup_and_says_why() {
        let data = store();
        let error = take(data.path(), 1_780_000_000_000, u64::MAX / (1 << 21)).unwrap_err();
        assert!(matches!(error, ScheduledError::LowDisk { .. }), "{error}");
        assert!(error.to_string().contains("backup_min_free_mib"), "{error}");
        assert!(list(&directory(data.path())).unwrap().is_empty());
    }

    #[test]
    fn names_carry_the_time_they_were_taken() {
        let at = 1_780_000_000_123;
        assert_eq!(taken_ms(&file_name(at)), Some(at));
        assert_eq!(taken_ms("store-nonsense.sqlite3"), None);
        assert_eq!(taken_ms("other.sqlite3"), None);
    }
}
