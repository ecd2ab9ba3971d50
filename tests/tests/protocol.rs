//! Protocol behaviour seen from bare peers: ephemeral messages are relayed to
//! the other peers of a document with the sender kept; a principal that may
//! not read a document gets `doc-unavailable` as if it did not exist; advisory
//! messages are accepted without effect.

use std::time::Duration;

use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{Automerge, ROOT};
use client_core::{ClientCore, DocEvent, SyncConfig};
use sync_protocol::{DocumentId, HeadsInfo, Message};
use sync_server::auth::Role;
use sync_tests::raw::{joined_as, next_message, send};
use sync_tests::{InProcessServer, create_token, test_config, wait_until};

const LIMIT: Duration = Duration::from_secs(20);

/// A document with content, synced to the server by a bare peer; returns its id.
async fn seed(url: &str, token: &str) -> DocumentId {
    let (mut socket, server) = joined_as(url, token, "seeder").await;
    let id = DocumentId::random();
    let mut doc = Automerge::new();
    let mut tx = doc.transaction();
    tx.put(ROOT, "seeded", true).unwrap();
    tx.commit();
    let mut state = sync::State::new();
    let heads = doc.get_heads();
    while state.their_heads.as_ref() != Some(&heads) {
        if let Some(m) = doc.generate_sync_message(&mut state) {
            let msg = Message::Sync {
                sender_id: "seeder".into(),
                target_id: server.clone(),
                document_id: id,
                data: m.encode(),
            };
            send(&mut socket, &msg).await;
        }
        match next_message(&mut socket).await {
            Some(Message::Sync { data, .. }) => doc
                .receive_sync_message(&mut state, sync::Message::decode(&data).unwrap())
                .unwrap(),
            other => panic!("unexpected {other:?}"),
        }
    }
    id
}

fn request(peer: &str, server: &str, id: DocumentId) -> Message {
    let mut state = sync::State::new();
    let data = Automerge::new()
        .generate_sync_message(&mut state)
        .unwrap()
        .encode();
    Message::Request {
        sender_id: peer.into(),
        target_id: server.into(),
        document_id: id,
        data,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_messages_reach_the_other_peers_of_the_document() {
    let dir = tempfile::tempdir().unwrap();
    let token = create_token(dir.path(), Role::Admin).await;
    let server = InProcessServer::start(&test_config(dir.path())).await;
    let id = seed(&server.url, &token).await;

    let (mut alice, server_id) = joined_as(&server.url, &token, "alice").await;
    let (mut bob, _) = joined_as(&server.url, &token, "bob").await;
    for (socket, name) in [(&mut alice, "alice"), (&mut bob, "bob")] {
        send(socket, &request(name, &server_id, id)).await;
        assert!(matches!(
            next_message(socket).await,
            Some(Message::Sync { .. })
        ));
    }
    // Advisory messages are accepted and change nothing.
    send(
        &mut alice,
        &Message::RemoteHeadsChanged {
            sender_id: "alice".into(),
            target_id: server_id.clone(),
            document_id: id,
            new_heads: vec![(
                "storage".into(),
                HeadsInfo {
                    heads: vec![],
                    timestamp: 1,
                },
            )],
        },
    )
    .await;
    send(
        &mut alice,
        &Message::RemoteSubscriptionChange {
            sender_id: "alice".into(),
            target_id: server_id.clone(),
            add: vec!["storage".into()],
            remove: vec![],
        },
    )
    .await;
    send(
        &mut alice,
        &Message::Ephemeral {
            sender_id: "alice".into(),
            target_id: server_id.clone(),
            count: 1,
            session_id: "session-a".into(),
            document_id: id,
            data: b"cursor at 3".to_vec(),
        },
    )
    .await;
    loop {
        match next_message(&mut bob).await {
            Some(Message::Ephemeral {
                sender_id,
                target_id,
                data,
                session_id,
                document_id,
                ..
            }) => {
                assert_eq!(sender_id, "alice");
                assert_eq!(target_id, "bob");
                assert_eq!(session_id, "session-a");
                assert_eq!(document_id, id);
                assert_eq!(data, b"cursor at 3");
                break;
            }
            Some(Message::Sync { .. }) => continue,
            other => panic!("bob expected the ephemeral message, got {other:?}"),
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_that_may_not_read_gets_doc_unavailable_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let admin = create_token(dir.path(), Role::Admin).await;
    let staff = create_token(dir.path(), Role::Staff).await;
    let server = InProcessServer::start(&test_config(dir.path())).await;
    let id = seed(&server.url, &admin).await;

    // A bare staff peer asking for an existing generic document.
    let (mut socket, server_id) = joined_as(&server.url, &staff, "staff-peer").await;
    send(&mut socket, &request("staff-peer", &server_id, id)).await;
    assert_eq!(
        next_message(&mut socket).await,
        Some(Message::DocUnavailable {
            sender_id: server_id.clone(),
            target_id: "staff-peer".into(),
            document_id: id,
        })
    );
    // Exactly as for a document that does not exist at all.
    let missing = DocumentId::random();
    send(&mut socket, &request("staff-peer", &server_id, missing)).await;
    assert!(
        matches!(next_message(&mut socket).await, Some(Message::DocUnavailable { document_id, .. }) if document_id == missing)
    );

    // client-core with a staff token: creating a generic document is refused
    // and nothing reaches the store; the change is set aside, not lost.
    let core = ClientCore::open(dir.path().join("staff.sqlite3")).unwrap();
    let mut events = core.subscribe();
    let sync = core.start_sync(SyncConfig::new(&server.url, &staff));
    let mine = core.create_document().unwrap();
    core.change(mine, |tx| tx.put(ROOT, "x", 1)).unwrap();
    wait_until(
        "client-core is told the document is unavailable",
        LIMIT,
        || {
            let mut seen = false;
            while let Ok(event) = events.try_recv() {
                seen |= event == DocEvent::Unavailable { document: mine };
            }
            async move { seen }
        },
    )
    .await;
    wait_until("the refused change is set aside", LIMIT, || async {
        core.quarantined_changes(mine).is_ok_and(|q| q.len() == 1)
    })
    .await;
    assert_eq!(core.sync_status().pending_changes, 0);
    assert_eq!(
        server.store.documents.list_documents().await.unwrap(),
        vec![id]
    );
    sync.stop().await;
    server.stop().await;
}
