//! Property test: three tablets on one event scan, annul, edit shared
//! settings and now and then make a change the server refuses, while going
//! online and offline at random; then they reconnect in a random order.
//! Every tablet ends with the same document, the same counts and the same
//! duplicate list as the server and a fresh tablet, no scan a door answered
//! is lost, and each refused change is set aside on the tablet that made it
//! (and nowhere else).
//!
//! `CONVERGENCE_CASES=1000` runs a long search (the suite runs a few cases).

use std::time::Duration;

use automerge::ReadDoc;
use automerge::transaction::Transactable;
use client_core::event_model::rules::Direction;
use client_core::{ClientCore, DocumentId, SettingValue, SyncConfig, SyncHandle};
use proptest::prelude::*;
use serde_json::json;
use sync_server::auth::Role;
use sync_tests::accounts::Api;
use sync_tests::{InProcessServer, create_token, seed_event, test_config, wait_until};

const TABLETS: usize = 3;
const GUESTS: usize = 8;
const LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
enum Op {
    /// A ticket at the door, in or out.
    Scan {
        tablet: usize,
        guest: usize,
        exit: bool,
    },
    /// Undo the tablet's `nth` most recent scan of its own.
    Annul { tablet: usize, nth: usize },
    /// Change a shared setting.
    Setting { tablet: usize, sounds: bool },
    /// A change the server refuses: a record outside its id's bucket.
    Refused { tablet: usize },
    /// Take a tablet offline, or bring it back.
    Toggle { tablet: usize },
    /// Let the network move.
    Pause { millis: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..TABLETS, 0..GUESTS, prop::bool::weighted(0.2))
            .prop_map(|(tablet, guest, exit)| Op::Scan { tablet, guest, exit }),
        1 => (0..TABLETS, 0usize..3).prop_map(|(tablet, nth)| Op::Annul { tablet, nth }),
        1 => (0..TABLETS, any::<bool>()).prop_map(|(tablet, sounds)| Op::Setting { tablet, sounds }),
        1 => (0..TABLETS).prop_map(|tablet| Op::Refused { tablet }),
        2 => (0..TABLETS).prop_map(|tablet| Op::Toggle { tablet }),
        1 => (0u64..40).prop_map(|millis| Op::Pause { millis }),
    ]
}

struct Tablet {
    core: ClientCore,
    sync: Option<SyncHandle>,
    /// Scans this tablet recorded, newest last.
    scans: Vec<String>,
    refused: usize,
}

/// A record put in a bucket that is not its id's: validation refuses it.
fn refused_change(core: &ClientCore, event: DocumentId, n: usize) {
    let id = format!("forged-{n}");
    let right = client_core::event_model::document::bucket_of(&id);
    let wrong = if right == "00" { "01" } else { "00" };
    core.change(event, |tx| {
        let (_, scans) = tx.get(automerge::ROOT, "scans")?.expect("scans map");
        let (_, bucket) = tx.get(&scans, wrong)?.expect("bucket map");
        tx.put(&bucket, id.as_str(), "{}")
    })
    .unwrap();
}

fn duplicates(core: &ClientCore, event: DocumentId) -> Vec<(String, Option<String>)> {
    core.duplicates(event)
        .unwrap()
        .into_iter()
        .map(|d| (d.scan.scan_id, d.original.map(|o| o.scan_id)))
        .collect()
}

