//! Property test: three client-core replicas edit one document while going
//! online and offline at random, then reconnect in a random order; all end
//! with identical heads and identical contents, and the server agrees.
//!
//! `CONVERGENCE_CASES=1000` runs a long search (the suite runs 16 cases);
//! `event_convergence.rs` does the same for check-in.

use std::time::Duration;

use automerge::transaction::Transactable;
use automerge::{ObjType, ROOT, ReadDoc};
use client_core::{ClientCore, DocumentId, SyncConfig, SyncHandle};
use proptest::prelude::*;
use sync_server::auth::Role;
use sync_tests::{InProcessServer, create_token, test_config, wait_until};

const REPLICAS: usize = 3;
const LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
enum Op {
    /// Put `value` at map key `key` on a replica.
    Put { replica: usize, key: u8, value: i64 },
    /// Append to the shared list on a replica.
    Append { replica: usize, value: i64 },
    /// Take a replica offline, or bring it back.
    Toggle { replica: usize },
    /// Let the network move.
    Pause { millis: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..REPLICAS, 0u8..6, any::<i64>()).prop_map(|(replica, key, value)| Op::Put { replica, key, value }),
        2 => (0..REPLICAS, any::<i64>()).prop_map(|(replica, value)| Op::Append { replica, value }),
        2 => (0..REPLICAS).prop_map(|replica| Op::Toggle { replica }),
        1 => (0u64..30).prop_map(|millis| Op::Pause { millis }),
    ]
}

struct Replica {
    core: ClientCore,
    sync: Option<SyncHandle>,
}

/// Everything a replica shows: map keys and the list, as text.
fn contents(core: &ClientCore, id: DocumentId) -> String {
    core.read(id, |d| {
        serde_json::to_string(&automerge::AutoSerde::from(d)).unwrap()
    })
    .unwrap_or_default()
}

async fn run_case(ops: Vec<Op>, reconnect_order: Vec<usize>) {
    let dir = tempfile::tempdir().unwrap();
    let server_dir = dir.path().join("server");
    let token = create_token(&server_dir, Role::Admin).await;
    // Every other case with rounds paced per peer (`pace_unanswered_ms`):
    // held peers must still converge.
    let mut server_config = test_config(&server_dir);
    if reconnect_order.first().is_some_and(|first| first % 2 == 1) {
        server_config.pace_unanswered_ms = 50;
    }
    let server = InProcessServer::start(&server_config).await;
    let config = SyncConfig {
        min_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        ..SyncConfig::new(&server.url, &token)
    };

    let mut replicas: Vec<Replica> = (0..REPLICAS)
        .map(|i| {
            let core = ClientCore::open(dir.path().join(format!("r{i}.sqlite3"))).unwrap();
            let sync = Some(core.start_sync(config.clone()));
            Replica { core, sync }
        })
        .collect();
    let id = replicas[0].core.create_document().unwrap();
    replicas[0]
        .core
        .change(id, |tx| {
            tx.put_object(ROOT, "list", ObjType::List).map(|_| ())
        })
        .unwrap();
    for r in &replicas[1..] {
        r.core.find(id).unwrap();
    }
    for r in &replicas {
        wait_until("every replica has the document", LIMIT, || async {
            r.core.has_document(id)
        })
        .await;
    }

    for op in ops {
        match op {
            Op::Put {
                replica,
                key,
                value,
            } => {
                replicas[replica]
                    .core
                    .change(id, |tx| tx.put(ROOT, format!("k{key}"), value))
                    .unwrap();
            }
            Op::Append { replica, value } => {
                replicas[replica]
                    .core
                    .change(id, |tx| {
                        let (_, list) = tx.get(ROOT, "list")?.expect("list exists");
                        let len = tx.length(&list);
                        tx.insert(&list, len, value)
                    })
                    .unwrap();
            }
            Op::Toggle { replica } => {
                let r = &mut replicas[replica];
                match r.sync.take() {
                    Some(handle) => handle.stop().await,
                    None => r.sync = Some(r.core.start_sync(config.clone())),
                }
            }
            Op::Pause { millis } => tokio::time::sleep(Duration::from_millis(millis)).await,
        }
    }

    // Everyone comes back, in the given order.
    for i in reconnect_order {
        let r = &mut replicas[i];
        if r.sync.is_none() {
            r.sync = Some(r.core.start_sync(config.clone()));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let converged = || {
        let heads: Vec<_> = replicas.iter().map(|r| r.core.heads(id).unwrap()).collect();
        heads.iter().all(|h| *h == heads[0])
            && replicas
                .iter()
                .all(|r| r.core.sync_status().pending_changes == 0)
    };
    let deadline = std::time::Instant::now() + LIMIT;
    while !converged() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if !converged() {
        let server_heads = server
            .store
            .documents
            .load_document(id)
            .await
            .unwrap()
            .map(|s| {
                let core =
                    sync_server::doc_core::DocumentCore::load(s.snapshot.as_deref(), &s.chunks)
                        .unwrap();
                core.heads()
            });
        let report: Vec<String> = replicas
            .iter()
            .enumerate()
            .map(|(i, r)| {
                format!(
                    "replica {i}: heads {:?} status {:?}",
                    r.core.heads(id).unwrap(),
                    r.core.sync_status()
                )
            })
            .collect();
        panic!(
            "replicas did not converge; server has {server_heads:?}\n{}",
            report.join("\n")
        );
    }
    let first = contents(&replicas[0].core, id);
    for r in &replicas[1..] {
        assert_eq!(contents(&r.core, id), first);
    }
    // A fresh replica gets the same from the server alone.
    let fresh = ClientCore::open(dir.path().join("fresh.sqlite3")).unwrap();
    let fresh_sync = fresh.start_sync(config.clone());
    fresh.find(id).unwrap();
    let expected = replicas[0].core.heads(id).unwrap();
    wait_until("a fresh replica matches", LIMIT, || async {
        fresh.heads(id).map(|h| h == expected).unwrap_or(false)
    })
    .await;
    assert_eq!(contents(&fresh, id), first);

    fresh_sync.stop().await;
    for r in replicas {
        if let Some(sync) = r.sync {
            sync.stop().await;
        }
    }
    server.stop().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: sync_tests::convergence_cases(16), max_shrink_iters: 32, ..ProptestConfig::default() })]

    #[test]
    fn replicas_converge_whatever_the_edits_and_connectivity(
        ops in proptest::collection::vec(op(), 5..60),
        reconnect_order in Just((0..REPLICAS).collect::<Vec<_>>()).prop_shuffle(),
    ) {
        sync_tests::block_on_two_workers(run_case(ops, reconnect_order));
    }
}
