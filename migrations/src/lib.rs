//! Schema history of every database in the project, and the runner that applies it.
//!
//! Each database has a [`MigrationSet`]: numbered migrations with an `up` and a
//! `down` script, embedded from `migrations/sql/<set>/NNNN_name.{up,down}.sql`.
//! A migration's checksum (SHA-256 of both scripts) is recorded when it is applied;
//! a later mismatch means someone edited history, and the runner refuses to go on.
//! Every migration runs in its own transaction together with its bookkeeping row.
//!
//! The runner talks to a database through [`MigrationBackend`], so a PostgreSQL
//! backend plugs in beside [`SqliteBackend`] without touching the rules here.

use sha2::{Digest, Sha256};

mod sqlite;
pub use sqlite::SqliteBackend;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "postgres")]
pub use postgres::PostgresBackend;

/// One numbered schema step.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub up: &'static str,
    pub down: &'static str,
}

impl Migration {
    /// Hex SHA-256 over both scripts, so editing either one is detected.
    pub fn checksum(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.up.as_bytes());
        hasher.update([0u8]);
        hasher.update(self.down.as_bytes());
        hex::encode(hasher.finalize())
    }
}

/// The ordered migrations of one database.
#[derive(Debug, Clone, Copy)]
pub struct MigrationSet {
    pub name: &'static str,
    pub migrations: &'static [Migration],
}

impl MigrationSet {
    pub fn latest_version(&self) -> u32 {
        self.migrations.last().map_or(0, |m| m.version)
    }

    fn get(&self, version: u32) -> Option<&'static Migration> {
        self.migrations.iter().find(|m| m.version == version)
    }
}

macro_rules! migration {
    ($set:literal, $version:literal, $name:literal) => {
        Migration {
            version: $version,
            name: $name,
            up: include_str!(concat!(
                "../sql/",
                $set,
                "/",
                stringify!($version),
                "_",
                $name,
                ".up.sql"
            )),
            down: include_str!(concat!(
                "../sql/",
                $set,
                "/",
                stringify!($version),
                "_",
                $name,
                ".down.sql"
            )),
        }
    };
}

/// The sync server's embedded SQLite store. (Versions are written with their
/// file names' leading zeros, which the macro turns into the file path.)
#[allow(clippy::zero_prefixed_literal)]
pub static SERVER_SQLITE: MigrationSet = MigrationSet {
    name: "server-sqlite",
    migrations: &[
        migration!("server-sqlite", 0001, "documents"),
        migration!("server-sqlite", 0002, "api_keys"),
        migration!("server-sqlite", 0003, "audit_log"),
        migration!("server-sqlite", 0004, "users"),
        migration!("server-sqlite", 0005, "sessions"),
        migration!("server-sqlite", 0006, "settings_backups"),
        migration!("server-sqlite", 0007, "one_org_config"),
        migration!("server-sqlite", 0008, "document_snapshots"),
    ],
};

/// The sync server's PostgreSQL store.
#[allow(clippy::zero_prefixed_literal)]
pub static SERVER_POSTGRES: MigrationSet = MigrationSet {
    name: "server-postgres",
    migrations: &[
        migration!("server-postgres", 0001, "documents"),
        migration!("server-postgres", 0002, "api_keys"),
        migration!("server-postgres", 0003, "audit_log"),
        migration!("server-postgres", 0004, "users"),
        migration!("server-postgres", 0005, "sessions"),
        migration!("server-postgres", 0006, "settings_backups"),
        migration!("server-postgres", 0007, "one_org_config"),
        migration!("server-postgres", 0008, "sign_in_throttle"),
    ],
};

/// The client's local SQLite store.
#[allow(clippy::zero_prefixed_literal)]
pub static CLIENT_SQLITE: MigrationSet = MigrationSet {
    name: "client-sqlite",
    migrations: &[
        migration!("client-sqlite", 0001, "documents"),
        migration!("client-sqlite", 0002, "event_index"),
        migration!("client-sqlite", 0003, "quarantine"),
        migration!("client-sqlite", 0004, "scan_journal"),
        migration!("client-sqlite", 0005, "server_heads"),
        migration!("client-sqlite", 0006, "document_snapshots"),
        migration!("client-sqlite", 0007, "signed_tickets"),
        migration!("client-sqlite", 0008, "door_time_rules"),
        migration!("client-sqlite", 0009, "attention"),
        migration!("client-sqlite", 0010, "scan_marks"),
    ],
};

/// A migration as recorded in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMigration {
    pub version: u32,
    pub name: String,
    pub checksum: String,
    pub applied_at: String,
}

