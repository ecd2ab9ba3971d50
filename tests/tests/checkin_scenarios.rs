//! Check-in scenarios through a real server on loopback: tablets scanning
//! offline, with overlapping attendees, reconnecting in random order, must
//! end with the same counts and the same duplicate list everywhere; a tablet
//! offline for a (simulated) week lands all its scans.

use std::time::Duration;

use client_core::event_model::rules::{Answer, Direction};
use client_core::{ClientCore, DocumentId, SyncConfig, SyncHandle};
use serde_json::json;
use sync_server::auth::{self, Role};
use sync_tests::accounts::Api;
use sync_tests::{InProcessServer, seed_event, test_config, wait_until};

const LIMIT: Duration = Duration::from_secs(60);

struct Setup {
    _dir: tempfile::TempDir,
    server: InProcessServer,
    token: String,
    admin: ClientCore,
    admin_sync: SyncHandle,
    event: DocumentId,
}

async fn setup(attendees: usize) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("server"));
    config.http_requests_per_second_per_ip = 0;
    let server = InProcessServer::start(&config).await;
    let (token, hash) = auth::new_token();
    server
        .store
        .accounts
        .create_api_key("scanners", Role::Admin, &hash)
        .await
        .unwrap();
    let admin = ClientCore::open(dir.path().join("admin.sqlite3")).unwrap();
    let event = seed_event(&admin, "conf", "Conference", &[("main", "Main")], attendees);
    Api::new(&server.url)
        .post(
            "/api/documents",
            Some(&token),
            json!({ "document_id": event.to_string(), "kind": "event", "scope": "conf" }),
        )
        .await
        .ok();
    let admin_sync = admin.start_sync(SyncConfig::new(server.url.clone(), &token));
    wait_until("the event reaches the server", LIMIT, || async {
        admin.sync_status().pending_changes == 0
    })
    .await;
    Setup {
        _dir: dir,
        server,
        token,
        admin,
        admin_sync,
        event,
    }
}

impl Setup {
    /// A tablet that has downloaded the event, then gone offline.
    async fn offline_tablet(&self, name: &str, expected: u64) -> ClientCore {
        let tablet = ClientCore::open(self._dir.path().join(format!("{name}.sqlite3"))).unwrap();
        let sync = tablet.start_sync(SyncConfig::new(self.server.url.clone(), &self.token));
        tablet.find(self.event).unwrap();
        wait_until("the tablet has every attendee", LIMIT, || async {
            tablet
                .counts(self.event, Some("main"))
                .is_ok_and(|c| c.expected == expected)
        })
        .await;
        sync.stop().await;
        tablet
    }
}

