//! Backup and restore of the embedded store.
//!
//! `backup` copies the live database with SQLite's online backup API in one
//! step (one read transaction, so the copy is consistent while the server
//! keeps writing). `restore` verifies a backup (integrity, migration
//! checksums, schema not newer than this build) and refuses to replace a store
//! that is newer than the backup, or one a running server holds, unless told.
//! PostgreSQL stores are backed up with `pg_dump`/`pg_restore` (README).

use std::fs::File;
use std::path::{Path, PathBuf};

use migrations::{AppliedMigration, SERVER_SQLITE, check_applied};
use rusqlite::{Connection, OpenFlags};

use crate::audit::ChainVerifier;
use crate::store::sqlite::audit_entry_from_row;
use crate::store::sqlite_database_path;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no store at {0}")]
    NoStore(PathBuf),
    #[error("{path} is not a valid backup: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error(
        "the store in {data_dir} is newer than the backup (store: schema {store_version}, last write {store_last:?}; backup: schema {backup_version}, last write {backup_last:?}); use --force to replace it"
    )]
    StoreIsNewer {
        data_dir: PathBuf,
        store_version: u32,
        store_last: Option<String>,
        backup_version: u32,
        backup_last: Option<String>,
    },
    #[error("a server is running on {0}; stop it before restoring")]
    InUse(PathBuf),
}

/// Held by a running server so that nothing replaces its database underneath.
pub struct DataDirLock {
    _file: File,
}

/// Takes the data directory's lock, or fails if a server holds it.
pub fn lock_data_dir(data_dir: &Path) -> Result<DataDirLock, BackupError> {
    std::fs::create_dir_all(data_dir)?;
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(data_dir.join("server.lock"))?;
    match file.try_lock() {
        Ok(()) => Ok(DataDirLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(BackupError::InUse(data_dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(BackupError::Io(e)),
    }
}

/// What a backup (or a store) holds, for comparing them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSummary {
    pub schema_version: u32,
    pub documents: u64,
    /// Latest `updated_at` of any document or key (UTC text, sortable).
    pub last_write: Option<String>,
}

fn summarize(conn: &Connection, path: &Path) -> Result<StoreSummary, BackupError> {
    let invalid = |reason: String| BackupError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(invalid(format!("integrity check: {check}")));
    }
    let mut stmt = conn
        .prepare(
            "SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version",
        )
        .map_err(|e| invalid(format!("no migration history: {e}")))?;
    let applied: Vec<AppliedMigration> = stmt
        .query_map([], |r| {
            Ok(AppliedMigration {
                version: r.get(0)?,
                name: r.get(1)?,
                checksum: r.get(2)?,
                applied_at: r.get(3)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    check_applied(&SERVER_SQLITE, &applied).map_err(|e| invalid(e.to_string()))?;
    let schema_version = applied.iter().map(|a| a.version).max().unwrap_or(0);
    verify_audit_chain(conn).map_err(|e| invalid(format!("audit chain broken: {e}")))?;
    let documents: i64 = conn
        .query_row("SELECT count(*) FROM documents", [], |r| r.get(0))
        .map_err(|e| invalid(e.to_string()))?;
    let last_write: Option<String> = conn.query_row(
        "SELECT max(t) FROM (SELECT max(updated_at) AS t FROM documents
                             UNION ALL SELECT max(coalesce(last_used_at, created_at)) FROM api_keys)",
        [],
        |r| r.get(0),
    )?;
    Ok(StoreSummary {
        schema_version,
        documents: documents as u64,
        last_write,
    })
}

/// Why a copy's audit chain does not check out.
#[derive(Debug, thiserror::Error)]
enum ChainCheckError {
    #[error("{0}")]
    Read(#[from] rusqlite::Error),
    #[error("{0}")]
    Chain(#[from] crate::audit::ChainError),
}

/// Walks the audit chain of a SQLite store file (see `audit::ChainVerifier`).
fn verify_audit_chain(conn: &Connection) -> Result<u64, ChainCheckError> {
    let head: (i64, String) =
        conn.query_row("SELECT seq, hash FROM audit_head WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    let mut stmt = conn.prepare(
        "SELECT seq, at, actor, device, address, action, target, result, details, prev_hash, hash
         FROM audit_log ORDER BY seq",
    )?;
    let rows = stmt.query_map([], audit_entry_from_row)?;
    let mut verifier = ChainVerifier::default();
    for row in rows {
        verifier.check(&row?)?;
    }
    Ok(verifier.finish(Some((head.0 as u64, head.1)))?)
}

/// Copies the store in `data_dir` to `target` (consistent while serving);
/// returns what the copy holds.
pub fn backup(data_dir: &Path, target: &Path) -> Result<StoreSummary, BackupError> {
    let source_path = sqlite_database_path(data_dir);
    if !source_path.exists() {
        return Err(BackupError::NoStore(source_path));
    }
    let source = Connection::open_with_flags(&source_path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    source.busy_timeout(std::time::Duration::from_secs(10))?;
    let partial = target.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    {
        let mut copy = Connection::open(&partial)?;
        let backup = rusqlite::backup::Backup::new(&source, &mut copy)?;
        // All pages in one step (-1): one read transaction, one consistent
        // copy, however busy the server is. Retry while the file is locked.
        use rusqlite::backup::StepResult;
        let mut attempts = 0;
        loop {
            match backup.step(-1)? {
                StepResult::Done => break,
                StepResult::More => continue,
                StepResult::Busy | StepResult::Locked if attempts < 100 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                _ => {
                    return Err(BackupError::Io(std::io::Error::other(
                        "the store stayed locked; backup abandoned",
                    )));
                }
            }
        }
    }
    let copy = Connection::open_with_flags(&partial, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let summary = summarize(&copy, &partial)?;
    drop(copy);
    File::open(&partial)?.sync_all()?;
    std::fs::rename(&partial, target)?;
    Ok(summary)
}

/// Replaces the store in `data_dir` with the backup at `source`.
pub fn restore(data_dir: &Path, source: &Path, force: bool) -> Result<StoreSummary, BackupError> {
    let _lock = lock_data_dir(data_dir)?;
    let backup_conn = Connection::open_with_flags(source, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| BackupError::Invalid {
            path: source.to_path_buf(),
            reason: e.to_string(),
        })?;
    let incoming = summarize(&backup_conn, source).map_err(|e| match e {
        BackupError::Sqlite(e) => BackupError::Invalid {
            path: source.to_path_buf(),
            reason: e.to_string(),
        },
        other => other,
    })?;
    drop(backup_conn);

    let target = sqlite_database_path(data_dir);
    if target.exists() && !force {
        let current_conn = Connection::open(&target)?;
        if let Ok(current) = summarize(&current_conn, &target) {
            let newer_schema = current.schema_version > incoming.schema_version;
            let newer_data = current.last_write > incoming.last_write;
            if newer_schema || newer_data {
                return Err(BackupError::StoreIsNewer {
                    data_dir: data_dir.to_path_buf(),
                    store_version: current.schema_version,
                    store_last: current.last_write,
                    backup_version: incoming.schema_version,
                    backup_last: incoming.last_write,
                });
            }
        }
    }
    // Copy beside the target, then swap in with a rename; stale WAL files of
    // the old database must not be replayed onto the new one.
    let staged = target.with_extension("restoring");
    std::fs::copy(source, &staged)?;
    File::open(&staged)?.sync_all()?;
    for suffix in ["-wal", "-shm"] {
        let mut stale = target.clone().into_os_string();
        stale.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(stale));
    }
    std::fs::rename(&staged, &target)?;
    Ok(incoming)
}
