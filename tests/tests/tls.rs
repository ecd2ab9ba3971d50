//! TLS for real: the server's own listener with a certificate from a CA made
//! in the test; client-core signs in (`https://`) and syncs (`wss://`)
//! trusting that CA; a certificate from another CA, or a key that is not the
//! pinned one, is refused with the typed error and nothing is sent; a renewed
//! certificate is picked up (file change, SIGHUP) without dropping the
//! connections already open.

use std::time::Duration;

use automerge::ROOT;
use automerge::transaction::Transactable;
use client_core::{Account, AccountError, ClientCore, ServerTrust, SyncConfig, TrustError};
use sync_server::auth::{self, Role};
use sync_server::store::Store;
use sync_tests::tls::{TestCa, with_tls};
use sync_tests::{InProcessServer, ServerProcess, create_user, test_config, wait_until};

const PASSWORD: &str = "correct horse battery";
const LIMIT: Duration = Duration::from_secs(30);

fn use_mock_keychain() {
    keyring_core::set_default_store(keyring_core::mock::Store::new().unwrap());
}

async fn admin_key(store: &Store) -> String {
    let (token, hash) = auth::new_token();
    store
        .accounts
        .create_api_key("tls", Role::Admin, &hash)
        .await
        .unwrap();
    token
}

fn trusting(ca: &TestCa) -> ServerTrust {
    ServerTrust::default().with_extra_ca_pem(ca.pem()).unwrap()
}

