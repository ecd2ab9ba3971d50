//! The SQLite side of the migration runner.

use rusqlite::{Connection, params};

use crate::{AppliedMigration, Migration, MigrationBackend, MigrationError};

const BOOKKEEPING: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at TEXT NOT NULL
)";

/// Applies migrations to one SQLite connection.
pub struct SqliteBackend<'c> {
    conn: &'c mut Connection,
}

impl<'c> SqliteBackend<'c> {
    pub fn new(conn: &'c mut Connection) -> Self {
        Self { conn }
    }
}

fn db(e: rusqlite::Error) -> MigrationError {
    MigrationError::Database(Box::new(e))
}

fn failed(migration: &Migration, e: rusqlite::Error) -> MigrationError {
    MigrationError::Failed {
        version: migration.version,
        name: migration.name,
        source: Box::new(e),
    }
}

impl MigrationBackend for SqliteBackend<'_> {
    fn ensure_bookkeeping(&mut self) -> Result<(), MigrationError> {
        self.conn.execute_batch(BOOKKEEPING).map_err(db)
    }

    fn applied(&mut self) -> Result<Vec<AppliedMigration>, MigrationError> {
        let mut stmt = self
            .conn
            .prepare("SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version")
            .map_err(db)?;
        let rows = stmt
            .query_map([], |row| {
                Ok(AppliedMigration {
                    version: row.get(0)?,
                    name: row.get(1)?,
                    checksum: row.get(2)?,
                    applied_at: row.get(3)?,
                })
            })
            .map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)
    }

    fn apply_up(&mut self, migration: &Migration) -> Result<(), MigrationError> {
        let tx = self.conn.transaction().map_err(db)?;
        tx.execute_batch(migration.up)
            .map_err(|e| failed(migration, e))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at)
             VALUES (?1, ?2, ?3, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
            params![migration.version, migration.name, migration.checksum()],
        )
        .map_err(db)?;
        tx.commit().map_err(db)
    }

    fn apply_down(&mut self, migration: &Migration) -> Result<(), MigrationError> {
        let tx = self.conn.transaction().map_err(db)?;
        tx.execute_batch(migration.down)
            .map_err(|e| failed(migration, e))?;
        tx.execute(
            "DELETE FROM schema_migrations WHERE version = ?1",
            params![migration.version],
        )
        .map_err(db)?;
        tx.commit().map_err(db)
    }
}
