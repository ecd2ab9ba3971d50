//! The server on PostgreSQL: sync through it across a restart, and its
//! migrations (status, down/up giving the same schema, edited history refused).

use std::process::Command;
use std::time::Duration;

use automerge::transaction::Transactable;
use automerge::{ROOT, ReadDoc};
use client_core::{ClientCore, SyncConfig};
use sync_server::Config;
use sync_server::auth::{self, Role};
use sync_server::store::{PostgresStore, Store};
use sync_tests::{PgCluster, ServerProcess, wait_until, workspace_binary};

const LIMIT: Duration = Duration::from_secs(20);

/// An admin API token created directly in the PostgreSQL store.
async fn admin_token(url: &str) -> String {
    let store = Store::new(PostgresStore::connect(url).await.unwrap());
    let (token, hash) = auth::new_token();
    store
        .accounts
        .create_api_key("test", Role::Admin, &hash)
        .await
        .unwrap();
    token
}

fn value(core: &ClientCore, id: client_core::DocumentId) -> Option<i64> {
    core.read(id, |d| {
        d.get(ROOT, "n")
            .ok()
            .flatten()
            .and_then(|(v, _)| v.as_i64())
    })
    .ok()
    .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_sync_through_a_postgres_backed_server_and_its_restart() {
    let (_cluster, url) = PgCluster::start_with_database().await;
    let dir = tempfile::tempdir().unwrap();
    let token = admin_token(&url).await;
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("server"),
        database_url: Some(url.clone()),
        secrets_key_file: Some(sync_tests::secrets_key_file(dir.path())),
        compact_after_chunks: 3,
        ..Config::default()
    };
    let server = sync_server::start(&config).await.unwrap();
    let addr = server.addr();
    let a = ClientCore::open(dir.path().join("a.sqlite3")).unwrap();
    let b = ClientCore::open(dir.path().join("b.sqlite3")).unwrap();
    let sync_a = a.start_sync(SyncConfig::new(server.sync_url(), &token));
    let sync_b = b.start_sync(SyncConfig::new(server.sync_url(), &token));
    let id = a.create_document().unwrap();
    for n in 0..10 {
        a.change(id, |tx| tx.put(ROOT, "n", n)).unwrap();
        wait_until("the server confirms", LIMIT, || async {
            a.sync_status().pending_changes == 0
        })
        .await;
    }
    b.find(id).unwrap();
    wait_until("b receives a's document", LIMIT, || async {
        value(&b, id) == Some(9)
    })
    .await;

    server.shutdown().await.unwrap();
    let config = Config {
        listen: addr,
        ..config
    };
    let server = sync_server::start(&config).await.unwrap();
    b.change(id, |tx| tx.put(ROOT, "n", 10)).unwrap();
    wait_until("a receives b's change after the restart", LIMIT, || async {
        value(&a, id) == Some(10)
    })
    .await;

    let check = Store::new(PostgresStore::connect(&url).await.unwrap());
    assert!(
        check.documents.chunk_count(id).await.unwrap() < 3,
        "chunks are compacted on PostgreSQL too"
    );
    assert_eq!(check.documents.list_documents().await.unwrap(), vec![id]);
    sync_a.stop().await;
    sync_b.stop().await;
    server.shutdown().await.unwrap();
}

