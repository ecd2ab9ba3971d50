//! Interop with `samod`, an independent Rust implementation of automerge-repo:
//! it syncs documents with our server and, through it, with client-core, in
//! both directions and across a server restart.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use automerge::transaction::Transactable;
use automerge::{Automerge, ROOT, ReadDoc};
use client_core::{ClientCore, SyncConfig};
use futures_util::future::BoxFuture;
use futures_util::{SinkExt, StreamExt};
use samod::{BackoffConfig, DialError, Dialer, Repo, Transport};
use sync_server::auth::Role;
use sync_tests::{InProcessServer, create_token, test_config, wait_until};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const LIMIT: Duration = Duration::from_secs(20);

/// Dials our server over a websocket with a bearer token.
struct WebsocketDialer {
    url: String,
    token: String,
}

impl Dialer for WebsocketDialer {
    type Error = Infallible;

    fn url(&self) -> url::Url {
        self.url.parse().unwrap()
    }

    fn connect(&self) -> BoxFuture<'static, Result<Transport, DialError<Infallible>>> {
        let url = self.url.clone();
        let token = self.token.clone();
        Box::pin(async move {
            let mut request = url.into_client_request().unwrap();
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            let (socket, _) = tokio_tungstenite::connect_async(request)
                .await
                .map_err(|e| DialError::TransientFailure(Box::new(e)))?;
            let (sink, stream) = socket.split();
            let stream = stream.filter_map(|frame| async move {
                match frame {
                    Ok(WsMessage::Binary(bytes)) => Some(Ok(bytes.to_vec())),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                }
            });
            let sink = sink.with(|bytes: Vec<u8>| async move {
                Ok::<_, tokio_tungstenite::tungstenite::Error>(WsMessage::Binary(bytes.into()))
            });
            Ok(Transport::new(Box::pin(stream), Box::pin(sink)))
        })
    }
}

async fn samod_repo(url: &str, token: &str) -> Repo {
    let repo = Repo::build_tokio().load().await;
    let dialer = repo
        .dial(
            BackoffConfig {
                initial_delay: Duration::from_millis(50),
                max_delay: Duration::from_millis(500),
                max_retries: None,
            },
            Arc::new(WebsocketDialer {
                url: url.to_string(),
                token: token.to_string(),
            }),
        )
        .unwrap();
    tokio::time::timeout(LIMIT, dialer.established())
        .await
        .expect("samod connects in time")
        .expect("samod handshake with our server");
    repo
}

fn core_value(core: &ClientCore, id: client_core::DocumentId, key: &str) -> Option<String> {
    core.read(id, |d| {
        d.get(ROOT, key)
            .ok()
            .flatten()
            .and_then(|(v, _)| v.into_string().ok())
    })
    .ok()
    .flatten()
}

fn samod_value(doc: &samod::DocHandle, key: &str) -> Option<String> {
    doc.with_document(|d| {
        d.get(ROOT, key)
            .ok()
            .flatten()
            .and_then(|(v, _)| v.into_string().ok())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samod_and_client_core_sync_both_ways_through_our_server_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server_dir = dir.path().join("server");
    let token = create_token(&server_dir, Role::Admin).await;
    let config = test_config(&server_dir);
    let server = InProcessServer::start(&config).await;
    let samod = samod_repo(&server.url, &token).await;

    // samod -> server -> client-core
    let mut initial = Automerge::new();
    initial
        .transact::<_, _, automerge::AutomergeError>(|tx| {
            tx.put(ROOT, "from", "samod")?;
            Ok(())
        })
        .unwrap();
    let samod_doc = samod.create(initial).await.unwrap();
    let samod_doc_id: client_core::DocumentId =
        samod_doc.document_id().to_string().parse().unwrap();
    wait_until("our server stores samod's document", LIMIT, || async {
        server
            .store
            .documents
            .list_documents()
            .await
            .unwrap()
            .contains(&samod_doc_id)
    })
    .await;

    let core = ClientCore::open(dir.path().join("core.sqlite3")).unwrap();
    let sync = core.start_sync(SyncConfig::new(&server.url, &token));
    core.find(samod_doc_id).unwrap();
    wait_until("client-core receives samod's document", LIMIT, || async {
        core_value(&core, samod_doc_id, "from").as_deref() == Some("samod")
    })
    .await;

    // client-core -> server -> samod
    let core_doc = core.create_document().unwrap();
    core.change(core_doc, |tx| tx.put(ROOT, "from", "client-core"))
        .unwrap();
    wait_until("server confirms client-core's document", LIMIT, || async {
        core.sync_status().pending_changes == 0
    })
    .await;
    let found = samod
        .find(core_doc.to_string().parse().unwrap())
        .await
        .unwrap()
        .expect("samod finds client-core's document on our server");
    assert_eq!(samod_value(&found, "from").as_deref(), Some("client-core"));

    // A live edit by client-core is pushed to samod.
    core.change(core_doc, |tx| tx.put(ROOT, "live", "yes"))
        .unwrap();
    wait_until("samod receives the live edit", LIMIT, || async {
        samod_value(&found, "live").as_deref() == Some("yes")
    })
    .await;

    // Through a restart: samod edits while the server is down, and the edit
    // reaches client-core once both have reconnected.
    let addr = server.server.addr();
    server.stop().await;
    samod_doc.with_document(|d| {
        let mut tx = d.transaction();
        tx.put(ROOT, "after_restart", "samod").unwrap();
        tx.commit();
    });
    let server = InProcessServer::restart_on(&config, addr).await;
    wait_until(
        "client-core receives samod's edit after the restart",
        LIMIT,
        || async { core_value(&core, samod_doc_id, "after_restart").as_deref() == Some("samod") },
    )
    .await;
    assert_eq!(
        core.heads(samod_doc_id).unwrap(),
        samod_doc.with_document(|d| d.get_heads())
    );

    sync.stop().await;
    samod.stop().await;
    server.stop().await;
}
