//! `sync-server backup` while serving, and `restore` after a wipe: the same
//! documents come back; a running server, a newer store and a corrupt backup
//! are refused.

use std::time::Duration;

use automerge::transaction::Transactable;
use automerge::{ROOT, ReadDoc};
use client_core::{ClientCore, SyncConfig};
use sync_server::auth::Role;
use sync_tests::{ServerProcess, create_token, server_command, wait_until};

const LIMIT: Duration = Duration::from_secs(20);

fn cli(data_dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = server_command(data_dir, args);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_while_serving_then_wipe_and_restore_gives_the_same_documents() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backup_file = dir.path().join("backup.sqlite3");
    let backup = backup_file.to_str().unwrap();
    let token = create_token(&data, Role::Admin).await;
    let server = ServerProcess::start(&data);
    let addr = server.addr.clone();

    let a = ClientCore::open(dir.path().join("a.sqlite3")).unwrap();
    let sync_a = a.start_sync(SyncConfig {
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(300),
        ..SyncConfig::new(&server.url, &token)
    });
    let kept = a.create_document().unwrap();
    for i in 0..100 {
        a.change(kept, |tx| tx.put(ROOT, format!("k{i}"), i))
            .unwrap();
    }
    wait_until("the server confirms", LIMIT, || async {
        a.sync_status().pending_changes == 0
    })
    .await;
    let kept_heads = a.heads(kept).unwrap();

    // Back up while another document is being written.
    let busy = a.create_document().unwrap();
    let writer = {
        let a = a.clone();
        tokio::spawn(async move {
            for i in 0..300 {
                a.change(busy, |tx| tx.put(ROOT, "n", i)).unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (ok, out) = cli(&data, &["backup", "--to", backup]);
    assert!(ok, "{out}");
    assert!(out.contains("backed up"), "{out}");
    writer.await.unwrap();

    // A running server's store is not replaced.
    let (ok, out) = cli(&data, &["restore", "--from", backup]);
    assert!(!ok && out.contains("server is running"), "{out}");

    // Wipe, restore, serve again: the confirmed document is back as it was.
    sync_a.stop().await;
    server.kill9();
    std::fs::remove_dir_all(&data).unwrap();
    let (ok, out) = cli(&data, &["restore", "--from", backup]);
    assert!(ok, "{out}");
    let server = ServerProcess::start_on(&data, &addr);
    let b = ClientCore::open(dir.path().join("b.sqlite3")).unwrap();
    let sync_b = b.start_sync(SyncConfig::new(&server.url, &token));
    b.find(kept).unwrap();
    wait_until("the restored document is served", LIMIT, || async {
        b.heads(kept).map(|h| h == kept_heads).unwrap_or(false)
    })
    .await;
    assert_eq!(b.read(kept, |d| d.keys(ROOT).count()).unwrap(), 100);

    // The store moves on; the older backup no longer replaces it without --force.
    b.change(kept, |tx| tx.put(ROOT, "after", 1)).unwrap();
    wait_until("the new change is confirmed", LIMIT, || async {
        b.sync_status().pending_changes == 0
    })
    .await;
    sync_b.stop().await;
    assert!(server.terminate().success());
    let (ok, out) = cli(&data, &["restore", "--from", backup]);
    assert!(!ok && out.contains("newer than the backup"), "{out}");
    let (ok, out) = cli(&data, &["restore", "--from", backup, "--force"]);
    assert!(ok, "{out}");

    // A damaged backup is refused and the store is left alone.
    let mut bytes = std::fs::read(&backup_file).unwrap();
    let len = bytes.len();
    for b in &mut bytes[len / 2..len / 2 + 4096] {
        *b ^= 0x5a;
    }
    let damaged = dir.path().join("damaged.sqlite3");
    std::fs::write(&damaged, bytes).unwrap();
    let (ok, out) = cli(
        &data,
        &["restore", "--from", damaged.to_str().unwrap(), "--force"],
    );
    assert!(!ok && out.contains("not a valid backup"), "{out}");
    // So is a backup whose audit log was edited.
    let edited = dir.path().join("edited.sqlite3");
    std::fs::copy(&backup_file, &edited).unwrap();
    {
        let conn = rusqlite::Connection::open(&edited).unwrap();
        conn.execute_batch(
            "DROP TRIGGER audit_log_no_update; UPDATE audit_log SET result = 'denied' WHERE seq = 1;",
        )
        .unwrap();
    }
    let (ok, out) = cli(
        &data,
        &["restore", "--from", edited.to_str().unwrap(), "--force"],
    );
    assert!(!ok && out.contains("audit chain broken"), "{out}");
    let (ok, out) = cli(&data, &["migrate", "verify"]);
    assert!(ok, "{out}");
    let (ok, out) = cli(&data, &["audit", "verify"]);
    assert!(ok, "{out}");
}