/// A local document with one value, written and then synced.
fn write_one(core: &ClientCore, key: &str) -> client_core::DocumentId {
    let id = core.create_document().unwrap();
    core.change(id, |tx| tx.put(ROOT, key, 1_i64).map(|_| ()))
        .unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signs_in_and_syncs_over_tls_trusting_the_venue_ca() {
    use_mock_keychain();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Venue CA");
    let config = with_tls(
        test_config(&dir.path().join("server")),
        &dir.path().join("tls"),
        &ca.issue(),
    );
    let server = InProcessServer::start(&config).await;
    assert!(server.url.starts_with("wss://"), "{}", server.url);
    create_user(&server.store, "mo@example.org", Role::Member, PASSWORD).await;

    let core = ClientCore::open(dir.path().join("tablet.sqlite3")).unwrap();
    let account = Account::with_trust(&core, &server.url, trusting(&ca)).unwrap();
    // Members sign in with a password alone: the whole answer came over https.
    let step = account
        .sign_in("mo@example.org", PASSWORD, "tablet")
        .await
        .unwrap();
    assert!(
        matches!(step, client_core::SignInStep::SignedIn(_)),
        "{step:?}"
    );

    // The sync socket trusts what the account trusts.
    let sync = core.start_sync(SyncConfig::with_account(server.url.clone(), &account));
    // The member's settings: registered over https, written over wss.
    let id = account.create_settings().await.unwrap();
    core.set_setting(id, "theme", client_core::SettingValue::Text("dark".into()))
        .unwrap();
    wait_until("the change reaches the server over wss", LIMIT, || async {
        server
            .store
            .documents
            .load_document(id)
            .await
            .unwrap()
            .is_some()
            && core.sync_status().pending_changes == 0
    })
    .await;
    assert!(core.sync_status().connected);
    sync.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused_and_nothing_is_sent() {
    use_mock_keychain();
    let dir = tempfile::tempdir().unwrap();
    let (venue, stranger) = (TestCa::new("Venue CA"), TestCa::new("Someone else's CA"));
    let config = with_tls(
        test_config(&dir.path().join("server")),
        &dir.path().join("tls"),
        &stranger.issue(),
    );
    let server = InProcessServer::start(&config).await;
    create_user(&server.store, "mo@example.org", Role::Member, PASSWORD).await;
    let key = admin_key(&server.store).await;

    let core = ClientCore::open(dir.path().join("tablet.sqlite3")).unwrap();
    let account = Account::with_trust(&core, &server.url, trusting(&venue)).unwrap();
    let refused = account
        .sign_in("mo@example.org", PASSWORD, "tablet")
        .await
        .unwrap_err();
    let AccountError::UntrustedCertificate(reason) = &refused else {
        panic!("expected an untrusted certificate, got {refused:?}");
    };
    assert!(reason.contains("does not trust"), "{reason}");
    assert!(
        refused
            .to_string()
            .starts_with("the server's certificate is not trusted: "),
        "{refused}"
    );
    // Without the venue CA (the platform's roots only) it is refused too.
    let plain = Account::new(&core, &server.url).unwrap();
    assert!(matches!(
        plain.sign_in("mo@example.org", PASSWORD, "tablet").await,
        Err(AccountError::UntrustedCertificate(_))
    ));

    // Sync says why in its status, and the document never reaches the server.
    let sync =
        core.start_sync(SyncConfig::new(server.url.clone(), &key).with_trust(trusting(&venue)));
    let id = write_one(&core, "secret");
    wait_until("sync reports the untrusted certificate", LIMIT, || async {
        core.sync_status().last_error.is_some_and(|e| {
            e.starts_with("the server's certificate is not trusted: ")
                && e.contains("does not trust")
        })
    })
    .await;
    let status = core.sync_status();
    assert!(!status.connected);
    assert_eq!(
        status.problem,
        Some(client_core::SyncProblem::UntrustedServer)
    );
    assert!(status.pending_changes > 0, "{status:?}");
    assert!(
        server
            .store
            .documents
            .load_document(id)
            .await
            .unwrap()
            .is_none()
    );
    // No device was signed in: the password never left the tablet.
    assert!(
        server
            .store
            .accounts
            .list_devices(None)
            .await
            .unwrap()
            .is_empty()
    );
    sync.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_key_admits_only_that_key() {
    use_mock_keychain();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Venue CA");
    let served = ca.issue();
    let config = with_tls(
        test_config(&dir.path().join("server")),
        &dir.path().join("tls"),
        &served,
    );
    let server = InProcessServer::start(&config).await;
    let key = admin_key(&server.store).await;

    // The right pin (in curl's `sha256//` form): syncs.
    let pinned = trusting(&ca)
        .with_pinned_key(&format!("sha256//{}", served.pin()))
        .unwrap();
    let good = ClientCore::open(dir.path().join("good.sqlite3")).unwrap();
    let good_sync = good.start_sync(SyncConfig::new(server.url.clone(), &key).with_trust(pinned));
    let good_doc = write_one(&good, "pinned");
    wait_until("the pinned client syncs", LIMIT, || async {
        good.sync_status().pending_changes == 0
    })
    .await;
    assert!(
        server
            .store
            .documents
            .load_document(good_doc)
            .await
            .unwrap()
            .is_some()
    );

    // A certificate from the same, trusted CA but another key: refused.
    let other = ca.issue();
    let wrong = trusting(&ca).with_pinned_key(&other.pin()).unwrap();
    let bad = ClientCore::open(dir.path().join("bad.sqlite3")).unwrap();
    let bad_sync =
        bad.start_sync(SyncConfig::new(server.url.clone(), &key).with_trust(wrong.clone()));
    let bad_doc = write_one(&bad, "unpinned");
    wait_until("the pin mismatch is reported", LIMIT, || async {
        bad.sync_status()
            .last_error
            .is_some_and(|e| e.contains("is not the pinned key") && e.contains(&served.pin()))
    })
    .await;
    assert!(
        server
            .store
            .documents
            .load_document(bad_doc)
            .await
            .unwrap()
            .is_none()
    );
    let account = Account::with_trust(&bad, &server.url, wrong).unwrap();
    let refused = account
        .sign_in("x@example.org", "x", "t")
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, AccountError::UntrustedCertificate(r) if r.contains("pinned")),
        "{refused:?}"
    );

    // Settings that cannot work are refused when made, not at connect time.
    assert!(matches!(
        ServerTrust::default().with_pinned_key("not-a-pin"),
        Err(TrustError::BadPin(_))
    ));
    assert_eq!(
        ServerTrust::default().with_extra_ca_pem("no PEM here"),
        Err(TrustError::NoCertificate)
    );
    good_sync.stop().await;
    bad_sync.stop().await;
    server.stop().await;
}

/// Whether the server now presents `cert`: a sign-in pinned to its key gets
/// past TLS (and is then refused by the server, not by the certificate).
async fn presents(core: &ClientCore, url: &str, ca: &TestCa, pin: &str) -> bool {
    let trust = trusting(ca).with_pinned_key(pin).unwrap();
    let account = Account::with_trust(core, url, trust).unwrap();
    match account
        .sign_in("nobody@example.org", "wrong", "probe")
        .await
    {
        Err(AccountError::Refused { code, .. }) => code == "invalid_credentials",
        Err(AccountError::UntrustedCertificate(_)) => false,
        other => panic!("unexpected answer to the probe: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_used_when_its_files_change_and_open_sockets_stay() {
    use_mock_keychain();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Venue CA");
    let (first, renewed) = (ca.issue(), ca.issue());
    let tls_dir = dir.path().join("tls");
    let mut config = with_tls(test_config(&dir.path().join("server")), &tls_dir, &first);
    config.tls_reload_check_secs = 1;
    let server = InProcessServer::start(&config).await;
    let key = admin_key(&server.store).await;

    let core = ClientCore::open(dir.path().join("tablet.sqlite3")).unwrap();
    let sync = core.start_sync(SyncConfig::new(server.url.clone(), &key).with_trust(trusting(&ca)));
    wait_until("connected", LIMIT, || async {
        core.sync_status().connected
    })
    .await;
    let dropped = sync_tests::ends_when_offline(&core);
    let probe = ClientCore::open(dir.path().join("probe.sqlite3")).unwrap();
    assert!(presents(&probe, &server.url, &ca, &first.pin()).await);
    assert!(!presents(&probe, &server.url, &ca, &renewed.pin()).await);

    renewed.write(&tls_dir);
    wait_until("the renewed certificate is served", LIMIT, || async {
        presents(&probe, &server.url, &ca, &renewed.pin()).await
    })
    .await;
    // A broken renewal leaves the working certificate in place.
    std::fs::write(
        tls_dir.join("server.crt"),
        "-----BEGIN CERTIFICATE-----\nbroken\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(presents(&probe, &server.url, &ca, &renewed.pin()).await);

    // The socket opened under the first certificate still carries changes.
    let id = write_one(&core, "after-renewal");
    wait_until("a change after the renewal syncs", LIMIT, || async {
        core.sync_status().pending_changes == 0
    })
    .await;
    assert!(
        server
            .store
            .documents
            .load_document(id)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        !dropped.is_finished(),
        "the open connection dropped during the renewal"
    );
    dropped.abort();
    sync.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_binary_serves_tls_and_reloads_on_sighup() {
    use_mock_keychain();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Venue CA");
    let (first, renewed) = (ca.issue(), ca.issue());
    let tls_dir = dir.path().join("tls");
    let (cert, key_file) = first.write(&tls_dir);
    let data = dir.path().join("server");
    std::fs::create_dir_all(&data).unwrap();
    let token = sync_tests::create_token(&data, Role::Admin).await;
    // Only SIGHUP reloads here (no file checks), so the test sees the signal work.
    let config_file = dir.path().join("server.toml");
    std::fs::write(&config_file, "tls_reload_check_secs = 0\n").unwrap();
    let server = ServerProcess::start_serving(
        &data,
        "127.0.0.1:0",
        &["--config", config_file.to_str().unwrap()],
        &[
            "--tls-cert".as_ref(),
            cert.as_os_str(),
            "--tls-key".as_ref(),
            key_file.as_os_str(),
        ],
    );
    assert!(server.url.starts_with("wss://"), "{}", server.url);

    let core = ClientCore::open(dir.path().join("tablet.sqlite3")).unwrap();
    let sync =
        core.start_sync(SyncConfig::new(server.url.clone(), &token).with_trust(trusting(&ca)));
    let id = write_one(&core, "before");
    wait_until("synced over the binary's TLS listener", LIMIT, || async {
        core.sync_status().pending_changes == 0
    })
    .await;
    let dropped = sync_tests::ends_when_offline(&core);

    renewed.write(&tls_dir);
    let probe = ClientCore::open(dir.path().join("probe.sqlite3")).unwrap();
    assert!(
        !presents(&probe, &server.url, &ca, &renewed.pin()).await,
        "nothing reloads without the signal here"
    );
    let pid = server.child.id().to_string();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(hup.success());
    wait_until("SIGHUP loads the renewed certificate", LIMIT, || async {
        presents(&probe, &server.url, &ca, &renewed.pin()).await
    })
    .await;
    core.change(id, |tx| tx.put(ROOT, "after", 2_i64).map(|_| ()))
        .unwrap();
    wait_until("the open socket still syncs", LIMIT, || async {
        core.sync_status().pending_changes == 0
    })
    .await;
    assert!(
        !dropped.is_finished(),
        "the open connection dropped on SIGHUP"
    );
    dropped.abort();
    sync.stop().await;
}
