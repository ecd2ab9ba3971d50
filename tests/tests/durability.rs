//! Durability with real processes: kill -9 of the server after it confirmed
//! changes, kill -9 of a client between writes, and a clean SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use automerge::transaction::Transactable;
use automerge::{ROOT, ReadDoc};
use client_core::{ClientCore, DocumentId, SyncConfig};
use sync_server::auth::Role;
use sync_tests::{ServerProcess, create_token, wait_until, workspace_binary};

const LIMIT: Duration = Duration::from_secs(30);

fn count_keys(core: &ClientCore, id: DocumentId) -> usize {
    core.read(id, |d| d.keys(ROOT).count()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_the_server_confirmed_survive_kill_9() {
    const N: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let server_dir = dir.path().join("server");
    let token = create_token(&server_dir, Role::Admin).await;
    let server = ServerProcess::start(&server_dir);

    let a = ClientCore::open(dir.path().join("a.sqlite3")).unwrap();
    let sync_a = a.start_sync(SyncConfig::new(&server.url, &token));
    let id = a.create_document().unwrap();
    for i in 0..N {
        a.change(id, |tx| tx.put(ROOT, format!("k{i}"), i as i64))
            .unwrap();
        if i % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // The server has answered with heads that include all N changes.
    wait_until("the server confirms all changes", LIMIT, || async {
        let s = a.sync_status();
        s.connected && s.pending_changes == 0
    })
    .await;
    sync_a.stop().await;
    server.kill9();

    let server = ServerProcess::start(&server_dir);
    let b = ClientCore::open(dir.path().join("b.sqlite3")).unwrap();
    let sync_b = b.start_sync(SyncConfig::new(&server.url, &token));
    b.find(id).unwrap();
    wait_until(
        "a fresh client gets every confirmed change",
        LIMIT,
        || async { count_keys(&b, id) == N },
    )
    .await;
    assert_eq!(b.heads(id).unwrap(), a.heads(id).unwrap());
    sync_b.stop().await;

    // SIGTERM shuts down cleanly (exit 0) and loses nothing either.
    let status = server.terminate();
    assert!(
        status.success(),
        "sync-server exited with {status} on SIGTERM"
    );
    let server = ServerProcess::start(&server_dir);
    let c = ClientCore::open(dir.path().join("c.sqlite3")).unwrap();
    let sync_c = c.start_sync(SyncConfig::new(&server.url, &token));
    c.find(id).unwrap();
    wait_until(
        "everything is there after a clean restart",
        LIMIT,
        || async { count_keys(&c, id) == N },
    )
    .await;
    sync_c.stop().await;
}

#[test]
fn a_client_killed_between_writes_keeps_everything_it_committed() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("tablet.sqlite3");
    let mut child = Command::new(workspace_binary("client-writer"))
        .arg(&store)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let doc: DocumentId = lines
        .next()
        .unwrap()
        .unwrap()
        .strip_prefix("document ")
        .unwrap()
        .parse()
        .unwrap();
    let mut last_committed = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        let n: u64 = line.strip_prefix("committed ").unwrap().parse().unwrap();
        last_committed = Some(n);
        if n >= 300 {
            break;
        }
    }
    // SIGKILL while it is still writing.
    child.kill().unwrap();
    child.wait().unwrap();
    let last = last_committed.expect("the writer committed something");

    let core = ClientCore::open(&store).expect("the store opens after kill -9");
    let present = core
        .read(doc, |d| {
            (0..=last)
                .filter(|i| d.get(ROOT, format!("n{i}")).unwrap().is_some())
                .count()
        })
        .unwrap();
    assert_eq!(
        present as u64,
        last + 1,
        "changes reported committed are missing"
    );
    // And the store still takes writes.
    core.change(doc, |tx| tx.put(ROOT, "after", 1)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_stream_loses_nothing_once_clients_reconnect() {
    const N: usize = 400;
    let dir = tempfile::tempdir().unwrap();
    let server_dir = dir.path().join("server");
    let token = create_token(&server_dir, Role::Admin).await;
    let server = ServerProcess::start(&server_dir);
    let addr = server.addr.clone();

    let a = ClientCore::open(dir.path().join("a.sqlite3")).unwrap();
    let config = SyncConfig {
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(300),
        ..SyncConfig::new(&server.url, &token)
    };
    let sync_a = a.start_sync(config.clone());
    let id = a.create_document().unwrap();
    let writer = {
        let a = a.clone();
        tokio::spawn(async move {
            for i in 0..N {
                a.change(id, |tx| tx.put(ROOT, format!("k{i}"), i as i64))
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    // Kill the server while changes are streaming in.
    wait_until("some changes reach the server", LIMIT, || async {
        a.sync_status().last_sync_at.is_some() || count_keys(&a, id) > N / 4
    })
    .await;
    server.kill9();
    writer.await.unwrap();

    // Same address again; the client reconnects by itself.
    let server = ServerProcess::start_on(&server_dir, &addr);
    wait_until(
        "every change is confirmed after the restart",
        LIMIT,
        || async {
            let s = a.sync_status();
            s.connected && s.pending_changes == 0
        },
    )
    .await;
    let b = ClientCore::open(dir.path().join("b.sqlite3")).unwrap();
    let sync_b = b.start_sync(SyncConfig::new(&server.url, &token));
    b.find(id).unwrap();
    wait_until("a fresh client gets all of them", LIMIT, || async {
        count_keys(&b, id) == N
    })
    .await;
    sync_a.stop().await;
    sync_b.stop().await;
}
