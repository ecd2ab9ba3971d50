//! client-core's sign-in against a real server: enrollment and TOTP codes,
//! tokens kept in the keychain (keyring-core's mock store here), refresh,
//! sign-out, a session ended by an administrator, a revoked device wiping its
//! documents; and through all of it no local write is lost.

use std::time::Duration;

use automerge::transaction::Transactable;
use automerge::{ROOT, ReadDoc};
use client_core::{
    Account, ClientCore, DocEvent, DocumentId, SessionState, SettingValue, SignInStep, SyncConfig,
};
use serde_json::json;
use sync_server::auth::{self, Role};
use sync_tests::accounts::{Api, hotp, secret_from_uri, unix_secs};
use sync_tests::{InProcessServer, create_user, test_config, wait_until};

const PASSWORD: &str = "correct horse battery";
const LIMIT: Duration = Duration::from_secs(20);

fn use_mock_keychain() {
    // Each test runs in its own process (nextest), so this is per test.
    keyring_core::set_default_store(keyring_core::mock::Store::new().unwrap());
}

fn value(core: &ClientCore, id: DocumentId, key: &str) -> Option<i64> {
    core.read(id, |d| {
        d.get(ROOT, key)
            .ok()
            .flatten()
            .and_then(|(v, _)| v.as_i64())
    })
    .ok()
    .flatten()
}

