//! Malformed and hostile input: each bad connection gets an `error` message
//! and is closed, nothing it sent is stored, and a well-behaved client syncing
//! at the same time never notices.

use std::time::Duration;

use automerge::transaction::Transactable;
use automerge::{ROOT, ReadDoc};
use client_core::{ClientCore, DocumentId, SyncConfig};
use futures_util::SinkExt;
use sync_protocol::Message;
use sync_server::auth::Role;
use sync_tests::raw::{Socket, connect, join, joined, next_message, send};
use sync_tests::{InProcessServer, create_token, test_config, wait_until};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const LIMIT: Duration = Duration::from_secs(20);
const MAX_MESSAGE: usize = 64 * 1024;

/// The server must answer with an `error` (whose text contains `expect`) and then close.
async fn assert_error_then_close(socket: &mut Socket, expect: &str) {
    let mut reply = next_message(socket).await;
    // Sync traffic the server had already queued may come first.
    while let Some(Message::Sync { .. } | Message::DocUnavailable { .. }) = reply {
        reply = next_message(socket).await;
    }
    match reply {
        Some(Message::Error { message }) => {
            assert!(
                message.contains(expect),
                "error {message:?} does not mention {expect:?}"
            )
        }
        other => panic!("expected an error mentioning {expect:?}, got {other:?}"),
    }
    assert_eq!(
        next_message(socket).await,
        None,
        "connection stays open after the error"
    );
}

fn sync_to_new_doc(data: Vec<u8>) -> Message {
    Message::Sync {
        sender_id: "raw-peer".into(),
        target_id: "server".into(),
        document_id: DocumentId::random(),
        data,
    }
}

/// A real sync message with changes, whose change chunk has a flipped byte
/// (its checksum no longer matches).
fn sync_message_with_corrupt_change() -> Vec<u8> {
    use automerge::sync::{self, SyncDoc};
    let mut doc = automerge::Automerge::new();
    let mut tx = doc.transaction();
    tx.put(ROOT, "x", "y").unwrap();
    tx.commit();
    let mut chunk = doc.get_last_local_change().unwrap().raw_bytes().to_vec();
    let middle = chunk.len() / 2;
    chunk[middle] ^= 0xff;
    let mut state = sync::State::new();
    let mut message = doc.generate_sync_message(&mut state).unwrap();
    message.changes = vec![chunk].into();
    message.encode()
}

/// A first sync message whose `have` holds a bloom filter with an entry
/// but no bits per entry.
fn sync_message_with_unusable_bloom() -> Vec<u8> {
    use automerge::sync::{self, BloomFilter, Have, SyncDoc};
    let mut message = automerge::Automerge::new()
        .generate_sync_message(&mut sync::State::new())
        .unwrap();
    message.have = vec![Have {
        last_sync: Vec::new(),
        bloom: BloomFilter::try_from([1u8, 0, 7].as_slice()).unwrap(),
    }];
    message.encode()
}