/// A deterministic shuffle (no randomness crate needed for one permutation).
fn shuffled<T>(mut items: Vec<T>, mut seed: u64) -> Vec<T> {
    for i in (1..items.len()).rev() {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        items.swap(i, (seed >> 33) as usize % (i + 1));
    }
    items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_offline_tablets_converge_on_the_same_counts_and_duplicates() {
    let s = setup(60).await;
    let mut tablets = Vec::new();
    for i in 0..5 {
        tablets.push(s.offline_tablet(&format!("tablet{i}"), 60).await);
    }
    // Overlapping ranges: tablet i scans guests 8i .. 8i+20 at the main door.
    let mut admitted = std::collections::BTreeSet::new();
    for (i, tablet) in tablets.iter().enumerate() {
        for g in (8 * i)..(8 * i + 20) {
            let result = tablet
                .check_in(s.event, &format!("T-{g:04}"), "main", Direction::Entry)
                .unwrap();
            assert_eq!(
                result.answer,
                Answer::Admitted,
                "offline, each tablet admits"
            );
            admitted.insert(g);
        }
    }
    // Back online, one after the other in a shuffled order.
    let mut syncs = Vec::new();
    for i in shuffled((0..5).collect(), 0x5eed) {
        syncs.push(tablets[i].start_sync(SyncConfig::new(s.server.url.clone(), &s.token)));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let total_scans = 5 * 20;
    wait_until("every tablet holds every scan", LIMIT, || async {
        tablets.iter().chain([&s.admin]).all(|t| {
            t.recent_scans(s.event, 1000)
                .is_ok_and(|scans| scans.len() == total_scans)
        })
    })
    .await;

    let reference = s.admin.counts(s.event, Some("main")).unwrap();
    assert_eq!(reference.expected, 60);
    assert_eq!(reference.checked_in, admitted.len() as u64);
    assert_eq!(reference.inside, admitted.len() as u64);
    let duplicate_ids = |core: &ClientCore| {
        core.duplicates(s.event)
            .unwrap()
            .into_iter()
            .map(|d| (d.scan.scan_id, d.original.map(|o| o.scan_id)))
            .collect::<Vec<_>>()
    };
    let duplicates = duplicate_ids(&s.admin);
    assert_eq!(
        duplicates.len(),
        total_scans - admitted.len(),
        "every repeated entry is flagged once"
    );
    for tablet in &tablets {
        assert_eq!(tablet.counts(s.event, Some("main")).unwrap(), reference);
        assert_eq!(duplicate_ids(tablet), duplicates);
    }
    // The review list says who and which original scan.
    let first = &s.admin.duplicates(s.event).unwrap()[0];
    assert!(first.attendee_name.starts_with("Guest "));
    assert!(first.original.is_some());

    for sync in syncs {
        sync.stop().await;
    }
    s.admin_sync.stop().await;
    s.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tablet_offline_for_a_week_lands_all_its_scans() {
    let s = setup(2_000).await;
    let tablet = s.offline_tablet("week", 2_000).await;
    // A week of scanning offline: every attendee in, on one tablet.
    for g in 0..2_000 {
        let code = format!("T-{g:04}");
        assert_eq!(
            tablet
                .check_in(s.event, &code, "main", Direction::Entry)
                .unwrap()
                .answer,
            Answer::Admitted
        );
    }
    assert_eq!(
        tablet.counts(s.event, Some("main")).unwrap().checked_in,
        2_000
    );
    let sync = tablet.start_sync(SyncConfig::new(s.server.url.clone(), &s.token));
    wait_until("the admin sees all 2,000 scans", LIMIT, || async {
        s.admin
            .counts(s.event, Some("main"))
            .is_ok_and(|c| c.checked_in == 2_000)
    })
    .await;
    assert!(s.admin.duplicates(s.event).unwrap().is_empty());
    sync.stop().await;
    s.admin_sync.stop().await;
    s.server.stop().await;
}

/// Signs a staff member in on a new tablet through client-core (enrolling
/// their authenticator with a code computed here).
async fn staff_tablet(s: &Setup, name: &str, email: &str) -> (ClientCore, client_core::Account) {
    use sync_tests::accounts::{hotp, secret_from_uri, unix_secs};
    let core = ClientCore::open(s._dir.path().join(format!("{name}.sqlite3"))).unwrap();
    let account = client_core::Account::new(&core, &s.server.url).unwrap();
    let client_core::SignInStep::EnrollmentRequired { challenge } = account
        .sign_in(email, "correct horse battery", name)
        .await
        .unwrap()
    else {
        panic!("staff enroll at first sign-in");
    };
    let enrollment = account.start_enrollment(&challenge).await.unwrap();
    let secret = secret_from_uri(&enrollment.otpauth_uri);
    account
        .confirm_enrollment(&challenge, &hotp(&secret, unix_secs() / 30, 6))
        .await
        .unwrap();
    (core, account)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_made_after_losing_the_event_are_quarantined_and_nothing_else_changes() {
    keyring_core::set_default_store(keyring_core::mock::Store::new().unwrap());
    let s = setup(60).await;
    let staff = sync_tests::create_user(
        &s.server.store,
        "sam@example.org",
        Role::Staff,
        "correct horse battery",
    )
    .await;
    let api = Api::new(&s.server.url);
    let assign = |events: serde_json::Value| {
        let api = api.clone();
        let (token, path) = (s.token.clone(), format!("/api/users/{staff}/events"));
        async move {
            api.call(
                reqwest::Method::PUT,
                &path,
                Some(&token),
                Some(json!({ "events": events })),
            )
            .await
            .ok();
        }
    };
    assign(json!(["conf"])).await;
    let (tablet, account) = staff_tablet(&s, "door-1", "sam@example.org").await;
    let sync = tablet.start_sync(SyncConfig::with_account(s.server.url.clone(), &account));
    tablet.find(s.event).unwrap();
    wait_until("the staff tablet downloads the event", LIMIT, || async {
        tablet
            .counts(s.event, Some("main"))
            .is_ok_and(|c| c.expected == 60)
    })
    .await;
    // One scan while assigned: accepted.
    let accepted = tablet
        .check_in(s.event, "T-0000", "main", Direction::Entry)
        .unwrap();
    assert_eq!(accepted.answer, Answer::Admitted);
    wait_until("the first scan reaches the admin", LIMIT, || async {
        s.admin
            .counts(s.event, Some("main"))
            .is_ok_and(|c| c.checked_in == 1)
    })
    .await;
    sync.stop().await;

    // Offline, the staff member is taken off the event; the tablet scans on.
    assign(json!([])).await;
    for g in 1..=50 {
        assert_eq!(
            tablet
                .check_in(s.event, &format!("T-{g:04}"), "main", Direction::Entry)
                .unwrap()
                .answer,
            Answer::Admitted
        );
    }
    assert_eq!(tablet.counts(s.event, Some("main")).unwrap().checked_in, 51);
    let mut events = tablet.subscribe();
    let sync = tablet.start_sync(SyncConfig::with_account(s.server.url.clone(), &account));
    // The 50 scans went into the document in a few changes (the scan
    // journal batches offline scans); every one of those is refused.
    let scan_operations = |q: &[client_core::QuarantinedChange]| -> usize {
        q.iter()
            .filter_map(|c| c.summary.split(' ').next()?.parse::<usize>().ok())
            .sum()
    };
    wait_until("the 50 refused scans are set aside", LIMIT, || async {
        tablet
            .quarantined_changes(s.event)
            .is_ok_and(|q| scan_operations(&q) == 50)
    })
    .await;
    // The tablet is back to what the server accepted (the first scan stays).
    assert_eq!(tablet.counts(s.event, Some("main")).unwrap().checked_in, 1);
    assert_eq!(tablet.sync_status().pending_changes, 0);
    let quarantined = tablet.quarantined_changes(s.event).unwrap();
    let refused_changes = quarantined.len();
    assert!((1..=50).contains(&refused_changes), "{quarantined:?}");
    assert!(
        quarantined[0].reason.contains("not allowed"),
        "{}",
        quarantined[0].reason
    );
    let mut told = 0;
    loop {
        match events.try_recv() {
            Ok(client_core::DocEvent::Quarantined { changes, .. }) => told += changes,
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => continue,
            Err(_) => break,
        }
    }
    assert_eq!(
        told, refused_changes,
        "the app is told of every refused change"
    );
    // The server and the other replicas did not change.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.admin.counts(s.event, Some("main")).unwrap().checked_in, 1);
    let stored = s
        .server
        .store
        .audit
        .audit_entries(0, 100_000)
        .await
        .unwrap();
    let refused: usize = stored
        .iter()
        .filter(|e| {
            e.entry.action == "document.write_rejected" && e.entry.actor == format!("user:{staff}")
        })
        .map(|e| e.entry.details["changes"].as_array().map_or(0, |c| c.len()))
        .sum();
    assert_eq!(
        refused, refused_changes,
        "the audit log records every refused change"
    );
    sync.stop().await;
    s.admin_sync.stop().await;
    s.server.stop().await;
}

/// Whether an attendee of `event` on `core` carries the rename staff may
/// not make ("Someone Else").
fn shows_the_rename(core: &ClientCore, event: DocumentId) -> bool {
    core.read_event(event)
        .unwrap()
        .attendees
        .iter()
        .any(|a| a.name == "Someone Else")
}

/// Sam, a staff member assigned to the event (`conf`); returns the user id.
async fn assigned_staff_member(s: &Setup) -> String {
    let staff = sync_tests::create_user(
        &s.server.store,
        "sam@example.org",
        Role::Staff,
        "correct horse battery",
    )
    .await;
    Api::new(&s.server.url)
        .call(
            reqwest::Method::PUT,
            &format!("/api/users/{staff}/events"),
            Some(&s.token),
            Some(json!({ "events": ["conf"] })),
        )
        .await
        .ok();
    staff
}

/// A staff member's tablet, signed in and assigned to the event, with the
/// event downloaded and its sync running.
async fn assigned_staff_tablet(
    s: &Setup,
    name: &str,
) -> (ClientCore, client_core::Account, SyncHandle) {
    assigned_staff_member(s).await;
    let (tablet, account) = staff_tablet(s, name, "sam@example.org").await;
    let sync = tablet.start_sync(SyncConfig::with_account(s.server.url.clone(), &account));
    tablet.find(s.event).unwrap();
    let expected = s.admin.counts(s.event, Some("main")).unwrap().expected;
    wait_until("the staff tablet downloads the event", LIMIT, || async {
        tablet
            .counts(s.event, Some("main"))
            .is_ok_and(|c| c.expected == expected)
    })
    .await;
    (tablet, account, sync)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_staff_may_not_make_is_refused_and_set_aside_while_scans_go_on() {
    keyring_core::set_default_store(keyring_core::mock::Store::new().unwrap());
    let s = setup(10).await;
    let (tablet, _account, sync) = assigned_staff_tablet(&s, "door-2").await;
    // Staff may not edit attendees: that change is refused and set aside.
    let mut renamed = tablet.read_event(s.event).unwrap().attendees[0].clone();
    renamed.name = "Someone Else".into();
    tablet.put_attendee(s.event, &renamed).unwrap();
    wait_until("the edit is set aside", LIMIT, || async {
        tablet
            .quarantined_changes(s.event)
            .is_ok_and(|q| q.len() == 1)
    })
    .await;
    assert!(
        tablet.quarantined_changes(s.event).unwrap()[0]
            .reason
            .contains("only add scans")
    );
    assert!(!shows_the_rename(&tablet, s.event));
    // Scanning goes on and reaches the server.
    let scan = tablet
        .check_in(s.event, "T-0003", "main", Direction::Entry)
        .unwrap();
    assert_eq!(scan.answer, Answer::Admitted);
    wait_until("the scan reaches the admin", LIMIT, || async {
        s.admin
            .counts(s.event, Some("main"))
            .is_ok_and(|c| c.checked_in == 1)
    })
    .await;
    assert!(
        !shows_the_rename(&s.admin, s.event),
        "the refused edit never reached anyone"
    );
    sync.stop().await;
    s.admin_sync.stop().await;
    s.server.stop().await;
}

/// Offline, a staff tablet makes a change staff may not make, then scans on:
/// the scans go into the document on top of the refused change. When the
/// server refuses it, the change is set aside, and the scans, which are
/// allowed, are kept: written again into the cleaned document, they reach
/// everyone. Nothing a door answered is lost to someone else's refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_made_after_a_refused_change_are_kept_and_reach_everyone() {
    keyring_core::set_default_store(keyring_core::mock::Store::new().unwrap());
    let s = setup(10).await;
    let (tablet, account, sync) = assigned_staff_tablet(&s, "door-3").await;
    sync.stop().await;

    let mut renamed = tablet.read_event(s.event).unwrap().attendees[0].clone();
    renamed.name = "Someone Else".into();
    tablet.put_attendee(s.event, &renamed).unwrap();
    for g in 1..=3 {
        let scan = tablet
            .check_in(s.event, &format!("T-{g:04}"), "main", Direction::Entry)
            .unwrap();
        assert_eq!(scan.answer, Answer::Admitted);
    }
    // The offline journal writes the scans into the document after a while:
    // then they are a change that depends on the edit.
    wait_until("the scans are in the document", LIMIT, || async {
        tablet.sync_status().pending_changes == 2
    })
    .await;

    let sync = tablet.start_sync(SyncConfig::with_account(s.server.url.clone(), &account));
    wait_until("the edit is set aside", LIMIT, || async {
        tablet
            .quarantined_changes(s.event)
            .is_ok_and(|q| !q.is_empty())
    })
    .await;
    wait_until("the three scans reach the admin", LIMIT, || async {
        s.admin
            .counts(s.event, Some("main"))
            .is_ok_and(|c| c.checked_in == 3)
    })
    .await;
    assert_eq!(tablet.counts(s.event, Some("main")).unwrap().checked_in, 3);
    // Only the edit is left to review: the scans went on.
    let quarantined = tablet.quarantined_changes(s.event).unwrap();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert!(quarantined[0].reason.contains("only add scans"));
    wait_until("nothing is left to upload", LIMIT, || async {
        tablet.sync_status().pending_changes == 0
    })
    .await;
    assert!(!shows_the_rename(&tablet, s.event));
    assert!(
        !shows_the_rename(&s.admin, s.event),
        "the refused edit never reached anyone"
    );
    sync.stop().await;
    s.admin_sync.stop().await;
    s.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tablets_see_each_other_online_and_the_dashboard_lists_them() {
    let s = setup(5).await;
    let door = ClientCore::open(s._dir.path().join("door.sqlite3")).unwrap();
    let door_sync = door.start_sync(SyncConfig::new(s.server.url.clone(), &s.token));
    door.find(s.event).unwrap();
    wait_until("the door tablet has the event", LIMIT, || async {
        door.counts(s.event, Some("main"))
            .is_ok_and(|c| c.expected == 5)
    })
    .await;
    door.set_presence(s.event, Some("main"));
    s.admin.set_presence(s.event, None);
    wait_until("the admin hears the door tablet", LIMIT, || async {
        s.admin
            .presence(s.event)
            .iter()
            .any(|p| p.list_id.as_deref() == Some("main"))
    })
    .await;
    wait_until("the door tablet hears the admin", LIMIT, || async {
        door.presence(s.event).iter().any(|p| p.list_id.is_none())
    })
    .await;
    // Fleet readiness: the door tablet holds the event, has nothing to
    // upload, and says its version.
    let heard = s.admin.presence(s.event);
    let door_heard = heard
        .iter()
        .find(|p| p.list_id.as_deref() == Some("main"))
        .unwrap();
    assert_eq!(door_heard.holds_event, Some(true), "{door_heard:?}");
    assert_eq!(
        door_heard.app_version.as_deref(),
        Some(client_core::APP_VERSION)
    );
    assert!(door_heard.pending_uploads.is_some());
    // Connected, its uploads go at once: nothing left to send.
    wait_until("the door tablet has nothing waiting", LIMIT, || async {
        s.admin
            .presence(s.event)
            .iter()
            .any(|p| p.list_id.as_deref() == Some("main") && p.pending_uploads == Some(0))
    })
    .await;
    let api = Api::new(&s.server.url);
    let path = format!("/api/presence?document_id={}", s.event);
    let online = api.get(&path, &s.token).await.ok();
    let online = online.as_array().unwrap();
    assert_eq!(online.len(), 2, "{online:?}");
    assert!(online.iter().any(|p| p["list_id"] == "main" && p["actor"].as_str().unwrap().starts_with("api_key:")));
    // Gone when its connection is.
    door_sync.stop().await;
    wait_until("the dashboard drops the door tablet", LIMIT, || async {
        api.get(&path, &s.token)
            .await
            .body
            .as_array()
            .is_some_and(|a| a.len() == 1)
    })
    .await;
    s.admin_sync.stop().await;
    s.server.stop().await;
}

/// Signed codes through a real server: an administrator issues a code over
/// REST (the server signs with the event's key, derived from its sealed
/// secret), a staff tablet that has only signed in and learned the event's
/// key admits it before the event's document has reached it, refuses an
/// altered one, and after its download agrees with the administrator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_tablet_admits_a_code_the_server_signed_before_its_download() {
    keyring_core::set_default_store(keyring_core::mock::Store::new().unwrap());
    let s = setup(300).await;
    let api = Api::new(&s.server.url);
    let key = api
        .get(&format!("/api/events/{}/ticket-key", s.event), &s.token)
        .await
        .ok();
    let public_key = key["public_key"].as_str().unwrap().to_owned();
    assert!(public_key.starts_with("ed25519:"));
    // The administrator puts it into the event (`Account::enable_signed_tickets`).
    s.admin.set_ticket_key(s.event, &public_key).unwrap();
    let guest = s.admin.search_attendees(s.event, "T-0007", 1).unwrap()[0].clone();
    let issued = api
        .post(
            &format!("/api/events/{}/tickets", s.event),
            Some(&s.token),
            json!({ "attendee_id": guest.attendee_id, "ticket_type": "day" }),
        )
        .await
        .ok();
    let code = issued["code"].as_str().unwrap().to_owned();
    assert_eq!(issued["public_key"].as_str(), Some(public_key.as_str()));
    assert!(!issued["qr_png_base64"].as_str().unwrap().is_empty());
    // Bad requests are named; another document has no ticket key.
    let too_long = api
        .post(
            &format!("/api/events/{}/tickets", s.event),
            Some(&s.token),
            json!({ "attendee_id": "a", "ticket_type": "x".repeat(65) }),
        )
        .await;
    assert_eq!(too_long.error(), "bad_request");
    let backwards = api
        .post(
            &format!("/api/events/{}/tickets", s.event),
            Some(&s.token),
            json!({ "attendee_id": "a", "valid_from_ms": 2_000, "valid_until_ms": 1_000 }),
        )
        .await;
    assert_eq!(backwards.error(), "bad_request");
    let elsewhere = api
        .get(
            &format!("/api/events/{}/ticket-key", DocumentId::random()),
            &s.token,
        )
        .await;
    assert_eq!(elsewhere.error(), "not_found");

    // A staff member's fresh tablet: signed in, nothing downloaded.
    assigned_staff_member(&s).await;
    let (tablet, account) = staff_tablet(&s, "fresh", "sam@example.org").await;
    account.learn_ticket_key(s.event).await.unwrap();
    assert!(!tablet.has_document(s.event));
    let admitted = tablet
        .check_in(s.event, &code, "main", Direction::Entry)
        .unwrap();
    assert_eq!(admitted.answer, Answer::Admitted);
    assert!(admitted.verified_by_signature);
    let mut altered = code.clone().into_bytes();
    let at = altered.len() - 3;
    altered[at] = if altered[at] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    assert_eq!(
        tablet
            .check_in(s.event, &altered, "main", Direction::Entry)
            .unwrap()
            .answer,
        Answer::InvalidSignature
    );
    // Staff check codes; they do not issue them.
    let refused = account
        .issue_ticket(
            s.event,
            &client_core::IssueTicketRequest {
                attendee_id: guest.attendee_id.clone(),
                ticket_type: "day".into(),
                valid_from_ms: None,
                valid_until_ms: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some("forbidden"));

    // Online, the tablet downloads the event, its scan reaches everyone,
    // and the guest's plain code is now the same ticket, already in.
    let tablet_sync = tablet.start_sync(SyncConfig::with_account(s.server.url.clone(), &account));
    wait_until(
        "the tablet's signed scan reaches the admin",
        LIMIT,
        || async {
            s.admin
                .counts(s.event, Some("main"))
                .is_ok_and(|c| c.checked_in == 1)
        },
    )
    .await;
    wait_until("the tablet downloads the event", LIMIT, || async {
        tablet
            .counts(s.event, Some("main"))
            .is_ok_and(|c| c.expected == 300 && c.checked_in == 1)
    })
    .await;
    assert!(matches!(
        s.admin
            .check_in(s.event, &guest.ticket_code, "main", Direction::Entry)
            .unwrap()
            .answer,
        Answer::AlreadyCheckedIn { .. }
    ));
    let again = tablet
        .check_in(s.event, &code, "main", Direction::Entry)
        .unwrap();
    assert!(matches!(again.answer, Answer::AlreadyCheckedIn { .. }));
    assert_eq!(
        again.attendee.unwrap().name,
        "Guest 7",
        "the downloaded record"
    );
    tablet_sync.stop().await;
    s.admin_sync.stop().await;
    s.server.stop().await;
}
