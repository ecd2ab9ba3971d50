//! Per-document rights over the real sync protocol: every role (admin,
//! staff, member, and an API key scoped to staff) against every kind of
//! document (event assigned / not assigned, own / someone else's settings,
//! the organisation configuration, a generic document), for read and write.
//! A denied read answers `doc-unavailable`; a denied write is refused with an
//! error; both are audited.

use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{Automerge, ROOT};
use serde_json::json;
use sync_protocol::{DocumentId, Message};
use sync_server::auth::{self, Role};
use sync_tests::accounts::{Api, enroll};
use sync_tests::raw::{joined_as, next_message, send};
use sync_tests::{InProcessServer, create_user, root_string, test_config};

const PASSWORD: &str = "correct horse battery";

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Both sides hold the same heads.
    Synced,
    Unavailable,
    Refused(String),
}

/// Runs the sync exchange for one document until both sides agree, or the
/// server says no. The first message is a `request` when `doc` is empty.
async fn exchange(url: &str, token: &str, id: DocumentId, doc: &mut Automerge) -> Outcome {
    let (mut socket, server) = joined_as(url, token, "matrix-peer").await;
    let mut state = sync::State::new();
    let mut first = doc.get_heads().is_empty();
    loop {
        if let Some(m) = doc.generate_sync_message(&mut state) {
            let data = m.encode();
            let message = if first {
                Message::Request {
                    sender_id: "matrix-peer".into(),
                    target_id: server.clone(),
                    document_id: id,
                    data,
                }
            } else {
                Message::Sync {
                    sender_id: "matrix-peer".into(),
                    target_id: server.clone(),
                    document_id: id,
                    data,
                }
            };
            first = false;
            send(&mut socket, &message).await;
        }
        match next_message(&mut socket).await {
            Some(Message::Sync { data, .. }) => {
                doc.receive_sync_message(&mut state, sync::Message::decode(&data).unwrap())
                    .unwrap();
                let heads = doc.get_heads();
                if !heads.is_empty() && state.their_heads.as_ref() == Some(&heads) {
                    return Outcome::Synced;
                }
            }
            Some(Message::DocUnavailable { .. }) => return Outcome::Unavailable,
            Some(Message::Error { message }) => return Outcome::Refused(message),
            None => return Outcome::Refused("closed".into()),
            Some(_) => {}
        }
    }
}

/// Creates a document with `title` (as an admin). Event and settings
/// documents are made in their shape, since the server validates what is
/// written to them: an event carries the title in its details, settings in
/// their default check-in list, the organisation configuration in its name,
/// generic documents at the root.
async fn create(url: &str, admin: &str, title: &str, kind: &str) -> DocumentId {
    use client_core::settings_model::{self, SettingValue};
    let id = DocumentId::random();
    let mut doc = Automerge::new();
    let mut tx = doc.transaction();
    match kind {
        "event" => client_core::event_model::document::init(
            &mut tx,
            &client_core::event_model::EventInfo::new("e", title),
        )
        .unwrap(),
        "settings" => {
            settings_model::init(&mut tx).unwrap();
            settings_model::set(
                &mut tx,
                "default_checkin_list",
                &SettingValue::Text(title.into()),
            )
            .unwrap();
        }
        "org_config" => {
            settings_model::org::init(&mut tx).unwrap();
            settings_model::org::set(
                &mut tx,
                "organisation_name",
                &SettingValue::Text(title.into()),
            )
            .unwrap();
        }
        _ => {
            tx.put(ROOT, "title", title).unwrap();
        }
    }
    tx.commit();
    assert_eq!(exchange(url, admin, id, &mut doc).await, Outcome::Synced);
    id
}

