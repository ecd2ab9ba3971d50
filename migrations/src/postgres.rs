//! The PostgreSQL side of the migration runner (blocking client: migrations
//! run once at start or from the CLI, off the async runtime).

use postgres::Client;

use crate::{AppliedMigration, Migration, MigrationBackend, MigrationError};

const BOOKKEEPING: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at TEXT NOT NULL
)";

/// Applies migrations to one PostgreSQL connection. PostgreSQL has
/// transactional DDL, so a failing migration leaves nothing behind.
pub struct PostgresBackend<'c> {
    client: &'c mut Client,
}

impl<'c> PostgresBackend<'c> {
    pub fn new(client: &'c mut Client) -> Self {
        Self { client }
    }
}

fn db(e: postgres::Error) -> MigrationError {
    MigrationError::Database(Box::new(e))
}

fn failed(migration: &Migration, e: postgres::Error) -> MigrationError {
    MigrationError::Failed {
        version: migration.version,
        name: migration.name,
        source: Box::new(e),
    }
}

impl MigrationBackend for PostgresBackend<'_> {
    fn ensure_bookkeeping(&mut self) -> Result<(), MigrationError> {
        self.client.batch_execute(BOOKKEEPING).map_err(db)
    }

    fn applied(&mut self) -> Result<Vec<AppliedMigration>, MigrationError> {
        let rows = self
            .client
            .query("SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version", &[])
            .map_err(db)?;
        Ok(rows
            .iter()
            .map(|r| AppliedMigration {
                version: r.get::<_, i32>(0) as u32,
                name: r.get(1),
                checksum: r.get(2),
                applied_at: r.get(3),
            })
            .collect())
    }

    fn apply_up(&mut self, migration: &Migration) -> Result<(), MigrationError> {
        let mut tx = self.client.transaction().map_err(db)?;
        // Two writers migrating at once (two nodes starting together) queue here.
        tx.batch_execute("LOCK TABLE schema_migrations IN EXCLUSIVE MODE")
            .map_err(db)?;
        let already: i64 = tx
            .query_one(
                "SELECT count(*) FROM schema_migrations WHERE version = $1",
                &[&(migration.version as i32)],
            )
            .map_err(db)?
            .get(0);
        if already == 0 {
            tx.batch_execute(migration.up)
                .map_err(|e| failed(migration, e))?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, checksum, applied_at)
                 VALUES ($1, $2, $3, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'))",
                &[&(migration.version as i32), &migration.name, &migration.checksum()],
            )
            .map_err(db)?;
        }
        tx.commit().map_err(db)
    }

    fn apply_down(&mut self, migration: &Migration) -> Result<(), MigrationError> {
        let mut tx = self.client.transaction().map_err(db)?;
        tx.batch_execute(migration.down)
            .map_err(|e| failed(migration, e))?;
        tx.execute(
            "DELETE FROM schema_migrations WHERE version = $1",
            &[&(migration.version as i32)],
        )
        .map_err(db)?;
        tx.commit().map_err(db)
    }
}
