//! The audit log end to end: what the server records (token creation,
//! refused sign-ins, denied reads, accepted write batches, reads of the log),
//! that no token leaks into it, and that `audit verify` finds every kind of
//! tampering done directly in the database.

use std::path::Path;
use std::time::Duration;

use automerge::ROOT;
use automerge::transaction::Transactable;
use client_core::{ClientCore, SyncConfig};
use sync_server::auth::Role;
use sync_tests::raw::{joined_as, next_message, send};
use sync_tests::{ServerProcess, create_token, server_command, wait_until};

const LIMIT: Duration = Duration::from_secs(20);

fn cli(data_dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = server_command(data_dir, args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn export(data_dir: &Path) -> Vec<serde_json::Value> {
    let (ok, stdout, stderr) = cli(data_dir, &["audit", "export"]);
    assert!(ok, "{stderr}");
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A copy of the data directory to tamper with.
fn copy_of(data_dir: &Path, into: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(into).unwrap();
    std::fs::copy(data_dir.join("sync.sqlite3"), into.join("sync.sqlite3")).unwrap();
    into.to_path_buf()
}

fn tamper(data_dir: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(data_dir.join("sync.sqlite3")).unwrap();
    // An attacker with the file can drop the append-only triggers first.
    conn.execute_batch("DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;")
        .unwrap();
    conn.execute_batch(sql).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_audits_what_happens_and_verify_finds_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (ok, admin_token, stderr) = cli(
        &data,
        &["token", "create", "--name", "admin", "--role", "admin"],
    );
    assert!(ok, "{stderr}");
    let admin_token = admin_token.trim().to_string();
    let staff_token = create_token(&data, Role::Staff).await;
    let server = ServerProcess::start(&data);

    // A refused sign-in.
    let bad = format!("{}?token=sk_guess", server.url);
    assert!(
        tokio_tungstenite::connect_async(bad.as_str())
            .await
            .is_err()
    );
    // Accepted writes.
    let a = ClientCore::open(dir.path().join("a.sqlite3")).unwrap();
    let sync = a.start_sync(SyncConfig::new(&server.url, &admin_token));
    let doc = a.create_document().unwrap();
    a.change(doc, |tx| tx.put(ROOT, "x", 1)).unwrap();
    wait_until("the write is confirmed", LIMIT, || async {
        a.sync_status().pending_changes == 0
    })
    .await;
    sync.stop().await;
    // A denied read.
    let (mut staff, server_id) = joined_as(&server.url, &staff_token, "staff").await;
    let data_msg = {
        use automerge::sync::SyncDoc;
        automerge::Automerge::new()
            .generate_sync_message(&mut automerge::sync::State::new())
            .unwrap()
            .encode()
    };
    send(
        &mut staff,
        &sync_protocol::Message::Request {
            sender_id: "staff".into(),
            target_id: server_id,
            document_id: doc,
            data: data_msg,
        },
    )
    .await;
    assert!(matches!(
        next_message(&mut staff).await,
        Some(sync_protocol::Message::DocUnavailable { .. })
    ));
    drop(staff);
    assert!(server.terminate().success());

    let (ok, stdout, stderr) = cli(&data, &["audit", "verify"]);
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("ok:"), "{stdout}");

    let entries = export(&data);
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for expected in [
        "api_key.created",
        "auth.token_rejected",
        "document.write",
        "document.read_denied",
        "audit.verify",
        "audit.export",
    ] {
        assert!(actions.contains(&expected), "no {expected} in {actions:?}");
    }
    let write = entries
        .iter()
        .find(|e| e["action"] == "document.write")
        .unwrap();
    assert_eq!(write["target"], doc.to_string());
    assert!(write["actor"].as_str().unwrap().starts_with("api_key:"));
    assert_eq!(write["details"]["heads"].as_array().unwrap().len(), 1);
    assert!(write["details"]["changes"].as_u64().unwrap() >= 1);
    let rejected = entries
        .iter()
        .find(|e| e["action"] == "auth.token_rejected")
        .unwrap();
    assert_eq!(rejected["address"], "127.0.0.1");
    assert!(
        entries
            .iter()
            .all(|e| e["at"].as_str().unwrap().ends_with('Z')),
        "times are UTC"
    );
    let everything = serde_json::to_string(&entries).unwrap();
    assert!(
        !everything.contains(&admin_token)
            && !everything.contains(&staff_token)
            && !everything.contains("sk_guess")
    );
    // `--since` filters by time.
    let (_, later, _) = cli(
        &data,
        &["audit", "export", "--since", "2999-01-01T00:00:00Z"],
    );
    assert!(later.trim().is_empty());

    // Tampering, each on its own copy: edit, delete, reorder, truncate.
    let cases = [
        (
            "edit",
            "UPDATE audit_log SET result = 'ok' WHERE action = 'document.read_denied'",
            "edited",
        ),
        ("delete", "DELETE FROM audit_log WHERE seq = 2", "removed"),
        (
            "reorder",
            "UPDATE audit_log SET seq = -1 WHERE seq = 2; UPDATE audit_log SET seq = 2 WHERE seq = 3; UPDATE audit_log SET seq = 3 WHERE seq = -1;",
            "entry 2",
        ),
        (
            "truncate",
            "DELETE FROM audit_log WHERE seq = (SELECT max(seq) FROM audit_log)",
            "removed from the end",
        ),
    ];
    for (name, sql, expect) in cases {
        let copy = copy_of(&data, &dir.path().join(name));
        tamper(&copy, sql);
        let (ok, _, stderr) = cli(&copy, &["audit", "verify"]);
        assert!(!ok, "{name}: verify passed on a tampered log");
        assert!(stderr.contains(expect), "{name}: {stderr}");
    }
    // Without dropping the triggers, SQL cannot change the log at all.
    let conn = rusqlite::Connection::open(data.join("sync.sqlite3")).unwrap();
    let refused = conn
        .execute("DELETE FROM audit_log WHERE seq = 1", [])
        .unwrap_err();
    assert!(refused.to_string().contains("append-only"), "{refused}");
}
