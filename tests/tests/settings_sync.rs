//! Member settings across devices, through a real server: three devices of
//! one member (signed in through client-core), a change on one reaches the
//! other two; export and import; a device still on the old schema migrates
//! and converges with the others.

use std::time::Duration;

use client_core::{Account, ClientCore, SettingValue, SignInStep, SyncConfig};
use serde_json::json;
use sync_server::auth::Role;
use sync_tests::accounts::Api;
use sync_tests::{InProcessServer, create_user, test_config, wait_until};

const LIMIT: Duration = Duration::from_secs(30);
const PASSWORD: &str = "correct horse battery";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settings_change_on_one_device_reaches_the_other_two() {
    keyring_core::set_default_store(keyring_core::mock::Store::new().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("server"));
    // Back settings up as soon as they change (the default waits 30 s).
    config.settings_backup_debounce_secs = 0;
    let server = InProcessServer::start(&config).await;
    create_user(&server.store, "m@example.org", Role::Member, PASSWORD).await;

    let mut devices = Vec::new();
    for name in ["phone", "laptop", "tablet"] {
        let core = ClientCore::open(dir.path().join(format!("{name}.sqlite3"))).unwrap();
        let account = Account::new(&core, &server.url).unwrap();
        let SignInStep::SignedIn(_) = account
            .sign_in("m@example.org", PASSWORD, name)
            .await
            .unwrap()
        else {
            panic!("members sign in with a password");
        };
        let sync = core.start_sync(SyncConfig::with_account(server.url.clone(), &account));
        devices.push((core, account, sync));
    }
    // The first device makes the settings document, registered as the member's.
    let settings = devices[0].1.create_settings().await.unwrap();
    devices[0]
        .0
        .set_setting(settings, "theme", SettingValue::Text("dark".into()))
        .unwrap();
    // The other devices find it through the server instead of making their own.
    for (_, account, _) in &devices[1..] {
        assert_eq!(account.open_settings().await.unwrap(), settings);
    }
    wait_until("every device has the dark theme", LIMIT, || async {
        devices
            .iter()
            .all(|(core, _, _)| core.settings(settings).is_ok_and(|s| s.theme == "dark"))
    })
    .await;

    // A change on the laptop reaches the phone and the tablet.
    devices[1]
        .0
        .set_setting(settings, "sounds", SettingValue::Bool(false))
        .unwrap();
    assert!(
        devices[1]
            .0
            .set_setting(settings, "theme", SettingValue::Text("neon".into()))
            .is_err()
    );
    wait_until("sounds off everywhere", LIMIT, || async {
        devices
            .iter()
            .all(|(core, _, _)| core.settings(settings).is_ok_and(|s| !s.sounds))
    })
    .await;

    // Export from one device, import on another: a new change everyone gets.
    let exported = devices[2].0.export_settings(settings).unwrap();
    assert_eq!(exported["theme"], "dark");
    devices[0]
        .0
        .import_settings(settings, &json!({ "theme": "light", "language": "pt-BR" }))
        .unwrap();
    wait_until("the import reaches every device", LIMIT, || async {
        devices.iter().all(|(core, _, _)| {
            core.settings(settings)
                .is_ok_and(|s| s.theme == "light" && s.language == "pt-BR" && !s.sounds)
        })
    })
    .await;
    assert_eq!(devices[1].0.settings_document().unwrap(), Some(settings));

    // The server kept versions; restoring the first one reaches every device.
    let account = &devices[2].1;
    wait_until("the server backs the settings up", LIMIT, || async {
        // Polled gently: the API limits requests per user.
        tokio::time::sleep(Duration::from_millis(200)).await;
        account.settings_backups(settings).await.unwrap().len() >= 3
    })
    .await;
    let backups = account.settings_backups(settings).await.unwrap();
    let (first, _, content) = backups
        .iter()
        .rev()
        .find(|(_, _, s)| s["theme"] == "dark" && s["sounds"] == true)
        .expect("the dark-theme version with sounds on")
        .clone();
    assert_eq!(content["language"], "en");
    account
        .restore_settings_backup(settings, &first)
        .await
        .unwrap();
    wait_until("the restore reaches every device", LIMIT, || async {
        devices.iter().all(|(core, _, _)| {
            core.settings(settings)
                .is_ok_and(|s| s.theme == "dark" && s.sounds && s.language == "en")
        })
    })
    .await;
    assert!(
        server
            .store
            .audit
            .audit_entries(0, 10_000)
            .await
            .unwrap()
            .iter()
            .any(|e| e.entry.action == "settings.restored")
    );

    // The server checks settings too: a value no app would write (made here
    // around the typed API) is refused and set aside on the device.
    let values = devices[0]
        .0
        .read(settings, |doc| {
            use automerge::ReadDoc;
            doc.get(automerge::ROOT, "values").unwrap().unwrap().1
        })
        .unwrap();
    devices[0]
        .0
        .change(settings, |tx| {
            use automerge::transaction::Transactable;
            tx.put(&values, "theme", "pink")
        })
        .unwrap();
    wait_until("the invalid value is set aside", LIMIT, || async {
        devices[0]
            .0
            .quarantined_changes(settings)
            .is_ok_and(|q| q.len() == 1)
    })
    .await;
    assert_eq!(devices[0].0.settings(settings).unwrap().theme, "dark");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        devices[1..]
            .iter()
            .all(|(core, _, _)| core.settings(settings).is_ok_and(|s| s.theme == "dark"))
    );

    // Another member cannot read these settings.
    create_user(&server.store, "x@example.org", Role::Member, PASSWORD).await;
    let other = Api::new(&server.url)
        .login("x@example.org", PASSWORD, "x")
        .await
        .ok()["session"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut socket = sync_tests::raw::joined(&server.url, &other).await;
    let request = sync_protocol::Message::Request {
        sender_id: "raw-peer".into(),
        target_id: "server".into(),
        document_id: settings,
        data: {
            use automerge::sync::SyncDoc;
            automerge::Automerge::new()
                .generate_sync_message(&mut automerge::sync::State::new())
                .unwrap()
                .encode()
        },
    };
    sync_tests::raw::send(&mut socket, &request).await;
    assert!(matches!(
        sync_tests::raw::next_message(&mut socket).await,
        Some(sync_protocol::Message::DocUnavailable { .. })
    ));

    for (_, _, sync) in devices {
        sync.stop().await;
    }
    server.stop().await;
}

