//! The `sync-server` binary: token creation, migrations (status, down, up,
//! verify, refusal of edited history at start), health, readiness and metrics.

use std::path::Path;
use std::process::{Command, Output};

use sync_tests::{ServerProcess, server_command, workspace_binary};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn server(data_dir: &Path, args: &[&str]) -> Output {
    server_command(data_dir, args)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
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