async fn admin_key(server: &InProcessServer) -> String {
    let (token, hash) = auth::new_token();
    server
        .store
        .accounts
        .create_api_key("observer", Role::Admin, &hash)
        .await
        .unwrap();
    token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_keychain_refresh_sign_out_and_back_lose_nothing() {
    use_mock_keychain();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("server"));
    // Short-lived access tokens: the client must refresh to keep going.
    config.access_token_ttl_secs = 61;
    let server = InProcessServer::start(&config).await;
    create_user(&server.store, "admin@example.org", Role::Admin, PASSWORD).await;
    let observer_token = admin_key(&server).await;

    let core = ClientCore::open(dir.path().join("desk.sqlite3")).unwrap();
    let account = Account::new(&core, &server.url).unwrap();
    assert_eq!(account.state(), SessionState::SignedOut);
    let SignInStep::EnrollmentRequired { challenge } = account
        .sign_in("admin@example.org", PASSWORD, "admin desk")
        .await
        .unwrap()
    else {
        panic!("admins must enroll");
    };
    let enrollment = account.start_enrollment(&challenge).await.unwrap();
    assert!(enrollment.qr_png.starts_with(b"\x89PNG"));
    let secret = secret_from_uri(&enrollment.otpauth_uri);
    let enrolled_step = unix_secs() / 30;
    let wrong = account
        .confirm_enrollment(&challenge, &hotp(b"wrong", enrolled_step, 6))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Some("invalid_code"));
    let (session, recovery) = account
        .confirm_enrollment(&challenge, &hotp(&secret, enrolled_step, 6))
        .await
        .unwrap();
    assert_eq!(recovery.len(), 10);
    assert_eq!(session.user.email, "admin@example.org");
    assert!(matches!(account.state(), SessionState::SignedIn(_)));

    // The tokens are in the keychain: another Account over the same store finds them.
    let reopened = Account::new(&core, &server.url).unwrap();
    assert_eq!(reopened.state(), SessionState::SignedIn(session.clone()));

    // Sync as the signed-in user; an observer sees the change.
    let sync = core.start_sync(SyncConfig::with_account(server.url.clone(), &account));
    let observer = ClientCore::open(dir.path().join("observer.sqlite3")).unwrap();
    let observer_sync = observer.start_sync(SyncConfig::new(server.url.clone(), &observer_token));
    let id = core.create_document().unwrap();
    core.change(id, |tx| tx.put(ROOT, "n", 1)).unwrap();
    observer.find(id).unwrap();
    wait_until("the observer sees the first change", LIMIT, || async {
        value(&observer, id, "n") == Some(1)
    })
    .await;

    // The access token lives 61 s and is renewed within its last minute:
    // asking for it now exchanges the refresh token.
    let first = account.access_token().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = account.access_token().await.unwrap();
    assert_ne!(first, second, "refreshed");
    let me = Api::new(&server.url).get("/api/me", &second).await.ok();
    assert_eq!(me["user"]["email"], "admin@example.org");

    // Sign out: tokens gone from the keychain; local writes go on and wait.
    account.sign_out().await.unwrap();
    assert_eq!(account.state(), SessionState::SignedOut);
    assert_eq!(
        Account::new(&core, &server.url).unwrap().state(),
        SessionState::SignedOut
    );
    assert_eq!(
        Api::new(&server.url).get("/api/me", &second).await.status,
        401,
        "the server ended the session too"
    );
    for n in 2..=5 {
        core.change(id, |tx| tx.put(ROOT, "n", n)).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        value(&observer, id, "n"),
        Some(1),
        "nothing syncs while signed out"
    );
    assert!(core.sync_status().pending_changes >= 4);

    // Signing in again (the next code: the enrollment's is used up) resumes sync.
    let SignInStep::SecondFactorRequired { challenge } = account
        .sign_in("admin@example.org", PASSWORD, "admin desk")
        .await
        .unwrap()
    else {
        panic!("enrolled: a code is required");
    };
    let replay = account
        .submit_totp(&challenge, &hotp(&secret, enrolled_step, 6))
        .await
        .unwrap_err();
    assert_eq!(replay.code(), Some("code_replayed"));
    let again = account
        .submit_totp(&challenge, &hotp(&secret, unix_secs() / 30 + 1, 6))
        .await
        .unwrap();
    assert_eq!(
        again.device_id, session.device_id,
        "the same device signs in again"
    );
    wait_until("the waiting changes reach the observer", LIMIT, || async {
        value(&observer, id, "n") == Some(5)
    })
    .await;
    wait_until("nothing pending", LIMIT, || async {
        core.sync_status().pending_changes == 0
    })
    .await;
    sync.stop().await;
    observer_sync.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_session_asks_to_sign_in_and_a_revoked_device_wipes() {
    use_mock_keychain();
    let dir = tempfile::tempdir().unwrap();
    let server = InProcessServer::start(&test_config(&dir.path().join("server"))).await;
    let member = create_user(&server.store, "m@example.org", Role::Member, PASSWORD).await;
    let admin = admin_key(&server).await;
    let api = Api::new(&server.url);

    let core = ClientCore::open(dir.path().join("phone.sqlite3")).unwrap();
    let account = Account::new(&core, &server.url).unwrap();
    let SignInStep::SignedIn(session) = account
        .sign_in("m@example.org", PASSWORD, "phone")
        .await
        .unwrap()
    else {
        panic!("members sign in with a password by default");
    };
    // The member's own settings document (registered, then filled).
    let id = account.create_settings().await.unwrap();
    let sync = core.start_sync(SyncConfig::with_account(server.url.clone(), &account));
    core.set_setting(id, "language", SettingValue::Text("de".into()))
        .unwrap();
    wait_until("the first change is confirmed", LIMIT, || async {
        core.sync_status().pending_changes == 0
    })
    .await;

    // An administrator ends the user's sessions: the client is asked to sign
    // in again; what it writes meanwhile waits.
    let mut state = account.watch_state();
    api.post(
        &format!("/api/users/{member}/sessions/revoke"),
        Some(&admin),
        json!({}),
    )
    .await
    .ok();
    tokio::time::timeout(
        LIMIT,
        state.wait_for(|s| matches!(s, SessionState::NeedsSignIn { .. })),
    )
    .await
    .expect("the client notices")
    .unwrap();
    core.set_setting(id, "language", SettingValue::Text("fr".into()))
        .unwrap();
    let SignInStep::SignedIn(_) = account
        .sign_in("m@example.org", PASSWORD, "phone")
        .await
        .unwrap()
    else {
        panic!("signed in again");
    };
    wait_until("the waiting change is confirmed", LIMIT, || async {
        core.sync_status().pending_changes == 0
    })
    .await;
    let stored = server
        .store
        .documents
        .load_document(id)
        .await
        .unwrap()
        .unwrap();
    assert!(!stored.chunks.is_empty() || stored.snapshot.is_some());

    // Revoking the device: the live connection closes, the client learns it
    // was revoked and wipes its documents.
    let mut events = core.subscribe();
    api.post(
        &format!("/api/devices/{}/revoke", session.device_id),
        Some(&admin),
        json!({}),
    )
    .await;
    tokio::time::timeout(LIMIT, state.wait_for(|s| *s == SessionState::Revoked))
        .await
        .expect("the client learns it was revoked")
        .unwrap();
    assert!(core.document_ids().is_empty(), "local documents wiped");
    let mut wiped = false;
    loop {
        match events.try_recv() {
            Ok(event) => wiped |= event == DocEvent::Wiped,
            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => continue,
            Err(_) => break,
        }
    }
    assert!(wiped, "the app is told");
    // Signing in again registers a new device.
    let SignInStep::SignedIn(fresh) = account
        .sign_in("m@example.org", PASSWORD, "phone")
        .await
        .unwrap()
    else {
        panic!("signed in as a new device");
    };
    assert_ne!(fresh.device_id, session.device_id);
    sync.stop().await;
    server.stop().await;
}

