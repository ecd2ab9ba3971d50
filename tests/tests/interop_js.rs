//! Interop with the stock JavaScript `@automerge/automerge-repo` client (npm,
//! websocket adapter, token in the query string): it syncs with our server and,
//! through it, with client-core, both ways and across a server restart.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use automerge::ROOT;
use automerge::transaction::Transactable;
use client_core::{ClientCore, DocumentId, SyncConfig};
use sync_server::auth::Role;
use sync_tests::{InProcessServer, create_token, test_config, wait_until};

const LIMIT: Duration = Duration::from_secs(20);

fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js")
}

/// Runs `node peer.mjs ARGS` off the async runtime; returns its stdout.
async fn node(args: Vec<String>) -> String {
    tokio::task::spawn_blocking(move || {
        assert!(
            js_dir()
                .join("node_modules/@automerge/automerge-repo")
                .exists(),
            "npm packages missing: run `npm ci` in tests/js (tests/run.sh does)"
        );
        let out = Command::new("node")
            .arg("peer.mjs")
            .args(&args)
            .current_dir(js_dir())
            .output()
            .expect("node runs");
        assert!(
            out.status.success(),
            "node peer.mjs {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    })
    .await
    .unwrap()
}

fn core_text(core: &ClientCore, id: DocumentId, key: &str) -> Option<String> {
    core.read(id, |d| sync_tests::root_string(d, key))
        .ok()
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stock_js_client_syncs_with_our_server_and_client_core() {
    sync_tests::init_logging();
    let dir = tempfile::tempdir().unwrap();
    let server_dir = dir.path().join("server");
    let token = create_token(&server_dir, Role::Admin).await;
    let config = test_config(&server_dir);
    let server = InProcessServer::start(&config).await;
    let url = server.url.clone();
    let s = |v: &str| v.to_string();

    // JS creates; our server stores it (a second JS repo read it back); client-core gets it.
    let created = node(vec![
        s("create"),
        url.clone(),
        token.clone(),
        s("from"),
        s("js"),
    ])
    .await;
    let doc_url = serde_json::from_str::<serde_json::Value>(created.trim()).unwrap()["url"]
        .as_str()
        .unwrap()
        .to_string();
    let js_doc: DocumentId = doc_url.parse().unwrap();
    let core = ClientCore::open(dir.path().join("core.sqlite3")).unwrap();
    let sync = core.start_sync(SyncConfig::new(&url, &token));
    core.find(js_doc).unwrap();
    wait_until("client-core receives the JS document", LIMIT, || async {
        core_text(&core, js_doc, "from").as_deref() == Some("js")
    })
    .await;

    // client-core creates; JS reads it.
    let core_doc = core.create_document().unwrap();
    core.change(core_doc, |tx| tx.put(ROOT, "from", "client-core"))
        .unwrap();
    let read = node(vec![
        s("read"),
        url.clone(),
        token.clone(),
        core_doc.to_url(),
        s("from"),
        s("client-core"),
    ])
    .await;
    assert!(read.contains("client-core"), "{read}");

    // Restart the server; JS edits the document afterwards and client-core,
    // which reconnects on its own, receives the edit.
    let addr = server.server.addr();
    server.stop().await;
    let server = InProcessServer::restart_on(&config, addr).await;
    node(vec![
        s("edit"),
        url.clone(),
        token.clone(),
        core_doc.to_url(),
        s("js_edit"),
        s("after restart"),
    ])
    .await;
    wait_until(
        "client-core receives the JS edit after the restart",
        LIMIT,
        || async { core_text(&core, core_doc, "js_edit").as_deref() == Some("after restart") },
    )
    .await;

    sync.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_js_client_without_a_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server_dir = dir.path().join("server");
    let _ = create_token(&server_dir, Role::Admin).await;
    let server = InProcessServer::start(&test_config(&server_dir)).await;
    let mut child = Command::new("node")
        .args(["peer.mjs", "create", &server.url, "sk_wrong", "a", "b"])
        .current_dir(js_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The client may retry against the 401 for ever: give it 3 s, then stop it.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        !status.is_some_and(|s| s.success()),
        "JS client got through with a bad token"
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
    server.stop().await;
}