/// Whether `token` may read, and then write, document `id` (an event
/// document gets a scan signed by `user`, the one change staff may make).
async fn probe(url: &str, token: &str, id: DocumentId, title: &str, user: &str) -> (bool, bool) {
    let mut doc = Automerge::new();
    match exchange(url, token, id, &mut doc).await {
        Outcome::Synced => {
            let seen = if let Ok(info) = client_core::event_model::document::read_info(&doc) {
                Some(info.name)
            } else if let Ok(settings) = client_core::settings_model::read(&doc) {
                settings.default_checkin_list
            } else if let Ok(config) = client_core::settings_model::org::read(&doc) {
                Some(config.organisation_name)
            } else {
                root_string(&doc, "title")
            };
            assert_eq!(seen.as_deref(), Some(title));
        }
        Outcome::Unavailable => return (false, false),
        Outcome::Refused(reason) => panic!("a read was refused with an error: {reason}"),
    }
    // A fresh key each time: automerge makes no change for a put of the value already there.
    let heads = doc.get_heads();
    let mut tx = doc.transaction();
    if client_core::event_model::document::check(&tx).is_ok() {
        let scan = client_core::event_model::Scan {
            id: DocumentId::random().to_string(),
            attendee_id: "a".into(),
            list_id: "main".into(),
            direction: client_core::event_model::Direction::Entry,
            device_id: "d".into(),
            staff_id: user.into(),
            hlc: client_core::event_model::Hlc {
                wall_ms: 1,
                counter: 0,
                node: "d".into(),
            },
            wall_ms: 1,
            by_signature: false,
            payment_taken: false,
        };
        client_core::event_model::document::put_scan(&mut tx, &scan).unwrap();
    } else if client_core::settings_model::read(&tx).is_ok() {
        let language = format!("x-{}", &DocumentId::random().to_string()[..8]);
        client_core::settings_model::set(
            &mut tx,
            "language",
            &client_core::settings_model::SettingValue::Text(language),
        )
        .unwrap();
    } else if client_core::settings_model::org::read(&tx).is_ok() {
        let contact = format!("desk {}", DocumentId::random());
        client_core::settings_model::org::set(
            &mut tx,
            "support_contact",
            &client_core::settings_model::SettingValue::Text(contact),
        )
        .unwrap();
    } else {
        tx.put(ROOT, format!("edit-{}", DocumentId::random()), true)
            .unwrap();
    }
    tx.commit();
    assert_ne!(doc.get_heads(), heads);
    match exchange(url, token, id, &mut doc).await {
        Outcome::Synced => (true, true),
        Outcome::Refused(reason) => {
            assert!(reason.contains("not change"), "{reason}");
            (true, false)
        }
        Outcome::Unavailable => panic!("a readable document became unavailable"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_against_every_document_kind() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.sign_in_free_attempts = 50;
    let server = InProcessServer::start(&config).await;
    let api = Api::new(&server.url);
    let url = server.url.clone();
    let store = server.store.clone();

    let (admin_key, hash) = auth::new_token();
    store
        .accounts
        .create_api_key("admin", Role::Admin, &hash)
        .await
        .unwrap();
    let (staff_key, hash) = auth::new_token();
    store
        .accounts
        .create_api_key("door scanner", Role::Staff, &hash)
        .await
        .unwrap();
    let admin_id = create_user(&store, "admin@example.org", Role::Admin, PASSWORD).await;
    let staff_id = create_user(&store, "staff@example.org", Role::Staff, PASSWORD).await;
    let member_id = create_user(&store, "member@example.org", Role::Member, PASSWORD).await;
    api.call(
        reqwest::Method::PUT,
        &format!("/api/users/{staff_id}/events"),
        Some(&admin_key),
        Some(json!({ "events": ["event-1"] })),
    )
    .await
    .ok();

    let docs = [
        ("event assigned", "event", Some("event-1")),
        ("event other", "event", Some("event-2")),
        ("staff settings", "settings", Some(staff_id.as_str())),
        ("member settings", "settings", Some(member_id.as_str())),
        ("org config", "org_config", None),
        ("generic", "", None),
    ];
    let mut ids = Vec::new();
    for (title, kind, scope) in docs {
        let id = create(&url, &admin_key, title, kind).await;
        if !kind.is_empty() {
            api.post(
                "/api/documents",
                Some(&admin_key),
                json!({ "document_id": id.to_string(), "kind": kind, "scope": scope }),
            )
            .await
            .ok();
        }
        ids.push((title, id));
    }

    let admin = enroll(&api, "admin@example.org", PASSWORD, "desk").await;
    let staff = enroll(&api, "staff@example.org", PASSWORD, "door").await;
    let member = api
        .login("member@example.org", PASSWORD, "phone")
        .await
        .ok()["session"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    // (read, write) for: event assigned, event other, staff settings,
    // member settings, org config, generic.
    let rw = (true, true);
    let r = (true, false);
    let none = (false, false);
    let expected = [
        (
            "admin",
            admin.access().to_owned(),
            admin_id.as_str(),
            [rw, rw, rw, rw, rw, rw],
        ),
        (
            "staff",
            staff.access().to_owned(),
            staff_id.as_str(),
            [rw, none, rw, none, r, none],
        ),
        (
            "member",
            member.clone(),
            member_id.as_str(),
            [none, none, none, rw, r, none],
        ),
        (
            "staff API key",
            staff_key.clone(),
            "",
            [none, none, none, none, r, none],
        ),
    ];
    // The document list shows each principal what it may read, and only that.
    for (role, token, _, rights) in &expected {
        let listed = api.get("/api/documents", token).await.ok();
        let mut listed: Vec<String> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["document_id"].as_str().unwrap().to_owned())
            .collect();
        listed.sort();
        // Generic documents are not registered, so never listed.
        let mut readable: Vec<String> = ids
            .iter()
            .zip(rights)
            .filter(|((title, _), want)| want.0 && *title != "generic")
            .map(|((_, id), _)| id.to_string())
            .collect();
        readable.sort();
        assert_eq!(listed, readable, "{role}: GET /api/documents");
    }
    let events = api
        .get("/api/documents?kind=event", staff.access())
        .await
        .ok();
    assert_eq!(events.as_array().unwrap().len(), 1, "{events}");
    assert_eq!(events[0]["scope"], "event-1");

    let mut denied_reads = 0;
    let mut denied_writes = 0;
    for (role, token, user, rights) in &expected {
        for ((title, id), want) in ids.iter().zip(rights) {
            let got = probe(&url, token, *id, title, user).await;
            assert_eq!(got, *want, "{role} on {title}: (read, write)");
            denied_reads += usize::from(!got.0);
            denied_writes += usize::from(got.0 && !got.1);
        }
    }

    // Registration: a member registers their own settings, nothing else; a
    // registered document keeps its kind.
    let own = DocumentId::random();
    let register = |token: &str, id: DocumentId, kind: &str, scope: Option<&str>| {
        let api = api.clone();
        let (token, scope, kind) = (token.to_owned(), scope.map(str::to_owned), kind.to_owned());
        async move {
            api.post(
                "/api/documents",
                Some(&token),
                json!({ "document_id": id.to_string(), "kind": kind, "scope": scope }),
            )
            .await
        }
    };
    assert_eq!(register(&member, own, "settings", None).await.status, 201);
    assert_eq!(
        register(&member, own, "settings", None).await.status,
        201,
        "idempotent"
    );
    assert_eq!(
        register(&member, DocumentId::random(), "event", Some("event-1"))
            .await
            .status,
        403
    );
    assert_eq!(
        register(&member, DocumentId::random(), "settings", Some(&staff_id))
            .await
            .status,
        403
    );
    assert_eq!(
        register(&admin_key, own, "org_config", None).await.status,
        409
    );
    // The member can now create and sync that document, in the settings shape.
    let mut doc = Automerge::new();
    let mut tx = doc.transaction();
    tx.put(ROOT, "theme", "dark").unwrap();
    tx.commit();
    assert!(matches!(
        exchange(&url, &member, own, &mut doc).await,
        Outcome::Refused(reason) if reason.contains("not part of a settings document")
    ));
    let mut doc = Automerge::new();
    let mut tx = doc.transaction();
    client_core::settings_model::init(&mut tx).unwrap();
    client_core::settings_model::set(
        &mut tx,
        "theme",
        &client_core::settings_model::SettingValue::Text("dark".into()),
    )
    .unwrap();
    tx.commit();
    assert_eq!(
        exchange(&url, &member, own, &mut doc).await,
        Outcome::Synced
    );

    // Removing the staff member from the event takes effect at once.
    api.call(
        reqwest::Method::PUT,
        &format!("/api/users/{staff_id}/events"),
        Some(&admin_key),
        Some(json!({ "events": [] })),
    )
    .await
    .ok();
    assert_eq!(
        probe(&url, staff.access(), ids[0].1, ids[0].0, &staff_id).await,
        none
    );

    let log = store.audit.audit_entries(0, 100_000).await.unwrap();
    let count = |action: &str| log.iter().filter(|e| e.entry.action == action).count();
    assert_eq!(count("document.read_denied"), denied_reads + 1);
    // ...and the settings document first sent in the wrong shape.
    assert_eq!(count("document.write_rejected"), denied_writes + 1);
    assert!(count("document.registered") >= 6);
    let staff_denial = log
        .iter()
        .find(|e| {
            e.entry.action == "document.read_denied" && e.entry.actor == format!("user:{staff_id}")
        })
        .expect("staff denials are audited under the user");
    assert!(staff_denial.entry.device.is_some(), "with the device");
    server.stop().await;
}