/// Where one known migration stands in a database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationState {
    Pending,
    Applied {
        applied_at: String,
        checksum_matches: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    pub version: u32,
    pub name: &'static str,
    pub state: MigrationState,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error(
        "migration {version} ({name}) was changed after it was applied: recorded checksum {recorded}, file checksum {current}"
    )]
    ChecksumMismatch {
        version: u32,
        name: String,
        recorded: String,
        current: String,
    },
    #[error(
        "database has migration {version} ({name}) that this build does not know; it was written by a newer version"
    )]
    UnknownApplied { version: u32, name: String },
    #[error("no migration {0} in set {1}")]
    NoSuchVersion(u32, &'static str),
    #[error("migration {version} ({name}) failed: {source}")]
    Failed {
        version: u32,
        name: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("database error: {0}")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Checks migrations as recorded in a database against `set`: every applied
/// one must be known and unchanged. Pure, so async stores can use it on rows
/// they fetched themselves.
pub fn check_applied(
    set: &MigrationSet,
    applied: &[AppliedMigration],
) -> Result<(), MigrationError> {
    for applied in applied {
        let Some(known) = set.get(applied.version) else {
            return Err(MigrationError::UnknownApplied {
                version: applied.version,
                name: applied.name.clone(),
            });
        };
        let current = known.checksum();
        if applied.checksum != current {
            return Err(MigrationError::ChecksumMismatch {
                version: applied.version,
                name: applied.name.clone(),
                recorded: applied.checksum.clone(),
                current,
            });
        }
    }
    Ok(())
}

/// What the runner needs from a database. Implementations apply a script and
/// its bookkeeping row in one transaction.
pub trait MigrationBackend {
    fn ensure_bookkeeping(&mut self) -> Result<(), MigrationError>;
    fn applied(&mut self) -> Result<Vec<AppliedMigration>, MigrationError>;
    fn apply_up(&mut self, migration: &Migration) -> Result<(), MigrationError>;
    fn apply_down(&mut self, migration: &Migration) -> Result<(), MigrationError>;
}

/// Runs one [`MigrationSet`] against one database.
pub struct Migrator<'a, B: MigrationBackend> {
    set: &'a MigrationSet,
    backend: B,
}

impl<'a, B: MigrationBackend> Migrator<'a, B> {
    pub fn new(set: &'a MigrationSet, mut backend: B) -> Result<Self, MigrationError> {
        backend.ensure_bookkeeping()?;
        Ok(Self { set, backend })
    }

    /// Every known migration with its state, plus an error for anything the
    /// database has that this build does not know.
    pub fn status(&mut self) -> Result<Vec<MigrationStatus>, MigrationError> {
        let applied = self.backend.applied()?;
        if let Some(unknown) = applied.iter().find(|a| self.set.get(a.version).is_none()) {
            return Err(MigrationError::UnknownApplied {
                version: unknown.version,
                name: unknown.name.clone(),
            });
        }
        Ok(self
            .set
            .migrations
            .iter()
            .map(|m| {
                let state = match applied.iter().find(|a| a.version == m.version) {
                    None => MigrationState::Pending,
                    Some(a) => MigrationState::Applied {
                        applied_at: a.applied_at.clone(),
                        checksum_matches: a.checksum == m.checksum(),
                    },
                };
                MigrationStatus {
                    version: m.version,
                    name: m.name,
                    state,
                }
            })
            .collect())
    }

    /// Fails if any applied migration differs from the file of the same number,
    /// or if the database has migrations this build does not know.
    pub fn verify(&mut self) -> Result<(), MigrationError> {
        check_applied(self.set, &self.backend.applied()?)
    }

    /// The highest applied version (0 for an empty database).
    pub fn current_version(&mut self) -> Result<u32, MigrationError> {
        Ok(self
            .backend
            .applied()?
            .iter()
            .map(|a| a.version)
            .max()
            .unwrap_or(0))
    }

    /// Verifies, then applies pending migrations up to `to` (default: all).
    /// Returns the versions applied.
    pub fn up(&mut self, to: Option<u32>) -> Result<Vec<u32>, MigrationError> {
        self.verify()?;
        let target = to.unwrap_or(self.set.latest_version());
        if target != 0 && self.set.get(target).is_none() {
            return Err(MigrationError::NoSuchVersion(target, self.set.name));
        }
        let applied: Vec<u32> = self.backend.applied()?.iter().map(|a| a.version).collect();
        let mut done = Vec::new();
        for migration in self.set.migrations {
            if migration.version > target || applied.contains(&migration.version) {
                continue;
            }
            tracing::info!(
                set = self.set.name,
                version = migration.version,
                name = migration.name,
                "applying migration"
            );
            self.backend.apply_up(migration)?;
            done.push(migration.version);
        }
        Ok(done)
    }

    /// Verifies, then reverts applied migrations above `to` (default: the
    /// last one only), newest first. Returns the versions reverted.
    pub fn down(&mut self, to: Option<u32>) -> Result<Vec<u32>, MigrationError> {
        self.verify()?;
        let mut applied: Vec<u32> = self.backend.applied()?.iter().map(|a| a.version).collect();
        applied.sort_unstable();
        let target = match to {
            Some(t) => t,
            None => applied.iter().rev().nth(1).copied().unwrap_or(0),
        };
        if target != 0 && self.set.get(target).is_none() {
            return Err(MigrationError::NoSuchVersion(target, self.set.name));
        }
        let mut done = Vec::new();
        for version in applied.into_iter().rev().filter(|v| *v > target) {
            let migration = self
                .set
                .get(version)
                .ok_or(MigrationError::NoSuchVersion(version, self.set.name))?;
            tracing::info!(
                set = self.set.name,
                version,
                name = migration.name,
                "reverting migration"
            );
            self.backend.apply_down(migration)?;
            done.push(version);
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests;
