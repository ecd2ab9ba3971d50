use rusqlite::Connection;

use super::*;

/// The schema as SQLite stores it, minus the bookkeeping table.
fn schema(conn: &Connection) -> Vec<String> {
    let mut stmt = conn
        .prepare(
            "SELECT type || ' ' || name || ': ' || coalesce(sql, '') FROM sqlite_master
             WHERE name NOT LIKE 'schema_migrations%' AND name NOT LIKE 'sqlite_%'
             ORDER BY type, name",
        )
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn up_down_up_gives_same_schema(set: &'static MigrationSet) {
    let mut conn = Connection::open_in_memory().unwrap();
    let applied = Migrator::new(set, SqliteBackend::new(&mut conn))
        .unwrap()
        .up(None)
        .unwrap();
    assert_eq!(applied.len(), set.migrations.len());
    let first = schema(&conn);
    assert!(!first.is_empty(), "{} created no tables", set.name);

    let reverted = Migrator::new(set, SqliteBackend::new(&mut conn))
        .unwrap()
        .down(Some(0))
        .unwrap();
    assert_eq!(reverted.len(), set.migrations.len());
    assert!(
        schema(&conn).is_empty(),
        "down left tables behind: {:?}",
        schema(&conn)
    );

    Migrator::new(set, SqliteBackend::new(&mut conn))
        .unwrap()
        .up(None)
        .unwrap();
    assert_eq!(schema(&conn), first);
}

#[test]
fn server_sqlite_up_down_up_gives_the_same_schema() {
    up_down_up_gives_same_schema(&SERVER_SQLITE);
}

#[test]
fn client_sqlite_up_down_up_gives_the_same_schema() {
    up_down_up_gives_same_schema(&CLIENT_SQLITE);
}

static ORIGINAL: MigrationSet = MigrationSet {
    name: "test",
    migrations: &[
        Migration {
            version: 1,
            name: "a",
            up: "CREATE TABLE a (x INTEGER);",
            down: "DROP TABLE a;",
        },
        Migration {
            version: 2,
            name: "b",
            up: "CREATE TABLE b (x INTEGER);",
            down: "DROP TABLE b;",
        },
    ],
};

static EDITED: MigrationSet = MigrationSet {
    name: "test",
    migrations: &[
        Migration {
            version: 1,
            name: "a",
            up: "CREATE TABLE a (x INTEGER, y TEXT);",
            down: "DROP TABLE a;",
        },
        Migration {
            version: 2,
            name: "b",
            up: "CREATE TABLE b (x INTEGER);",
            down: "DROP TABLE b;",
        },
    ],
};

static BROKEN_SECOND: MigrationSet = MigrationSet {
    name: "test",
    migrations: &[
        Migration {
            version: 1,
            name: "a",
            up: "CREATE TABLE a (x INTEGER);",
            down: "DROP TABLE a;",
        },
        Migration {
            version: 2,
            name: "b",
            up: "CREATE TABLE b (x INTEGER); CREATE TABLE nonsense (",
            down: "",
        },
    ],
};

#[test]
fn an_edited_applied_migration_is_refused_by_verify_and_by_up() {
    let mut conn = Connection::open_in_memory().unwrap();
    Migrator::new(&ORIGINAL, SqliteBackend::new(&mut conn))
        .unwrap()
        .up(Some(1))
        .unwrap();

    let mut edited = Migrator::new(&EDITED, SqliteBackend::new(&mut conn)).unwrap();
    let err = edited.verify().unwrap_err();
    assert!(
        matches!(err, MigrationError::ChecksumMismatch { version: 1, .. }),
        "{err}"
    );
    assert!(matches!(
        edited.up(None),
        Err(MigrationError::ChecksumMismatch { version: 1, .. })
    ));
    let status = edited.status().unwrap();
    assert!(matches!(
        status[0].state,
        MigrationState::Applied {
            checksum_matches: false,
            ..
        }
    ));
    // Migration 2 must not have been applied by the refused `up`.
    assert_eq!(status[1].state, MigrationState::Pending);
}

#[test]
fn a_failing_migration_leaves_nothing_half_applied() {
    let mut conn = Connection::open_in_memory().unwrap();
    let mut migrator = Migrator::new(&BROKEN_SECOND, SqliteBackend::new(&mut conn)).unwrap();
    let err = migrator.up(None).unwrap_err();
    assert!(
        matches!(err, MigrationError::Failed { version: 2, .. }),
        "{err}"
    );
    assert_eq!(migrator.current_version().unwrap(), 1);
    assert_eq!(
        schema(&conn),
        vec!["table a: CREATE TABLE a (x INTEGER)".to_string()]
    );
}

#[test]
fn a_database_from_a_newer_build_is_refused() {
    let mut conn = Connection::open_in_memory().unwrap();
    Migrator::new(&ORIGINAL, SqliteBackend::new(&mut conn))
        .unwrap()
        .up(None)
        .unwrap();
    static OLDER: MigrationSet = MigrationSet {
        name: "test",
        migrations: &[ORIGINAL.migrations[0]],
    };
    let err = Migrator::new(&OLDER, SqliteBackend::new(&mut conn))
        .unwrap()
        .verify()
        .unwrap_err();
    assert!(
        matches!(err, MigrationError::UnknownApplied { version: 2, .. }),
        "{err}"
    );
}

#[test]
fn down_by_default_reverts_only_the_last_migration_and_up_to_stops_there() {
    let mut conn = Connection::open_in_memory().unwrap();
    let mut migrator = Migrator::new(&ORIGINAL, SqliteBackend::new(&mut conn)).unwrap();
    assert_eq!(migrator.up(Some(1)).unwrap(), vec![1]);
    assert_eq!(migrator.up(None).unwrap(), vec![2]);
    assert_eq!(migrator.down(None).unwrap(), vec![2]);
    assert_eq!(migrator.current_version().unwrap(), 1);
    assert!(matches!(
        migrator.up(Some(7)),
        Err(MigrationError::NoSuchVersion(7, _))
    ));
}
