//! The `sync-server` binary: token creation, migrations (status, down, up,
//! verify, refusal of edited history at start), health, readiness and metrics.

use std::path::Path;
use std::process::{Command, Output};

use sync_tests::{ServerProcess, http_get, server_command, workspace_binary};

fn server(data_dir: &Path, args: &[&str]) -> Output {
    server_command(data_dir, args)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn token_create_prints_one_token_line_and_stores_only_its_hash() {
    let dir = tempfile::tempdir().unwrap();
    let out = server(
        dir.path(),
        &["token", "create", "--name", "ci", "--role", "admin"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "stdout must be exactly the token: {stdout:?}"
    );
    let token = lines[0];
    assert!(token.starts_with("sk_") && token.len() > 40, "{token}");
    let conn = rusqlite::Connection::open(dir.path().join("sync.sqlite3")).unwrap();
    let stored: String = conn
        .query_row(
            "SELECT token_hash FROM api_keys WHERE name = 'ci'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_ne!(stored, token);
    assert!(
        !text(&out.stderr).contains(token),
        "the token must not be logged"
    );

    let bad_role = server(
        dir.path(),
        &["token", "create", "--name", "x", "--role", "root"],
    );
    assert!(!bad_role.status.success());
    assert!(
        text(&bad_role.stderr).contains("unknown role"),
        "{}",
        text(&bad_role.stderr)
    );
}

#[test]
fn user_create_reads_the_password_from_stdin_and_stores_only_a_hash() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let create = |email: &str, password: &str| {
        let mut child = Command::new(workspace_binary("sync-server"))
            .arg("--data-dir")
            .arg(dir.path())
            .args([
                "user",
                "create",
                "--email",
                email,
                "--role",
                "admin",
                "--password-stdin",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        child.wait_with_output().unwrap()
    };
    let out = create("Admin@Example.org", "a long enough passphrase");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let conn = rusqlite::Connection::open(dir.path().join("sync.sqlite3")).unwrap();
    let (email, hash): (String, String) = conn
        .query_row("SELECT email, password_hash FROM users", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(email, "admin@example.org");
    assert!(hash.starts_with("$argon2id$") && !hash.contains("passphrase"));
    let dup = create("admin@example.org", "another long passphrase");
    assert!(
        !dup.status.success() && text(&dup.stderr).contains("already exists"),
        "{}",
        text(&dup.stderr)
    );
    let short = create("b@example.org", "short");
    assert!(
        !short.status.success() && text(&short.stderr).contains("at least"),
        "{}",
        text(&short.stderr)
    );
    let audited: i64 = conn
        .query_row(
            "SELECT count(*) FROM audit_log WHERE action = 'user.created'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(audited, 1);
}

#[test]
fn migrate_status_down_up_verify() {
    let dir = tempfile::tempdir().unwrap();
    let up = server(dir.path(), &["migrate", "up"]);
    assert!(up.status.success(), "{}", text(&up.stderr));
    let status = text(&server(dir.path(), &["migrate", "status"]).stdout);
    assert_eq!(
        status.lines().filter(|l| l.contains(" applied ")).count(),
        migrations::SERVER_SQLITE.migrations.len(),
        "{status}"
    );

    let down = server(dir.path(), &["migrate", "down", "--to", "0"]);
    assert!(down.status.success(), "{}", text(&down.stderr));
    let status = text(&server(dir.path(), &["migrate", "status"]).stdout);
    assert_eq!(
        status.lines().filter(|l| l.ends_with("pending")).count(),
        migrations::SERVER_SQLITE.migrations.len(),
        "{status}"
    );

    assert!(
        server(dir.path(), &["migrate", "up", "--to", "1"])
            .status
            .success()
    );
    assert!(server(dir.path(), &["migrate", "up"]).status.success());
    let verify = server(dir.path(), &["migrate", "verify"]);
    assert!(verify.status.success());
    assert!(text(&verify.stdout).starts_with("ok"));
}

#[test]
fn an_edited_applied_migration_is_refused_by_verify_and_at_start() {
    let dir = tempfile::tempdir().unwrap();
    assert!(server(dir.path(), &["migrate", "up"]).status.success());
    // Someone changed history: the recorded checksum no longer matches the file.
    let conn = rusqlite::Connection::open(dir.path().join("sync.sqlite3")).unwrap();
    conn.execute(
        "UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1",
        [],
    )
    .unwrap();
    drop(conn);

    let verify = server(dir.path(), &["migrate", "verify"]);
    assert!(!verify.status.success());
    assert!(
        text(&verify.stderr).contains("changed after it was applied"),
        "{}",
        text(&verify.stderr)
    );

    let serve = server(dir.path(), &["serve", "--listen", "127.0.0.1:0"]);
    assert!(
        !serve.status.success(),
        "the server started on an edited schema history"
    );
    assert!(
        text(&serve.stderr).contains("changed after it was applied"),
        "{}",
        text(&serve.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    assert_eq!(
        http_get(&server.addr, "/healthz").await,
        (200, "ok".to_string())
    );
    let (status, body) = http_get(&server.addr, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(
        ready["schema_version"],
        migrations::SERVER_SQLITE.latest_version(),
        "the latest server-sqlite migration"
    );

    // One refused upgrade shows up in the metrics.
    let (status, _) = http_get(&server.addr, "/sync").await;
    assert_eq!(status, 401);
    let (status, metrics) = http_get(&server.addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("sync_auth_failures_total"), "{metrics}");
    assert!(metrics.contains("store_operation_seconds"), "{metrics}");
}

/// A fresh server already describes every family (HELP and TYPE) with zero
/// values, process metrics and its build; after real traffic (a refused
/// upgrade, a document synced), Debian's `promtool check metrics` finds no
/// problem in a scrape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_described_from_the_start_and_promtool_accepts_a_scrape() {
    let dir = tempfile::tempdir().unwrap();
    let out = server(
        dir.path(),
        &["token", "create", "--name", "metrics", "--role", "admin"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_owned();
    let server = ServerProcess::start(dir.path());

    let (status, fresh) = http_get(&server.addr, "/metrics").await;
    assert_eq!(status, 200);
    for family in [
        "sync_connections",
        "sync_messages_in_total",
        "sync_protocol_errors_total",
        "sync_documents_loaded",
        "sync_connections_cut_total",
        "store_operation_seconds",
        "sync_message_handling_seconds",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_threads",
    ] {
        assert!(
            fresh.contains(&format!("# HELP {family} ")),
            "{family}:\n{fresh}"
        );
    }
    for zero in [
        "sync_messages_in_total 0",
        "sync_documents_loaded 0",
        "sync_protocol_errors_total{kind=\"change_rejected\"} 0",
        "sync_auth_failures_total{reason=\"invalid\"} 0",
        "store_operation_seconds_count{op=\"append_chunk\"} 0",
    ] {
        assert!(fresh.lines().any(|l| l == zero), "{zero}:\n{fresh}");
    }
    // A labelled family has no unlabelled series beside its labelled ones.
    for labelled in [
        "sync_auth_failures_total ",
        "store_operation_seconds_count ",
    ] {
        assert!(
            !fresh.lines().any(|l| l.starts_with(labelled)),
            "{labelled}:\n{fresh}"
        );
    }
    let build = fresh
        .lines()
        .find(|l| l.starts_with("sync_build_info{"))
        .unwrap_or_else(|| panic!("no build info:\n{fresh}"));
    assert!(
        build.contains("store=\"sqlite\"") && build.ends_with(" 1"),
        "{build}"
    );
    assert!(
        build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
        "{build}"
    );

    // Real traffic: a refused upgrade and a document synced.
    assert_eq!(http_get(&server.addr, "/sync").await.0, 401);
    let client_dir = tempfile::tempdir().unwrap();
    let client = client_core::ClientCore::open(client_dir.path().join("c.sqlite3")).unwrap();
    let doc = client.create_document().unwrap();
    client
        .change(doc, |tx| {
            automerge::transaction::Transactable::put(tx, automerge::ROOT, "k", 1)
        })
        .unwrap();
    let sync = client.start_sync(client_core::SyncConfig::new(server.url.clone(), &token));
    sync_tests::wait_until(
        "the change is on the server",
        std::time::Duration::from_secs(30),
        || async { client.sync_status().pending_changes == 0 },
    )
    .await;
    sync.stop().await;

    let (status, scrape) = http_get(&server.addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        scrape
            .lines()
            .any(|l| l.starts_with("sync_messages_in_total ") && !l.ends_with(" 0")),
        "{scrape}"
    );
    let mut promtool = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(error) => {
            panic!("promtool (Debian package prometheus, installed by tests/run.sh): {error}")
        }
    };
    {
        use std::io::Write;
        promtool
            .stdin
            .take()
            .unwrap()
            .write_all(scrape.as_bytes())
            .unwrap();
    }
    let checked = promtool.wait_with_output().unwrap();
    let said = format!("{}{}", text(&checked.stdout), text(&checked.stderr));
    assert!(
        checked.status.success() && said.trim().is_empty(),
        "promtool: {said}"
    );
}

/// With `backup_every_secs` set, a running server backs its store up on its
/// own: each copy verified, listed by `backup list`, counted in the
/// metrics, and the newest restorable with one command once it is stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_backups_are_taken_listed_and_the_newest_restored() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sync.toml");
    std::fs::write(&config, "backup_every_secs = 1\nbackup_min_free_mib = 1\n").unwrap();
    let config = config.to_str().unwrap();
    let data = dir.path().join("data");
    let out = server(
        &data,
        &["token", "create", "--name", "b", "--role", "admin"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut server_process = ServerProcess::start_with(&data, "127.0.0.1:0", &["--config", config]);
    let addr = server_process.addr.clone();
    sync_tests::wait_until(
        "two scheduled backups",
        std::time::Duration::from_secs(30),
        || async {
            let (_, metrics) = http_get(&addr, "/metrics").await;
            metrics
                .lines()
                .find(|l| l.starts_with("sync_backups_total{result=\"ok\"}"))
                .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .is_some_and(|n| n >= 2)
        },
    )
    .await;
    // The administrator's status reports the schedule and the newest copy.
    let token = text(&out.stdout).trim().to_owned();
    let status: serde_json::Value = sync_tests::http_client(None)
        .get(format!("http://{addr}/api/status"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let backups = &status["backups"];
    assert_eq!(backups["scheduled"], true, "{status}");
    assert_eq!(backups["every_s"], 1, "{status}");
    assert!(backups["count"].as_u64().unwrap() >= 2, "{status}");
    assert!(backups["last"]["age_s"].as_u64().unwrap() < 60, "{status}");
    assert!(backups["last"]["bytes"].as_u64().unwrap() > 0, "{status}");
    assert_eq!(backups["problem"], serde_json::Value::Null, "{status}");
    let (_, metrics) = http_get(&addr, "/metrics").await;
    let last = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sync_backup_last_success_timestamp_seconds "))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap();
    assert!(last > 1.7e9, "{last}");

    let listed = server(&data, &["--config", config, "backup", "list"]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let listed = text(&listed.stdout);
    assert!(listed.lines().count() >= 2, "{listed}");
    assert!(
        listed
            .lines()
            .all(|l| l.contains("store-") && l.contains(" bytes")),
        "{listed}"
    );

    // The server holds its data directory: a restore waits for it to stop.
    let busy = server(
        &data,
        &["--config", config, "restore", "--latest", "--force"],
    );
    assert!(!busy.status.success());
    assert!(
        text(&busy.stderr).contains("stop it before restoring"),
        "{}",
        text(&busy.stderr)
    );
    server_process.child.kill().unwrap();
    server_process.child.wait().unwrap();
    let restored = server(
        &data,
        &["--config", config, "restore", "--latest", "--force"],
    );
    assert!(restored.status.success(), "{}", text(&restored.stderr));
    let newest = listed.lines().next().unwrap().rsplit('\t').next().unwrap();
    assert!(
        text(&restored.stdout).contains(newest),
        "{}",
        text(&restored.stdout)
    );
}

#[test]
fn every_command_has_help() {
    let dir = tempfile::tempdir().unwrap();
    for (args, expect) in [
        (vec!["--help"], "serve"),
        (vec!["serve", "--help"], "--listen"),
        (vec!["migrate", "--help"], "verify"),
        (vec!["migrate", "down", "--help"], "--to"),
        (vec!["token", "create", "--help"], "--role"),
    ] {
        let out = server(dir.path(), &args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains(expect),
            "{args:?} help lacks {expect}: {}",
            text(&out.stdout)
        );
    }
}