fn cli(url: &str, args: &[&str]) -> std::process::Output {
    Command::new(workspace_binary("sync-server"))
        .args(["--database-url", url])
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn schema(url: &str) -> Vec<String> {
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    client
        .query(
            "SELECT table_name || '.' || column_name || ':' || data_type || ':' || is_nullable
             FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name <> 'schema_migrations'
             ORDER BY table_name, column_name",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn postgres_migrations_go_down_and_up_to_the_same_schema_and_refuse_edits() {
    let cluster = PgCluster::start();
    let url = cluster.create_database();
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };

    let up = cli(&url, &["migrate", "up"]);
    assert!(up.status.success(), "{}", text(&up));
    let first = schema(&url);
    assert!(
        first
            .iter()
            .any(|c| c.starts_with("document_chunks.data:bytea")),
        "{first:?}"
    );

    let down = cli(&url, &["migrate", "down", "--to", "0"]);
    assert!(down.status.success(), "{}", text(&down));
    assert!(schema(&url).is_empty());
    let status = cli(&url, &["migrate", "status"]);
    assert_eq!(
        String::from_utf8_lossy(&status.stdout)
            .lines()
            .filter(|l| l.ends_with("pending"))
            .count(),
        migrations::SERVER_POSTGRES.migrations.len()
    );

    assert!(cli(&url, &["migrate", "up"]).status.success());
    assert_eq!(schema(&url), first);
    let token = cli(
        &url,
        &["token", "create", "--name", "pg", "--role", "admin"],
    );
    assert!(token.status.success(), "{}", text(&token));
    assert!(
        String::from_utf8_lossy(&token.stdout)
            .trim()
            .starts_with("sk_")
    );

    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    client
        .execute(
            "UPDATE schema_migrations SET checksum = 'edited' WHERE version = 2",
            &[],
        )
        .unwrap();
    let verify = cli(&url, &["migrate", "verify"]);
    assert!(!verify.status.success());
    assert!(
        text(&verify).contains("changed after it was applied"),
        "{}",
        text(&verify)
    );
    let serve = cli(&url, &["serve", "--listen", "127.0.0.1:0"]);
    assert!(
        !serve.status.success(),
        "served on an edited schema history"
    );
    assert!(
        text(&serve).contains("changed after it was applied"),
        "{}",
        text(&serve)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_database_push_each_others_changes() {
    let (_cluster, url) = PgCluster::start_with_database().await;
    let dir = tempfile::tempdir().unwrap();
    let token = admin_token(&url).await;
    let node = |name: &str| Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join(name),
        database_url: Some(url.clone()),
        secrets_key_file: Some(sync_tests::secrets_key_file(dir.path())),
        compact_after_chunks: 4,
        ..Config::default()
    };
    let node1 = sync_server::start(&node("node1")).await.unwrap();
    let node2 = sync_server::start(&node("node2")).await.unwrap();

    let a = ClientCore::open(dir.path().join("a.sqlite3")).unwrap();
    let b = ClientCore::open(dir.path().join("b.sqlite3")).unwrap();
    let sync_a = a.start_sync(SyncConfig::new(node1.sync_url(), &token));
    let sync_b = b.start_sync(SyncConfig::new(node2.sync_url(), &token));
    let id = a.create_document().unwrap();
    a.change(id, |tx| tx.put(ROOT, "n", 0)).unwrap();
    wait_until("node 1 stores the document", LIMIT, || async {
        a.sync_status().pending_changes == 0
    })
    .await;
    b.find(id).unwrap();
    wait_until("b on node 2 loads it", LIMIT, || async {
        value(&b, id) == Some(0)
    })
    .await;

    // Live edits in both directions, interleaved, across compactions on both nodes.
    for n in 1..=12i64 {
        let (writer, reader) = if n % 2 == 1 { (&a, &b) } else { (&b, &a) };
        writer.change(id, |tx| tx.put(ROOT, "n", n)).unwrap();
        wait_until(
            "the other node's client receives the edit",
            LIMIT,
            || async { value(reader, id) == Some(n) },
        )
        .await;
    }
    assert_eq!(a.heads(id).unwrap(), b.heads(id).unwrap());

    // What the shared store holds is the whole document.
    let c = ClientCore::open(dir.path().join("c.sqlite3")).unwrap();
    node1.shutdown().await.unwrap();
    let node3 = sync_server::start(&node("node3")).await.unwrap();
    let sync_c = c.start_sync(SyncConfig::new(node3.sync_url(), &token));
    c.find(id).unwrap();
    wait_until("a fresh node serves everything", LIMIT, || async {
        c.heads(id)
            .map(|h| h == a.heads(id).unwrap())
            .unwrap_or(false)
    })
    .await;
    sync_a.stop().await;
    sync_b.stop().await;
    sync_c.stop().await;
    node2.shutdown().await.unwrap();
    node3.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_fails_over_to_another_node_when_its_node_is_killed() {
    const N: usize = 300;
    let (_cluster, url) = PgCluster::start_with_database().await;
    let dir = tempfile::tempdir().unwrap();
    let token = admin_token(&url).await;
    let secrets = sync_tests::secrets_config_file(dir.path());
    let options = [
        "--database-url",
        url.as_str(),
        "--config",
        secrets.to_str().unwrap(),
    ];
    let node1 = ServerProcess::start_with(&dir.path().join("n1"), "127.0.0.1:0", &options);
    let node2 = ServerProcess::start_with(&dir.path().join("n2"), "127.0.0.1:0", &options);

    let a = ClientCore::open(dir.path().join("a.sqlite3")).unwrap();
    let config = SyncConfig {
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
        ..SyncConfig::new(&node1.url, &token).with_fallbacks([node2.url.clone()])
    };
    let sync_a = a.start_sync(config);
    let id = a.create_document().unwrap();
    let count = |core: &ClientCore| core.read(id, |d| d.keys(ROOT).count()).unwrap_or(0);
    let writer = {
        let a = a.clone();
        tokio::spawn(async move {
            for i in 0..N {
                a.change(id, |tx| tx.put(ROOT, format!("k{i}"), i as i64))
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    wait_until("node 1 has confirmed some changes", LIMIT, || async {
        a.sync_status().last_sync_at.is_some() && count(&a) > N / 3
    })
    .await;
    node1.kill9();
    writer.await.unwrap();

    wait_until("everything is confirmed by node 2", LIMIT, || async {
        let s = a.sync_status();
        s.connected && s.pending_changes == 0
    })
    .await;
    let b = ClientCore::open(dir.path().join("b.sqlite3")).unwrap();
    let sync_b = b.start_sync(SyncConfig::new(&node2.url, &token));
    b.find(id).unwrap();
    wait_until(
        "a fresh client on node 2 sees every change",
        LIMIT,
        || async { count(&b) == N },
    )
    .await;
    assert_eq!(a.heads(id).unwrap(), b.heads(id).unwrap());
    sync_a.stop().await;
    sync_b.stop().await;
    drop(node2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_revoked_on_one_node_is_cut_off_on_the_other_within_a_second() {
    use sync_tests::accounts::Api;
    let (_cluster, url) = PgCluster::start_with_database().await;
    let dir = tempfile::tempdir().unwrap();
    let node = |name: &str| Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join(name),
        database_url: Some(url.clone()),
        secrets_key_file: Some(sync_tests::secrets_key_file(dir.path())),
        ..Config::default()
    };
    let node1 = sync_server::start(&node("node1")).await.unwrap();
    let node2 = sync_server::start(&node("node2")).await.unwrap();
    let store = Store::new(PostgresStore::connect(&url).await.unwrap());
    sync_tests::create_user(
        &store,
        "m@example.org",
        Role::Member,
        "correct horse battery",
    )
    .await;

    // Signed in through node 1, syncing through node 2.
    let api1 = Api::new(&node1.sync_url());
    let session = api1
        .login("m@example.org", "correct horse battery", "tablet")
        .await
        .ok()["session"]
        .clone();
    let access = session["access_token"].as_str().unwrap();
    let device = session["device_id"].as_str().unwrap();
    let mut socket = sync_tests::raw::joined(&node2.sync_url(), access).await;

    let revoked_at = std::time::Instant::now();
    let reply = api1
        .post(
            &format!("/api/devices/{device}/revoke"),
            Some(access),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(reply.status, 204);
    match sync_tests::raw::next_message(&mut socket).await {
        Some(sync_protocol::Message::Error { message }) => {
            assert!(message.contains("revoked"), "{message}")
        }
        other => panic!("expected node 2 to close the socket, got {other:?}"),
    }
    let elapsed = revoked_at.elapsed();
    assert!(
        elapsed < Duration::from_secs(1),
        "node 2 closed it after {elapsed:?}"
    );
    // Node 2 refuses the token from now on, too.
    let me = Api::new(&node2.sync_url()).get("/api/me", access).await;
    assert_eq!((me.status, me.error()), (401, "device_revoked"));
    node1.shutdown().await.unwrap();
    node2.shutdown().await.unwrap();
}

/// Two in-process nodes on one PostgreSQL database, sharing a secrets key.
async fn two_nodes(
    url: &str,
    dir: &std::path::Path,
) -> (sync_server::RunningServer, sync_server::RunningServer) {
    let node = |name: &str| Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.join(name),
        database_url: Some(url.to_owned()),
        secrets_key_file: Some(sync_tests::secrets_key_file(dir)),
        ..Config::default()
    };
    (
        sync_server::start(&node("node1")).await.unwrap(),
        sync_server::start(&node("node2")).await.unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_failures_spread_over_two_nodes_are_throttled_as_one() {
    use sync_tests::accounts::Api;
    let (_cluster, url) = PgCluster::start_with_database().await;
    let dir = tempfile::tempdir().unwrap();
    let (node1, node2) = two_nodes(&url, dir.path()).await;
    let store = Store::new(PostgresStore::connect(&url).await.unwrap());
    sync_tests::create_user(&store, "mo@example.org", Role::Member, "correct horse").await;
    let apis = [Api::new(&node1.sync_url()), Api::new(&node2.sync_url())];
    // Three free failures in all (the default), alternating nodes, then one
    // that starts the delay: each node alone has seen only two or three.
    let mut statuses = Vec::new();
    for attempt in 0..4 {
        let reply = apis[attempt % 2]
            .login("mo@example.org", "wrong", "probe")
            .await;
        statuses.push(reply.status);
    }
    assert_eq!(statuses, [401, 401, 401, 401], "{statuses:?}");
    // The next attempt, on the node that has seen only two failures itself,
    // must wait: the records are shared.
    let throttled = apis[0]
        .login("mo@example.org", "correct horse", "probe")
        .await;
    assert_eq!(
        (throttled.status, throttled.error()),
        (429, "throttled"),
        "{:?}",
        throttled.body
    );
    assert!(throttled.body["retry_after_secs"].as_u64().is_some());
    let on_other = apis[1]
        .login("mo@example.org", "correct horse", "probe")
        .await;
    assert_eq!(on_other.status, 429);
    // After the wait, the right password works, and clears the record for both.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    apis[1]
        .login("mo@example.org", "correct horse", "probe")
        .await
        .ok();
    node1.shutdown().await.unwrap();
    node2.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_on_one_node_lists_a_tablet_connected_to_another() {
    use sync_tests::accounts::Api;
    let (_cluster, url) = PgCluster::start_with_database().await;
    let dir = tempfile::tempdir().unwrap();
    let token = admin_token(&url).await;
    let (node1, node2) = two_nodes(&url, dir.path()).await;

    // The event: made on an admin replica, uploaded through node 1.
    let admin = ClientCore::open(dir.path().join("admin.sqlite3")).unwrap();
    let event = sync_tests::seed_event(&admin, "fest", "Fest", &[("main", "Main")], 5);
    let api1 = Api::new(&node1.sync_url());
    api1.post(
        "/api/documents",
        Some(&token),
        serde_json::json!({ "document_id": event.to_string(), "kind": "event", "scope": "fest" }),
    )
    .await
    .ok();
    let admin_sync = admin.start_sync(SyncConfig::new(node1.sync_url(), &token));
    wait_until("the event reaches node 1", LIMIT, || async {
        admin.sync_status().pending_changes == 0
    })
    .await;

    // A door tablet on node 2.
    let door = ClientCore::open(dir.path().join("door.sqlite3")).unwrap();
    let door_sync = door.start_sync(SyncConfig::new(node2.sync_url(), &token));
    door.find(event).unwrap();
    wait_until("the door tablet has the event", LIMIT, || async {
        door.counts(event, Some("main"))
            .is_ok_and(|c| c.expected == 5)
    })
    .await;
    let path = format!("/api/presence?document_id={event}");
    let listed_on_node1 = || async {
        api1.get(&path, &token)
            .await
            .body
            .as_array()
            .is_some_and(|a| a.iter().any(|p| p["list_id"] == "main"))
    };
    assert!(!listed_on_node1().await);
    door.set_presence(event, Some("main"));
    wait_until(
        "node 1's dashboard lists the tablet on node 2",
        Duration::from_secs(2),
        listed_on_node1,
    )
    .await;
    // And drops it when its connection to node 2 ends.
    door_sync.stop().await;
    wait_until("node 1 drops the tablet", LIMIT, || async {
        !listed_on_node1().await
    })
    .await;
    admin_sync.stop().await;
    node1.shutdown().await.unwrap();
    node2.shutdown().await.unwrap();
}
