//! TOTP secrets (and the refresh-derivation secret) are sealed at rest under
//! a key that is not in the database: a copy of the store without the key
//! holds no usable secret, on the embedded store and on PostgreSQL; with the
//! key it works; `sync-server secrets rotate` moves everything to a new key.

use std::path::Path;
use std::process::Command;

use serde_json::json;
use sync_server::Config;
use sync_server::auth::Role;
use sync_server::store::{PostgresStore, Store};
use sync_tests::accounts::{Api, Enrolled, enroll, totp_now};
use sync_tests::{InProcessServer, PgCluster, create_user, test_config, workspace_binary};

const PASSWORD: &str = "correct horse battery";
const EMAIL: &str = "kim@example.org";

/// A code that is well formed but wrong: the server must open the secret to
/// refuse it (`invalid_code`), or says it cannot (`secret_unavailable`),
/// without using up a TOTP step.
async fn wrong_code_answer(api: &Api) -> (u16, String) {
    let login = api.login(EMAIL, PASSWORD, "probe").await.ok();
    assert_eq!(login["status"], "second_factor_required", "{login}");
    let reply = api
        .post(
            "/api/auth/second-factor",
            None,
            json!({ "challenge": login["challenge"], "code": "000000" }),
        )
        .await;
    (reply.status, reply.error().to_owned())
}

async fn signs_in_with_the_next_code(api: &Api, enrolled: &Enrolled) {
    let login = api.login(EMAIL, PASSWORD, "tablet").await.ok();
    let reply = api
        .post(
            "/api/auth/second-factor",
            None,
            json!({ "challenge": login["challenge"], "code": totp_now(&enrolled.secret, 1) }),
        )
        .await
        .ok();
    assert_eq!(reply["status"], "signed_in", "{reply}");
}

fn stored_totp(data_dir: &Path) -> String {
    let conn = rusqlite::Connection::open(data_dir.join("sync.sqlite3")).unwrap();
    conn.query_row(
        "SELECT totp_secret FROM users WHERE email = ?1",
        [EMAIL],
        |r| r.get(0),
    )
    .unwrap()
}