fn raw_cbor(value: ciborium::Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(&value, &mut out).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_per_connection_and_nothing_is_stored() {
    sync_tests::init_logging();
    let dir = tempfile::tempdir().unwrap();
    let server_dir = dir.path().join("server");
    let token = create_token(&server_dir, Role::Admin).await;
    let mut config = test_config(&server_dir);
    config.max_message_bytes = MAX_MESSAGE;
    let server = InProcessServer::start(&config).await;
    let url = server.url.clone();

    // A well-behaved pair of clients syncing throughout.
    let a = ClientCore::open(dir.path().join("a.sqlite3")).unwrap();
    let b = ClientCore::open(dir.path().join("b.sqlite3")).unwrap();
    let sync_a = a.start_sync(SyncConfig::new(&url, &token));
    let sync_b = b.start_sync(SyncConfig::new(&url, &token));
    let good = a.create_document().unwrap();
    a.change(good, |tx| tx.put(ROOT, "n", 0)).unwrap();
    b.find(good).unwrap();
    let b_value = |b: &ClientCore| {
        b.read(good, |d| {
            d.get(ROOT, "n")
                .ok()
                .flatten()
                .and_then(|(v, _)| v.as_i64())
        })
        .ok()
        .flatten()
    };
    wait_until("b gets the good document", LIMIT, || async {
        b_value(&b) == Some(0)
    })
    .await;

    // 1. Unsupported protocol version in join.
    let mut s = connect(&url, &token).await;
    send(&mut s, &join(&["2"])).await;
    assert_error_then_close(&mut s, "unsupported protocol version").await;

    // 2. Malformed CBOR after the handshake.
    let mut s = joined(&url, &token).await;
    s.send(WsMessage::Binary(vec![0xff, 0xfe, 0x00].into()))
        .await
        .unwrap();
    assert_error_then_close(&mut s, "not valid CBOR").await;

    // 3. Unknown message type.
    let mut s = joined(&url, &token).await;
    let unknown = raw_cbor(ciborium::Value::Map(vec![
        (
            ciborium::Value::Text("type".into()),
            ciborium::Value::Text("gossip".into()),
        ),
        (
            ciborium::Value::Text("senderId".into()),
            ciborium::Value::Text("raw-peer".into()),
        ),
    ]));
    s.send(WsMessage::Binary(unknown.into())).await.unwrap();
    assert_error_then_close(&mut s, "unknown message type `gossip`").await;

    // 4a. A sync payload that is not an automerge sync message at all.
    let mut s = joined(&url, &token).await;
    send(&mut s, &sync_to_new_doc(vec![0x99, 1, 2, 3])).await;
    assert_error_then_close(&mut s, "not valid automerge sync data").await;

    // 4b. A well-formed sync message carrying a change whose bytes are corrupt.
    let mut s = joined(&url, &token).await;
    send(&mut s, &sync_to_new_doc(sync_message_with_corrupt_change())).await;
    assert_error_then_close(&mut s, "sync message").await;

    // 4c. The document the good clients share, sent what fuzzing found
    // automerge 0.12 cannot take: a bloom filter of entries without bits
    // (it would divide by zero answering), then a change its parser panics
    // on. Each is refused; the document lives on for everyone else.
    let to_good = |data: Vec<u8>| Message::Sync {
        sender_id: "raw-peer".into(),
        target_id: "server".into(),
        document_id: good,
        data,
    };
    let mut s = joined(&url, &token).await;
    send(&mut s, &to_good(sync_message_with_unusable_bloom())).await;
    assert_error_then_close(&mut s, "bloom filter").await;
    let mut s = joined(&url, &token).await;
    let breaks_automerge =
        include_bytes!("../../fuzz/corpus/doc_ingest/regression-4aeda4989989")[1..].to_vec();
    send(&mut s, &to_good(breaks_automerge)).await;
    assert_error_then_close(&mut s, "automerge failed on this input").await;

    // 5. A frame over the configured size limit.
    let mut s = joined(&url, &token).await;
    let oversized = Message::Sync {
        sender_id: "raw-peer".into(),
        target_id: "server".into(),
        document_id: DocumentId::random(),
        data: vec![0u8; MAX_MESSAGE + 1024],
    };
    s.send(WsMessage::Binary(oversized.encode().into()))
        .await
        .unwrap();
    assert_error_then_close(&mut s, "too large").await;

    // 6. Text frames are not part of the protocol.
    let mut s = joined(&url, &token).await;
    s.send(WsMessage::Text("{\"type\":\"join\"}".into()))
        .await
        .unwrap();
    assert_error_then_close(&mut s, "text frames").await;

    // 7. Anything but join first.
    let mut s = connect(&url, &token).await;
    send(
        &mut s,
        &Message::Leave {
            sender_id: "raw-peer".into(),
        },
    )
    .await;
    assert_error_then_close(&mut s, "expected `join`").await;

    // The good clients never noticed.
    a.change(good, |tx| tx.put(ROOT, "n", 1)).unwrap();
    wait_until("b still gets a's changes", LIMIT, || async {
        b_value(&b) == Some(1)
    })
    .await;
    assert!(a.sync_status().connected && b.sync_status().connected);
    assert_eq!(a.sync_status().last_error, None);

    // Nothing from the bad connections was stored.
    assert_eq!(
        server.store.documents.list_documents().await.unwrap(),
        vec![good]
    );
    let metrics = sync_server::metrics::install().render();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("sync_protocol_errors_total")),
        "{metrics}"
    );

    sync_a.stop().await;
    sync_b.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upgrade_needs_a_valid_token() {
    let dir = tempfile::tempdir().unwrap();
    let server_dir = dir.path().join("server");
    let token = create_token(&server_dir, Role::Admin).await;
    let server = InProcessServer::start(&test_config(&server_dir)).await;
    let status = |result: Result<_, tokio_tungstenite::tungstenite::Error>| match result {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Ok(_) => 101,
        Err(other) => panic!("unexpected {other}"),
    };
    assert_eq!(
        status(tokio_tungstenite::connect_async(server.url.as_str()).await),
        401
    );
    let bad = format!("{}?token=sk_nope", server.url);
    assert_eq!(
        status(tokio_tungstenite::connect_async(bad.as_str()).await),
        401
    );
    let good = format!("{}?token={token}", server.url);
    assert_eq!(
        status(tokio_tungstenite::connect_async(good.as_str()).await),
        101
    );
    server.stop().await;
}