/// The organisation configuration: an admin creates and edits it, a member's
/// device finds it through the server and reads it, the member's own edit is
/// refused and set aside, and so is an admin's value no app would write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_organisation_configuration_is_written_by_admins_and_read_by_everyone() {
    keyring_core::set_default_store(keyring_core::mock::Store::new().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("server"));
    // Password-only sign-in here: two-factor sign-in has its own tests.
    config.require_2fa_roles.clear();
    let server = InProcessServer::start(&config).await;
    let mut devices = Vec::new();
    for (email, role) in [
        ("admin@example.org", Role::Admin),
        ("m@example.org", Role::Member),
    ] {
        create_user(&server.store, email, role, PASSWORD).await;
        let core = ClientCore::open(dir.path().join(format!("{email}.sqlite3"))).unwrap();
        let account = Account::new(&core, &server.url).unwrap();
        let SignInStep::SignedIn(_) = account.sign_in(email, PASSWORD, email).await.unwrap() else {
            panic!("password-only sign-in");
        };
        devices.push((core, account));
    }
    let (admin, admin_account) = &devices[0];
    let (member, member_account) = &devices[1];
    assert_eq!(member_account.open_org_config().await.unwrap(), None);

    let org = admin_account.create_org_config().await.unwrap();
    admin
        .set_org_config(org, "organisation_name", SettingValue::Text("Acme".into()))
        .unwrap();
    admin
        .set_org_config(org, "kiosk_pin_length", SettingValue::Int(4))
        .unwrap();
    assert!(
        admin
            .set_org_config(org, "kiosk_pin_length", SettingValue::Int(2))
            .is_err()
    );
    // One configuration per organisation.
    let second = admin_account.create_org_config().await.unwrap_err();
    assert_eq!(second.code(), Some("conflict"), "{second}");
    assert!(second.to_string().contains(&org.to_string()), "{second}");

    assert_eq!(member_account.open_org_config().await.unwrap(), Some(org));
    assert_eq!(
        member.org_config(org).unwrap(),
        client_core::settings_model::org::OrgConfig::default(),
        "defaults until the document arrives"
    );
    let admin_sync = admin.start_sync(SyncConfig::with_account(server.url.clone(), admin_account));
    let member_sync =
        member.start_sync(SyncConfig::with_account(server.url.clone(), member_account));
    wait_until(
        "the member's device has the configuration",
        LIMIT,
        || async {
            member
                .org_config(org)
                .is_ok_and(|c| c.organisation_name == "Acme" && c.kiosk_pin_length == 4)
        },
    )
    .await;

    // The member may read, not write: the edit is set aside on the device.
    member
        .set_org_config(org, "organisation_name", SettingValue::Text("Mine".into()))
        .unwrap();
    wait_until("the member's edit is set aside", LIMIT, || async {
        member.quarantined_changes(org).is_ok_and(|q| q.len() == 1)
    })
    .await;
    assert_eq!(member.org_config(org).unwrap().organisation_name, "Acme");

    // An admin's value outside the rules (written around the typed API) is refused too.
    let values = admin
        .read(org, |doc| {
            use automerge::ReadDoc;
            doc.get(automerge::ROOT, "values").unwrap().unwrap().1
        })
        .unwrap();
    admin
        .change(org, |tx| {
            use automerge::transaction::Transactable;
            tx.put(&values, "kiosk_pin_length", 99)
        })
        .unwrap();
    wait_until("the admin's invalid value is set aside", LIMIT, || async {
        admin.quarantined_changes(org).is_ok_and(|q| q.len() == 1)
    })
    .await;
    // A valid edit after it still reaches the member.
    admin
        .set_org_config(org, "default_annul_window_minutes", SettingValue::Int(30))
        .unwrap();
    wait_until("the next edit reaches the member", LIMIT, || async {
        member
            .org_config(org)
            .is_ok_and(|c| c.default_annul_window_minutes == 30 && c.kiosk_pin_length == 4)
    })
    .await;
    assert_eq!(admin.org_config(org).unwrap().kiosk_pin_length, 4);
    admin_sync.stop().await;
    member_sync.stop().await;
    server.stop().await;
}