fn config(data_dir: &Path) -> Config {
    let mut config = test_config(data_dir);
    // The probes fail codes on purpose; the throttle has its own tests.
    config.sign_in_free_attempts = 50;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_store_copied_without_its_key_holds_no_usable_secret() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("original");
    let server = InProcessServer::start(&config(&original)).await;
    create_user(&server.store, EMAIL, Role::Staff, PASSWORD).await;
    let enrolled = enroll(&Api::new(&server.url), EMAIL, PASSWORD, "desk").await;
    server.stop().await;

    // On disk: sealed, the key beside the store (not in it), made at first start.
    let key = original.join("secrets.key");
    assert!(key.exists());
    let sealed = stored_totp(&original);
    assert!(sealed.starts_with("sealed:v1:"), "{sealed}");
    let conn = rusqlite::Connection::open(original.join("sync.sqlite3")).unwrap();
    let token_key: Vec<u8> = conn
        .query_row(
            "SELECT value FROM server_secrets WHERE name = 'refresh_token_key'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(token_key.starts_with(b"sealed:v1:"));
    drop(conn);

    // The database alone, somewhere else: the secret does not open there.
    let copy = dir.path().join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    std::fs::copy(original.join("sync.sqlite3"), copy.join("sync.sqlite3")).unwrap();
    let thief = InProcessServer::start(&config(&copy)).await;
    let api = Api::new(&thief.url);
    assert_eq!(
        wrong_code_answer(&api).await,
        (503, "secret_unavailable".into())
    );
    let login = api.login(EMAIL, PASSWORD, "probe").await.ok();
    let right = api
        .post(
            "/api/auth/second-factor",
            None,
            json!({ "challenge": login["challenge"], "code": totp_now(&enrolled.secret, 0) }),
        )
        .await;
    assert_eq!(
        (right.status, right.error()),
        (503, "secret_unavailable"),
        "even the right code opens nothing without the key"
    );
    thief.stop().await;

    // With the key, the same copy works.
    let mut with_key = config(&copy);
    with_key.secrets_key_file = Some(key.clone());
    let owner = InProcessServer::start(&with_key).await;
    let api = Api::new(&owner.url);
    assert_eq!(wrong_code_answer(&api).await, (401, "invalid_code".into()));
    signs_in_with_the_next_code(&api, &enrolled).await;
    owner.stop().await;

    // Rotation: a new key seals, the old one only opens until the rotation is done.
    let new_key = dir.path().join("new.key");
    let status = Command::new(workspace_binary("sync-server"))
        .args(["secrets", "new-key", "--to"])
        .arg(&new_key)
        .status()
        .unwrap();
    assert!(status.success());
    let rotating = dir.path().join("rotating.toml");
    std::fs::write(
        &rotating,
        format!(
            "secrets_key_file = {:?}\nsecrets_previous_key_files = [{:?}]\n",
            new_key.display().to_string(),
            key.display().to_string()
        ),
    )
    .unwrap();
    let rotated = Command::new(workspace_binary("sync-server"))
        .arg("--data-dir")
        .arg(&copy)
        .arg("--config")
        .arg(&rotating)
        .args(["secrets", "rotate"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&rotated.stdout);
    assert!(
        rotated.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    assert!(said.contains("1 resealed"), "{said}");
    assert_ne!(stored_totp(&copy), sealed);

    let mut new_only = config(&copy);
    new_only.secrets_key_file = Some(new_key);
    let after = InProcessServer::start(&new_only).await;
    assert_eq!(
        wrong_code_answer(&Api::new(&after.url)).await,
        (401, "invalid_code".into())
    );
    after.stop().await;
    let mut old_only = config(&copy);
    old_only.secrets_key_file = Some(key);
    let stale = InProcessServer::start(&old_only).await;
    assert_eq!(
        wrong_code_answer(&Api::new(&stale.url)).await,
        (503, "secret_unavailable".into()),
        "after the rotation the old key opens nothing"
    );
    stale.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_store_without_the_key_holds_no_usable_secret() {
    let (_cluster, url) = PgCluster::start_with_database().await;
    let dir = tempfile::tempdir().unwrap();
    let node = |name: &str, key: Option<std::path::PathBuf>| Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join(name),
        database_url: Some(url.clone()),
        secrets_key_file: key,
        sign_in_free_attempts: 50,
        ..Config::default()
    };
    // No key: a PostgreSQL node refuses to start (its peers could not read
    // what it seals, nor it theirs).
    let Err(refused) = sync_server::start(&node("keyless", None)).await else {
        panic!("a PostgreSQL node started without a secrets key");
    };
    assert!(refused.to_string().contains("secrets key"), "{refused}");

    let key = sync_tests::secrets_key_file(&dir.path().join("k1"));
    let server = sync_server::start(&node("a", Some(key.clone())))
        .await
        .unwrap();
    let store = Store::new(PostgresStore::connect(&url).await.unwrap());
    create_user(&store, EMAIL, Role::Staff, PASSWORD).await;
    let api = Api::new(&server.sync_url());
    let enrolled = enroll(&api, EMAIL, PASSWORD, "desk").await;
    let stored = store.accounts.user_by_email(EMAIL).await.unwrap().unwrap();
    assert!(
        stored
            .totp_secret
            .as_deref()
            .is_some_and(|s| s.starts_with("sealed:v1:")),
        "{:?}",
        stored.totp_secret
    );

    // Another node with another key, on the same database: nothing opens.
    let other_key = sync_tests::secrets_key_file(&dir.path().join("k2"));
    let other = sync_server::start(&node("b", Some(other_key)))
        .await
        .unwrap();
    assert_eq!(
        wrong_code_answer(&Api::new(&other.sync_url())).await,
        (503, "secret_unavailable".into())
    );
    // A node given the shared key signs in.
    let peer = sync_server::start(&node("c", Some(key))).await.unwrap();
    let peer_api = Api::new(&peer.sync_url());
    assert_eq!(
        wrong_code_answer(&peer_api).await,
        (401, "invalid_code".into())
    );
    signs_in_with_the_next_code(&peer_api, &enrolled).await;
    for node in [server, other, peer] {
        node.shutdown().await.unwrap();
    }
}