async fn run_case(ops: Vec<Op>, reconnect_order: Vec<usize>) {
    let dir = tempfile::tempdir().unwrap();
    let server_dir = dir.path().join("server");
    let token = create_token(&server_dir, Role::Admin).await;
    let mut server_config = test_config(&server_dir);
    server_config.http_requests_per_second_per_ip = 0;
    let server = InProcessServer::start(&server_config).await;
    let config = SyncConfig {
        min_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        ..SyncConfig::new(&server.url, &token)
    };

    let first = ClientCore::open(dir.path().join("t0.sqlite3")).unwrap();
    let event = seed_event(&first, "conf", "Conference", &[("main", "Main")], GUESTS);
    // Registered as an event: every write to it is validated.
    Api::new(&server.url)
        .post(
            "/api/documents",
            Some(&token),
            json!({ "document_id": event.to_string(), "kind": "event", "scope": "conf" }),
        )
        .await
        .ok();
    let settings = first.create_settings().unwrap();
    let mut tablets = vec![Tablet {
        sync: Some(first.start_sync(config.clone())),
        core: first,
        scans: Vec::new(),
        refused: 0,
    }];
    for i in 1..TABLETS {
        let core = ClientCore::open(dir.path().join(format!("t{i}.sqlite3"))).unwrap();
        core.find(event).unwrap();
        core.use_settings(settings).unwrap();
        tablets.push(Tablet {
            sync: Some(core.start_sync(config.clone())),
            core,
            scans: Vec::new(),
            refused: 0,
        });
    }
    for t in &tablets {
        wait_until(
            "every tablet has the event and the settings",
            LIMIT,
            || async {
                t.core
                    .counts(event, Some("main"))
                    .is_ok_and(|c| c.expected == GUESTS as u64)
                    && t.core.has_document(settings)
            },
        )
        .await;
    }

    let mut forged = 0;
    for op in ops {
        match op {
            Op::Scan {
                tablet,
                guest,
                exit,
            } => {
                let direction = if exit {
                    Direction::Exit
                } else {
                    Direction::Entry
                };
                let t = &mut tablets[tablet];
                let result = t
                    .core
                    .check_in(event, &format!("T-{guest:04}"), "main", direction)
                    .unwrap();
                t.scans.extend(result.scan_id);
            }
            Op::Annul { tablet, nth } => {
                let t = &tablets[tablet];
                if let Some(scan) = t.scans.iter().rev().nth(nth) {
                    // Inside the window: always allowed for one's own scan.
                    t.core.annul(event, scan).unwrap().unwrap();
                }
            }
            Op::Setting { tablet, sounds } => {
                tablets[tablet]
                    .core
                    .set_setting(settings, "sounds", SettingValue::Bool(sounds))
                    .unwrap();
            }
            Op::Refused { tablet } => {
                forged += 1;
                refused_change(&tablets[tablet].core, event, forged);
                tablets[tablet].refused += 1;
            }
            Op::Toggle { tablet } => {
                let t = &mut tablets[tablet];
                match t.sync.take() {
                    Some(handle) => handle.stop().await,
                    None => t.sync = Some(t.core.start_sync(config.clone())),
                }
            }
            Op::Pause { millis } => tokio::time::sleep(Duration::from_millis(millis)).await,
        }
    }

    for i in reconnect_order {
        let t = &mut tablets[i];
        if t.sync.is_none() {
            t.sync = Some(t.core.start_sync(config.clone()));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let scans_made: usize = tablets.iter().map(|t| t.scans.len()).sum();
    wait_until(
        "every tablet holds every scan and has nothing to upload",
        LIMIT,
        || async {
            let heads: Vec<_> = tablets
                .iter()
                .map(|t| t.core.heads(event).unwrap())
                .collect();
            heads.iter().all(|h| *h == heads[0])
                && tablets.iter().all(|t| {
                    t.core.sync_status().pending_changes == 0
                        && t.core
                            .scan_count(event)
                            .is_ok_and(|n| n == scans_made as u64)
                        && t.core.heads(settings).ok() == tablets[0].core.heads(settings).ok()
                })
        },
    )
    .await;

    let counts = tablets[0].core.counts(event, Some("main")).unwrap();
    let flagged = duplicates(&tablets[0].core, event);
    let sounds = tablets[0].core.settings(settings).unwrap();
    for (i, t) in tablets.iter().enumerate() {
        assert_eq!(
            t.core.counts(event, Some("main")).unwrap(),
            counts,
            "tablet {i}"
        );
        assert_eq!(duplicates(&t.core, event), flagged, "tablet {i}");
        assert_eq!(t.core.settings(settings).unwrap(), sounds, "tablet {i}");
        // Each refused change is set aside where it was made, and only there.
        assert_eq!(
            t.core.quarantined_changes(event).unwrap().len(),
            t.refused,
            "tablet {i}"
        );
        let doc = t.core.read_event(event).unwrap();
        assert!(doc.scans.iter().all(|s| !s.id.starts_with("forged-")));
    }
    // A fresh tablet gets the same from the server alone.
    let fresh = ClientCore::open(dir.path().join("fresh.sqlite3")).unwrap();
    let fresh_sync = fresh.start_sync(config.clone());
    fresh.find(event).unwrap();
    let expected = tablets[0].core.heads(event).unwrap();
    wait_until("a fresh tablet matches", LIMIT, || async {
        fresh.heads(event).is_ok_and(|h| h == expected)
    })
    .await;
    assert_eq!(fresh.counts(event, Some("main")).unwrap(), counts);
    assert_eq!(duplicates(&fresh, event), flagged);
    let document = fresh.read(event, |d| d.get_heads()).unwrap();
    assert_eq!(document, expected);

    fresh_sync.stop().await;
    for t in tablets {
        if let Some(sync) = t.sync {
            sync.stop().await;
        }
    }
    server.stop().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: sync_tests::convergence_cases(6), max_shrink_iters: 16, ..ProptestConfig::default() })]

    #[test]
    fn tablets_converge_on_scans_annulments_settings_and_refusals(
        ops in proptest::collection::vec(op(), 5..50),
        reconnect_order in Just((0..TABLETS).collect::<Vec<_>>()).prop_shuffle(),
    ) {
        sync_tests::block_on_two_workers(run_case(ops, reconnect_order));
    }
}
