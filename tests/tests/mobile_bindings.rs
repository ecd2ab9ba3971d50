//! The mobile bindings, really loaded: the generated Python module and the
//! generated Kotlin (on the JVM, through JNA) drive the built library against
//! real servers on loopback. `tests/mobile/build.sh` builds the library,
//! generates the sources and compiles the Kotlin test (tests/run.sh runs it
//! first).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use client_core::{ClientCore, SyncConfig};
use serde_json::json;
use sync_server::auth::{self, Role};
use sync_tests::accounts::{Api, enroll};
use sync_tests::tls::{TestCa, with_tls};
use sync_tests::{
    InProcessServer, create_user, seed_event, test_config, wait_until, workspace_binary,
};

const PASSWORD: &str = "correct horse battery";

/// `target/mobile`, as tests/mobile/build.sh leaves it.
fn generated() -> PathBuf {
    let dir = workspace_binary("sync-server")
        .parent()
        .and_then(|profile| profile.parent())
        .expect("target dir")
        .join("mobile");
    assert!(
        dir.join("python/sync_core.py").exists() && dir.join("kotlin/tablet-day.jar").exists(),
        "{} is incomplete: run tests/mobile/build.sh (tests/run.sh does)",
        dir.display()
    );
    dir
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

fn report(what: &str, output: &std::process::Output) {
    println!(
        "---- {what} stdout ----\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
    println!(
        "---- {what} stderr ----\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{what} failed: {}", output.status);
}

#[test]
fn python_drives_a_whole_tablet_day() {
    let generated = generated();
    let work = tempfile::tempdir().unwrap();
    // The tablets sign in and sync over TLS, trusting a CA made here.
    let ca = TestCa::new("Venue CA");
    let (cert, key) = ca.issue().write(&work.path().join("tls"));
    let ca_file = work.path().join("tls/ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let output = Command::new("python3")
        .arg(workspace_root().join("tests/mobile/tablet_day.py"))
        .env("BINDINGS_DIR", generated.join("python"))
        .env("SYNC_SERVER_BIN", workspace_binary("sync-server"))
        .env("EVENT_FIXTURE_BIN", workspace_binary("event-fixture"))
        .env("WORK_DIR", work.path())
        .env("TLS_CERT", cert)
        .env("TLS_KEY", key)
        .env("TLS_CA", ca_file)
        .output()
        .expect("run python3");
    report("tablet_day.py", &output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("tablet day complete"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kotlin_signs_in_and_scans_on_the_jvm() {
    let generated = generated();
    let dir = tempfile::tempdir().unwrap();
    // Over TLS: the Kotlin tablet trusts the CA made here, passed as a PEM file.
    let ca = TestCa::new("Venue CA");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let config = with_tls(
        test_config(&dir.path().join("server")),
        &dir.path().join("tls"),
        &ca.issue(),
    );
    let server = InProcessServer::start(&config).await;
    assert!(server.url.starts_with("wss://"));
    let staff = create_user(&server.store, "kim@example.org", Role::Staff, PASSWORD).await;
    let api = Api::trusting(&server.url, ca.pem());
    let enrolled = enroll(&api, "kim@example.org", PASSWORD, "desk").await;
    let (token, hash) = auth::new_token();
    server
        .store
        .accounts
        .create_api_key("admin", Role::Admin, &hash)
        .await
        .unwrap();

    // The event: made by an admin replica, registered, assigned, uploaded.
    let admin = ClientCore::open(dir.path().join("admin.sqlite3")).unwrap();
    let event = seed_event(&admin, "k-day", "Kotlin day", &[("main", "Main")], 50);
    let later_opens_at = sync_tests::add_later_door(&admin, event);
    // T-0007, the Kotlin tablet's first scan, needs an ID check.
    admin
        .put_attendee(
            event,
            &client_core::event_model::Attendee {
                id: "T-0007".into(),
                ticket_code: "T-0007".into(),
                name: "Guest 7".into(),
                email: "guest7@example.org".into(),
                attention: Some("ID check: 18+".into()),
                ..Default::default()
            },
        )
        .unwrap();
    api.post(
        "/api/documents",
        Some(&token),
        json!({ "document_id": event.to_string(), "kind": "event", "scope": "k-day" }),
    )
    .await
    .ok();
    api.call(
        reqwest::Method::PUT,
        &format!("/api/users/{staff}/events"),
        Some(&token),
        Some(json!({ "events": ["k-day"] })),
    )
    .await
    .ok();
    let trust = client_core::ServerTrust::default()
        .with_extra_ca_pem(ca.pem())
        .unwrap();
    let admin_sync =
        admin.start_sync(SyncConfig::new(server.url.clone(), &token).with_trust(trust));
    wait_until(
        "the event reaches the server",
        Duration::from_secs(30),
        || async { admin.sync_status().pending_changes == 0 },
    )
    .await;

    // A signed code for someone the event's list does not hold.
    let signed_code = api
        .post(
            &format!("/api/events/{event}/tickets"),
            Some(&token),
            json!({ "attendee_id": "late-guest-1", "ticket_type": "day" }),
        )
        .await
        .ok()["code"]
        .as_str()
        .unwrap()
        .to_owned();

    let kotlin_lib = workspace_root().join("tests/js/node_modules/kotlin-compiler/lib");
    let classpath = [
        generated.join("kotlin/tablet-day.jar"),
        PathBuf::from("/usr/share/java/jna.jar"),
        kotlin_lib.join("kotlin-stdlib.jar"),
        kotlin_lib.join("kotlinx-coroutines-core-jvm.jar"),
    ]
    .iter()
    .map(|p| p.display().to_string())
    .collect::<Vec<_>>()
    .join(":");
    let library_dir = workspace_binary("sync-server").parent().unwrap().to_owned();
    let secret_hex: String = enrolled.secret.iter().map(|b| format!("{b:02x}")).collect();
    let (url, event_id, data) = (
        server.url.clone(),
        event.to_string(),
        dir.path().join("kotlin-tablet"),
    );
    let output = tokio::task::spawn_blocking(move || {
        Command::new("java")
            .arg(format!("-Djna.library.path={}", library_dir.display()))
            .args(["-cp", &classpath, "TabletDayKt"])
            .env("SERVER_URL", url)
            .env("CA_PEM_FILE", ca_file)
            .env("EMAIL", "kim@example.org")
            .env("PASSWORD", PASSWORD)
            .env("TOTP_SECRET_HEX", secret_hex)
            .env("EVENT_DOCUMENT", event_id)
            .env("DATA_DIR", data)
            .env("SIGNED_CODE", signed_code)
            .env("LATER_OPENS_AT_MS", later_opens_at.to_string())
            .output()
            .expect("run java")
    })
    .await
    .unwrap();
    report("TabletDay.kt", &output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("scanned "))
        .expect("the Kotlin tablet reports its scan");
    let words: Vec<&str> = line.split_whitespace().collect();
    let (scan_id, device) = (words[1], words[4]);

    // The server has the scan: the admin replica receives it from there.
    wait_until(
        "the scan reaches the admin",
        Duration::from_secs(30),
        || async {
            admin
                .counts(event, Some("main"))
                .is_ok_and(|c| c.checked_in == 1)
        },
    )
    .await;
    let signed_scan = stdout
        .lines()
        .find_map(|l| l.strip_prefix("signed "))
        .expect("the Kotlin tablet reports its signed scan");
    wait_until(
        "the signed scan reaches the admin",
        Duration::from_secs(30),
        || async { admin.recent_scans(event, 10).is_ok_and(|s| s.len() == 2) },
    )
    .await;
    let mut scans = admin.recent_scans(event, 10).unwrap();
    let signed = scans
        .iter()
        .position(|s| s.scan_id == signed_scan)
        .expect("the signed scan");
    let signed = scans.remove(signed);
    assert_eq!(signed.attendee_id, "late-guest-1");
    assert_eq!(signed.device_id, device);
    assert_eq!(scans.len(), 1, "{scans:?}");
    assert_eq!(scans[0].scan_id, scan_id);
    assert_eq!(scans[0].device_id, device);
    assert_eq!(scans[0].staff_id, staff);
    admin_sync.stop().await;
    server.stop().await;
}

#[test]
fn swift_sources_parse_and_match_the_library() {
    let generated = generated();
    let target = generated.parent().expect("target dir");
    let library = workspace_binary("sync-server")
        .parent()
        .unwrap()
        .join("libmobile_bindings.so");
    let output = Command::new("python3")
        .arg(workspace_root().join("tests/mobile/check_swift.py"))
        .arg(generated.join("swift"))
        .arg(library)
        .env("PYTHONPATH", target.join("mobile-pydeps"))
        .output()
        .expect("run python3");
    report("check_swift.py", &output);
}