fn cut_for_expiry() -> f64 {
    sync_tests::metric_sum("sync_connections_cut_total", &["token_expired"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_is_closed_when_its_access_token_expires() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("server"));
    config.access_token_ttl_secs = 2;
    let server = InProcessServer::start(&config).await;
    create_user(&server.store, "mo@example.org", Role::Member, PASSWORD).await;
    let login = sync_tests::accounts::Api::new(&server.url)
        .login("mo@example.org", PASSWORD, "peer")
        .await
        .ok();
    let token = login["session"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    // A stock peer that never renews: told why, then closed, at expiry.
    let opened = std::time::Instant::now();
    let mut socket = sync_tests::raw::joined(&server.url, &token).await;
    match sync_tests::raw::next_message(&mut socket).await {
        Some(sync_protocol::Message::Error { message }) => {
            assert_eq!(message, sync_protocol::ACCESS_TOKEN_EXPIRED)
        }
        other => panic!("expected the expiry notice, got {other:?}"),
    }
    assert!(sync_tests::raw::next_message(&mut socket).await.is_none());
    let lived = opened.elapsed();
    assert!(
        lived < Duration::from_secs(4),
        "the socket outlived its token: {lived:?}"
    );
    assert!(cut_for_expiry() >= 1.0);
    // The expired token opens nothing new.
    let refused = sync_tests::accounts::Api::new(&server.url)
        .get("/api/me", &token)
        .await;
    assert_eq!(refused.status, 401);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_core_renews_its_socket_before_the_token_expires_and_loses_nothing() {
    use_mock_keychain();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("server"));
    // Tokens of 5 s (renewed 1 s early): renewals while the member writes.
    config.access_token_ttl_secs = 5;
    let server = InProcessServer::start(&config).await;
    create_user(&server.store, "mo@example.org", Role::Member, PASSWORD).await;
    let core = ClientCore::open(dir.path().join("phone.sqlite3")).unwrap();
    let account = Account::new(&core, &server.url).unwrap();
    account
        .sign_in("mo@example.org", PASSWORD, "phone")
        .await
        .unwrap();
    let sync = core.start_sync(SyncConfig::with_account(server.url.clone(), &account));
    let settings = account.create_settings().await.unwrap();
    wait_until("connected", LIMIT, || async {
        core.sync_status().connected
    })
    .await;
    let went_offline = sync_tests::ends_when_offline(&core);
    let connections_before = connections_opened();
    let started = std::time::Instant::now();
    let mut written = 0;
    while started.elapsed() < Duration::from_secs(12) {
        written += 1;
        core.set_setting(settings, "sounds", SettingValue::Bool(written % 2 == 0))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_until("every write reaches the server", LIMIT, || async {
        core.sync_status().pending_changes == 0
    })
    .await;
    // The server holds exactly the phone's document.
    let stored = server
        .store
        .documents
        .load_document(settings)
        .await
        .unwrap()
        .unwrap();
    let mut on_server = automerge::Automerge::new();
    for bytes in stored.snapshot.iter().chain(stored.chunks.iter()) {
        on_server.load_incremental(bytes).unwrap();
    }
    assert_eq!(on_server.get_heads(), core.heads(settings).unwrap());
    // Renewed ahead of expiry: new sockets, none cut by the server, and the
    // status never showed the phone offline.
    let renewals = connections_opened() - connections_before;
    assert!(
        renewals >= 2.0,
        "{renewals} connections in 12 s of 5 s tokens"
    );
    assert_eq!(cut_for_expiry(), 0.0, "the server had to cut a socket");
    assert!(
        core.sync_status().last_error.is_none(),
        "{:?}",
        core.sync_status()
    );
    assert!(
        !went_offline.is_finished(),
        "the status showed the phone offline during a renewal"
    );
    went_offline.abort();
    assert!(written >= 30, "{written} writes");
    sync.stop().await;
    server.stop().await;
}

fn connections_opened() -> f64 {
    sync_tests::metric_sum("sync_connections_total", &[])
}
