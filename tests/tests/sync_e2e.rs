//! client-core replicas syncing through a real server on loopback.

use std::time::Duration;

use automerge::transaction::Transactable;
use automerge::{ROOT, ReadDoc};
use client_core::{ChangeOrigin, ClientCore, DocEvent, SyncConfig};
use sync_server::auth::Role;
use sync_tests::{InProcessServer, create_token, test_config, wait_until};

const LIMIT: Duration = Duration::from_secs(20);

fn value(core: &ClientCore, id: client_core::DocumentId, key: &str) -> Option<i64> {
    core.read(id, |d| {
        d.get(ROOT, key)
            .ok()
            .flatten()
            .and_then(|(v, _)| v.as_i64())
    })
    .ok()
    .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_on_one_client_reaches_another_and_survives_a_server_restart() {
    sync_tests::init_logging();
    let dir = tempfile::tempdir().unwrap();
    let token = create_token(&dir.path().join("server"), Role::Admin).await;
    let config = test_config(&dir.path().join("server"));
    let server = InProcessServer::start(&config).await;

    let a = ClientCore::open(dir.path().join("a.sqlite3")).unwrap();
    let b = ClientCore::open(dir.path().join("b.sqlite3")).unwrap();
    let sync_a = a.start_sync(SyncConfig::new(&server.url, &token));
    let sync_b = b.start_sync(SyncConfig::new(&server.url, &token));

    let id = a.create_document().unwrap();
    a.change(id, |tx| tx.put(ROOT, "count", 1)).unwrap();
    let mut events = b.subscribe();
    assert!(!b.find(id).unwrap());
    wait_until("b receives a's document", LIMIT, || async {
        value(&b, id, "count") == Some(1)
    })
    .await;
    // b was told, as a remote change.
    // The event goes out once the change is stored, a moment after the
    // document shows it: wait for it (bounded) instead of peeking.
    let saw_remote = tokio::time::timeout(LIMIT, async {
        loop {
            match events.recv().await {
                Ok(DocEvent::Changed {
                    document,
                    origin: ChangeOrigin::Remote,
                    ..
                }) if document == id => return true,
                // Missed events (a lagging receiver) are skipped: the one
                // wanted may still come. Only a closed channel ends the wait.
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return false,
            }
        }
    })
    .await
    .unwrap_or(false);
    assert!(saw_remote, "b got no remote change event");

    // The other direction, while both are connected.
    b.change(id, |tx| tx.put(ROOT, "from_b", 2)).unwrap();
    wait_until("a receives b's change", LIMIT, || async {
        value(&a, id, "from_b") == Some(2)
    })
    .await;
    wait_until("a's status shows everything confirmed", LIMIT, || async {
        let s = a.sync_status();
        s.connected && s.pending_changes == 0 && s.last_sync_at.is_some()
    })
    .await;

    // Restart the server on the same data directory and port.
    let addr = server.server.addr();
    server.stop().await;
    wait_until("a notices the server is gone", LIMIT, || async {
        !a.sync_status().connected
    })
    .await;
    a.change(id, |tx| tx.put(ROOT, "offline", 3)).unwrap();
    assert!(a.sync_status().pending_changes >= 1);
    let server = InProcessServer::restart_on(&config, addr).await;
    wait_until(
        "b receives a's offline change after the restart",
        LIMIT,
        || async { value(&b, id, "offline") == Some(3) },
    )
    .await;
    assert_eq!(a.heads(id).unwrap(), b.heads(id).unwrap());
    wait_until("a has nothing pending", LIMIT, || async {
        a.sync_status().pending_changes == 0
    })
    .await;

    sync_a.stop().await;
    sync_b.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_is_refused_and_local_work_waits() {
    let dir = tempfile::tempdir().unwrap();
    let _token = create_token(&dir.path().join("server"), Role::Admin).await;
    let server = InProcessServer::start(&test_config(&dir.path().join("server"))).await;
    let a = ClientCore::open(dir.path().join("a.sqlite3")).unwrap();
    let sync = a.start_sync(SyncConfig::new(&server.url, "sk_not-a-real-token"));
    let id = a.create_document().unwrap();
    a.change(id, |tx| tx.put(ROOT, "x", 1)).unwrap();
    wait_until("the refusal is reported", LIMIT, || async {
        a.sync_status()
            .last_error
            .is_some_and(|e| e.contains("401"))
    })
    .await;
    assert!(!a.sync_status().connected);
    assert_eq!(a.sync_status().pending_changes, 1);
    assert_eq!(
        a.sync_status().problem,
        Some(client_core::SyncProblem::NotSignedIn)
    );
    assert!(
        server
            .store
            .documents
            .list_documents()
            .await
            .unwrap()
            .is_empty()
    );
    sync.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_said_in_plain_words_with_the_next_try() {
    let dir = tempfile::tempdir().unwrap();
    // A loopback port with nothing listening on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let a = ClientCore::open(dir.path().join("a.sqlite3")).unwrap();
    let mut config = SyncConfig::new(format!("ws://127.0.0.1:{port}/sync"), "sk_any");
    config.min_backoff = Duration::from_secs(4);
    config.max_backoff = Duration::from_secs(8);
    let sync = a.start_sync(config);
    wait_until("the failure is reported", LIMIT, || async {
        a.sync_status().problem.is_some()
    })
    .await;
    let status = a.sync_status();
    assert_eq!(status.problem, Some(client_core::SyncProblem::Unreachable));
    assert_eq!(status.problem.unwrap().plain(), "Can't reach the server");
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("connect:")),
        "the raw error is kept for details: {status:?}"
    );
    wait_until("the next try is scheduled", LIMIT, || async {
        a.sync_status().next_retry_at.is_some()
    })
    .await;
    // The first wait after the failure is the smallest backoff with its
    // jitter (0.8-1.2x), counted from when the failure was recorded.
    let status = a.sync_status();
    let wait = status
        .next_retry_at
        .unwrap()
        .duration_since(status.last_error_at.unwrap())
        .unwrap();
    assert!(wait >= Duration::from_millis(3_200), "{wait:?}");
    assert!(wait <= Duration::from_millis(5_300), "{wait:?}");
    sync.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_documents_are_evicted_reloaded_and_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let token = create_token(&dir.path().join("server"), Role::Admin).await;
    let mut config = test_config(&dir.path().join("server"));
    config.evict_after_secs = 1;
    config.compact_after_chunks = 4;
    let server = InProcessServer::start(&config).await;

    let a = ClientCore::open(dir.path().join("a.sqlite3")).unwrap();
    let sync_a = a.start_sync(SyncConfig::new(&server.url, &token));
    let id = a.create_document().unwrap();
    for i in 0..20 {
        a.change(id, |tx| tx.put(ROOT, "n", i)).unwrap();
        // Separate round trips so the server writes separate chunks.
        wait_until("server confirms", LIMIT, || async {
            a.sync_status().pending_changes == 0
        })
        .await;
    }
    // Compaction keeps the chunk count bounded.
    let chunks = server.store.documents.chunk_count(id).await.unwrap();
    assert!(chunks < 4, "{chunks} chunks left after compaction");
    sync_a.stop().await;

    let loaded = || sync_server::metrics::install().render();
    wait_until("the document is evicted", LIMIT, || async {
        loaded()
            .lines()
            .any(|l| l.starts_with("sync_document_evictions_total") && !l.ends_with(" 0"))
    })
    .await;

    // A fresh client gets it back from the store.
    let b = ClientCore::open(dir.path().join("b.sqlite3")).unwrap();
    let sync_b = b.start_sync(SyncConfig::new(&server.url, &token));
    b.find(id).unwrap();
    wait_until("b loads the evicted document", LIMIT, || async {
        value(&b, id, "n") == Some(19)
    })
    .await;
    sync_b.stop().await;
    server.stop().await;
}

/// Puts `keys` map entries into a new document in one change and waits
/// until the server holds it.
async fn document_of_size(core: &ClientCore, keys: i64) -> client_core::DocumentId {
    let id = core.create_document().unwrap();
    core.change(id, |tx| {
        for i in 0..keys {
            tx.put(ROOT, format!("k{i}"), i)?;
        }
        Ok::<_, automerge::AutomergeError>(())
    })
    .unwrap();
    wait_until("the server holds the document", LIMIT, || async {
        core.sync_status().pending_changes == 0
    })
    .await;
    id
}

fn metric(scrape: &str, name: &str) -> Option<f64> {
    scrape
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_memory_budget_the_idle_document_leaves_and_the_one_in_use_stays() {
    let dir = tempfile::tempdir().unwrap();
    let token = create_token(&dir.path().join("server"), Role::Admin).await;
    let mut config = test_config(&dir.path().join("server"));
    // Without the budget nothing would leave for ten minutes.
    config.evict_after_secs = 600;
    config.document_memory_budget_mib = 1;
    let server = InProcessServer::start(&config).await;
    let scrape = || sync_server::metrics::install().render();

    // 2,000 operations are ~0.6 MiB by the estimate: one fits, two do not.
    let a = ClientCore::open(dir.path().join("a.sqlite3")).unwrap();
    let sync_a = a.start_sync(SyncConfig::new(&server.url, &token));
    let idle = document_of_size(&a, 2000).await;
    sync_a.stop().await;

    let b = ClientCore::open(dir.path().join("b.sqlite3")).unwrap();
    let sync_b = b.start_sync(SyncConfig::new(&server.url, &token));
    let in_use = document_of_size(&b, 2000).await;
    wait_until("the idle document leaves for the budget", LIMIT, || async {
        metric(
            &scrape(),
            "sync_document_evictions_total{reason=\"budget\"}",
        ) == Some(1.0)
    })
    .await;
    let now = scrape();
    assert_eq!(metric(&now, "sync_documents_loaded"), Some(1.0), "{now}");
    let estimate = metric(&now, "sync_documents_estimated_bytes").unwrap();
    assert!(
        estimate > 500_000.0 && estimate < 1_048_576.0,
        "only the document in use is counted: {estimate}"
    );

    // The one in use still syncs, and the one that left comes back from the store.
    b.change(in_use, |tx| tx.put(ROOT, "after", 1)).unwrap();
    wait_until("b's change is taken", LIMIT, || async {
        b.sync_status().pending_changes == 0
    })
    .await;
    let c = ClientCore::open(dir.path().join("c.sqlite3")).unwrap();
    let sync_c = c.start_sync(SyncConfig::new(&server.url, &token));
    c.find(idle).unwrap();
    wait_until("the evicted document is back", LIMIT, || async {
        value(&c, idle, "k1999") == Some(1999)
    })
    .await;
    sync_c.stop().await;
    sync_b.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_server_confirmed_is_remembered_across_a_restart_of_the_app() {
    let dir = tempfile::tempdir().unwrap();
    let token = create_token(&dir.path().join("server"), Role::Admin).await;
    let server = InProcessServer::start(&test_config(&dir.path().join("server"))).await;
    let path = dir.path().join("a.sqlite3");
    let id;
    {
        let a = ClientCore::open(&path).unwrap();
        let sync = a.start_sync(SyncConfig::new(&server.url, &token));
        id = a.create_document().unwrap();
        for i in 0..3 {
            a.change(id, |tx| tx.put(ROOT, "n", i)).unwrap();
        }
        wait_until("the server confirms", LIMIT, || async {
            a.sync_status().pending_changes == 0
        })
        .await;
        sync.stop().await;
    }
    // Offline now: only the stored confirmation can say nothing is pending.
    server.stop().await;
    let a = ClientCore::open(&path).unwrap();
    assert_eq!(a.sync_status().pending_changes, 0);
    assert!(a.sync_status().last_sync_at.is_some());
    a.change(id, |tx| tx.put(ROOT, "n", 9)).unwrap();
    assert_eq!(a.sync_status().pending_changes, 1);
}
