//! The desktop admin app, end to end: the real Tauri binary in a real
//! window under Xvfb, driven through `tauri-driver` and WebKitWebDriver,
//! against a real sync-server on loopback. One admin's session walks every
//! screen: first sign-in with enrollment (a computed TOTP code), events and
//! lists, a CSV import, search, the live dashboard receiving a scan made by
//! another client-core replica, users with a step-up, revoking a device, the
//! audit log, restoring a settings backup, and working offline. Each screen
//! is saved as a PNG under `target/test-output/desktop/`.
//!
//! Needs the app built (`tests/run.sh` builds `desktop` after its web UI),
//! `tauri-driver` (cargo install), `WebKitWebDriver` (Debian
//! webkit2gtk-driver) and `Xvfb`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use client_core::{ClientCore, DocumentId, ServerTrust, SyncConfig};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use sync_server::auth::{self, Role};
use sync_tests::accounts::{Api, base32_decode, hotp, unix_secs};
use sync_tests::tls::{TestCa, with_tls};
use sync_tests::{InProcessServer, create_user, test_config, wait_until, workspace_binary};

const PASSWORD: &str = "correct horse battery";
const LIMIT: Duration = Duration::from_secs(30);
/// WebDriver's Enter key.
const ENTER: char = '\u{E007}';

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An X server of our own, on the first free display number from 90.
fn start_xvfb() -> (Process, String) {
    let number = (90..400)
        .find(|n| {
            !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
                && !Path::new(&format!("/tmp/.X{n}-lock")).exists()
        })
        .expect("a free X display");
    let child = Command::new("Xvfb")
        .args([
            &format!(":{number}"),
            "-screen",
            "0",
            "1280x900x24",
            "-nolisten",
            "tcp",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start Xvfb (Debian package xvfb)");
    let socket = PathBuf::from(format!("/tmp/.X11-unix/X{number}"));
    let deadline = Instant::now() + LIMIT;
    while !socket.exists() {
        assert!(Instant::now() < deadline, "Xvfb did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Process(child), format!(":{number}"))
}

/// `TAURI_DRIVER`, else `tauri-driver` on the PATH, else cargo's bin folder.
fn tauri_driver() -> PathBuf {
    if let Ok(path) = std::env::var("TAURI_DRIVER") {
        return path.into();
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("tauri-driver"))
            .find(|candidate| candidate.is_file())
    });
    on_path.unwrap_or_else(|| {
        let home = std::env::var("CARGO_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|_| {
                PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo")
            });
        home.join("bin/tauri-driver")
    })
}

/// A scan at the main door that must be admitted (on what this replica knows).
fn admit(core: &ClientCore, event: DocumentId, ticket: &str) {
    let result = core
        .check_in(
            event,
            ticket,
            "main",
            client_core::event_model::Direction::Entry,
        )
        .unwrap();
    assert_eq!(
        result.answer,
        client_core::event_model::rules::Answer::Admitted,
        "{ticket}"
    );
}

/// TOTP codes for one account, each step used once (the server refuses replays).
struct Authenticator {
    secret: Vec<u8>,
    last_step: u64,
}

impl Authenticator {
    async fn next_code(&mut self) -> String {
        let mut step = (unix_secs() / 30).max(self.last_step + 1);
        // The server accepts one step ahead at most.
        while step > unix_secs() / 30 + 1 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            step = (unix_secs() / 30).max(self.last_step + 1);
        }
        self.last_step = step;
        hotp(&self.secret, step, 6)
    }
}

struct Ui {
    client: Client,
    shots: PathBuf,
}

impl Ui {
    async fn el(&self, css: &str) -> Element {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Ok(found) = self.client.find(Locator::Css(css)).await {
                return found;
            }
            if Instant::now() > deadline {
                self.failure_shot().await;
                panic!("no element `{css}`");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Types `text` into the input at `css`, replacing what it holds, and
    /// checks that it does: a form the app fills in while the keys arrive
    /// (an edit form loading its record) would otherwise end up holding
    /// both, as "Summer FestSummer Fest (moved indoors)" once did.
    /// A `text` ending in [`ENTER`] submits once the rest is in place.
    async fn fill(&self, css: &str, text: &str) {
        let (typed, submit) = match text.strip_suffix(ENTER) {
            Some(typed) => (typed, true),
            None => (text, false),
        };
        for _ in 0..5 {
            let input = self.el(css).await;
            input.clear().await.unwrap();
            input.send_keys(typed).await.unwrap();
            if self.value(css).await.as_deref() == Some(typed) {
                if submit {
                    input.send_keys(&ENTER.to_string()).await.unwrap();
                }
                return;
            }
        }
        self.failure_shot().await;
        panic!(
            "`{css}` would not hold {text:?}: it holds {:?}",
            self.value(css).await
        );
    }

    /// The current value of the input at `css`.
    async fn value(&self, css: &str) -> Option<String> {
        self.el(css).await.prop("value").await.ok().flatten()
    }

    /// Waits until the input at `css` holds a value `check` accepts.
    async fn wait_value(&self, css: &str, what: &str, check: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + LIMIT;
        loop {
            let value = self.value(css).await.unwrap_or_default();
            if check(&value) {
                return;
            }
            if Instant::now() > deadline {
                self.failure_shot().await;
                panic!("timed out waiting for {what} (`{css}` holds {value:?})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn click(&self, css: &str) {
        self.el(css).await.click().await.unwrap();
    }

    /// Picks an option of a `<select>`. WebKitWebDriver cannot reach the
    /// options of a native select popup, so the choice is made as the
    /// browser would make it: value set, `change` dispatched.
    async fn select(&self, css: &str, value: &str) {
        self.el(css).await;
        self.client
            .execute(
                "const s = document.querySelector(arguments[0]);
                 s.value = arguments[1];
                 s.dispatchEvent(new Event('change', { bubbles: true }));
                 return s.value;",
                vec![json!(css), json!(value)],
            )
            .await
            .unwrap();
    }

    /// Waits until the text of `css` satisfies `check`; returns it.
    async fn wait_text(&self, css: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + LIMIT;
        let mut last = String::new();
        loop {
            if let Ok(found) = self.client.find(Locator::Css(css)).await
                && let Ok(text) = found.text().await
            {
                if check(&text) {
                    return text;
                }
                last = text;
            }
            if Instant::now() > deadline {
                self.failure_shot().await;
                panic!("timed out waiting for {what} (`{css}` says: {last:?})");
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    async fn go(&self, screen: &str) {
        self.click(&format!("#nav-{screen}")).await;
        self.el(&format!("#screen-{screen}")).await;
    }

    async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 5_000,
            "{name}: not a real screenshot"
        );
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        println!("screenshot {}", path.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_works_through_every_screen() {
    sync_tests::init_logging();
    let app = workspace_binary("desktop");
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("server"));
    config.settings_backup_debounce_secs = 0;
    // The second factor of the sign-in unlocks privileged actions for this
    // long; short, so the role change below has to ask for a fresh code.
    config.step_up_window_secs = 5;
    // The app polls while screens are open; one address for everything here.
    config.http_requests_per_second_per_ip = 0;
    config.http_requests_per_second_per_user = 0;
    // Over TLS, as at a venue: the app trusts the venue's CA (made here),
    // given at its first start as a PEM file.
    let ca = TestCa::new("Venue CA");
    let config = with_tls(config, &dir.path().join("tls"), &ca.issue());
    let ca_file = dir.path().join("tls/ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let trust = ServerTrust::default().with_extra_ca_pem(ca.pem()).unwrap();
    let server = InProcessServer::start(&config).await;
    let server_url = server.url.clone();
    assert!(server_url.starts_with("wss://"), "{server_url}");
    create_user(&server.store, "ada@example.org", Role::Admin, PASSWORD).await;
    let member = create_user(&server.store, "mo@example.org", Role::Member, PASSWORD).await;
    let (admin_key, hash) = auth::new_token();
    server
        .store
        .accounts
        .create_api_key("tablet", Role::Admin, &hash)
        .await
        .unwrap();

    let shots = workspace_binary("sync-server")
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("test-output/desktop");
    std::fs::create_dir_all(&shots).unwrap();
    let (_xvfb, display) = start_xvfb();
    let (port, native_port) = (free_port(), free_port());
    let _driver = Process(
        Command::new(tauri_driver())
            .args([
                "--port",
                &port.to_string(),
                "--native-port",
                &native_port.to_string(),
            ])
            .env("DISPLAY", &display)
            .env("SYNC_DESKTOP_DATA_DIR", dir.path().join("desktop"))
            .env("SYNC_SERVER_URL", &server_url)
            .env("SYNC_SERVER_CA_FILE", &ca_file)
            .env("RUST_LOG", "info,automerge=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(shots.join("app.log")).unwrap())
            .spawn()
            .expect("start tauri-driver (cargo install tauri-driver)"),
    );
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("browserName".into(), json!("wry"));
    capabilities.insert(
        "tauri:options".into(),
        json!({ "application": app.display().to_string() }),
    );
    let deadline = Instant::now() + LIMIT;
    let client = loop {
        match ClientBuilder::rustls()
            .unwrap()
            .capabilities(capabilities.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(client) => break client,
            Err(e) => {
                assert!(Instant::now() < deadline, "tauri-driver: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let ui = Ui { client, shots };

    // ---- first sign-in: password, enrollment with the QR code, recovery codes ----
    ui.el("#sign-in-form").await;
    assert_eq!(
        ui.el("#server")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some(server_url.as_str())
    );
    let shown_ca = ui.el("#server-ca").await.prop("value").await.unwrap();
    assert!(
        shown_ca.is_some_and(|pem| pem.contains("BEGIN CERTIFICATE")),
        "the sign-in screen shows the trusted CA"
    );
    ui.shot("01-sign-in").await;
    // Keyboard only: the forms submit with Enter.
    ui.fill("#email", "ada@example.org").await;
    ui.fill("#password", &format!("{PASSWORD}{ENTER}")).await;
    let secret = ui
        .wait_text("#enroll-secret", "the enrollment key", |t| t.len() >= 16)
        .await;
    let qr = ui.el("#enroll-qr").await;
    assert!(
        qr.attr("src")
            .await
            .unwrap()
            .unwrap()
            .starts_with("data:image/png;base64,iVBOR")
    );
    ui.shot("02-enrollment").await;
    let mut authenticator = Authenticator {
        secret: base32_decode(secret.trim()),
        last_step: 0,
    };
    ui.fill("#code", "000000").await;
    ui.click("#confirm-enrollment").await;
    ui.wait_text("#error", "a wrong code refused", |t| !t.is_empty())
        .await;
    let code = authenticator.next_code().await;
    ui.fill("#code", &format!("{code}{ENTER}")).await;
    ui.wait_text("#recovery-codes", "the recovery codes", |t| !t.is_empty())
        .await;
    let codes = ui
        .client
        .find_all(Locator::Css("#recovery-codes li"))
        .await
        .unwrap();
    assert_eq!(codes.len(), 10);
    let first = codes[0].text().await.unwrap();
    assert!(first.len() >= 16 && first.contains('-'), "{first}");
    ui.shot("03-recovery-codes").await;
    ui.click("#codes-saved").await;
    ui.wait_text("#signed-in-as", "signed in", |t| t == "ada@example.org")
        .await;
    ui.wait_text("#sync-indicator", "online", |t| t.starts_with("Online"))
        .await;

    // ---- events and check-in lists ----
    ui.el("#screen-events").await;
    ui.click("#new-event").await;
    ui.fill("#event-id", "fest").await;
    ui.fill("#event-name", "Summer Fest").await;
    ui.fill("#event-location", "Harbour").await;
    ui.fill("#event-tz", "Europe/Berlin").await;
    ui.click("#save-event").await;
    ui.wait_text("#events-table", "the new event", |t| {
        t.contains("Summer Fest")
    })
    .await;
    for (id, name) in [("main", "Main entrance"), ("vip", "VIP door")] {
        ui.fill("#list-id", id).await;
        ui.fill("#list-name", name).await;
        if id == "vip" {
            // Rules of time and count; a day that is none is refused first.
            ui.fill("#list-weekdays", "funday").await;
            ui.click("#save-list").await;
            ui.wait_text("#error", "a bad weekday refused", |t| t.contains("funday"))
                .await;
            ui.fill("#list-weekdays", "fri,sat,sun").await;
            ui.fill("#list-per-day", "2").await;
            ui.fill("#list-exit-all", "04:00").await;
        }
        ui.click("#save-list").await;
        ui.wait_text("#lists-table", "the list", |t| t.contains(name))
            .await;
    }
    ui.wait_text("#lists-table", "the VIP door's time rules", |t| {
        t.contains("fri,sat,sun · 2 a day · all out at 04:00")
    })
    .await;
    ui.shot("04-events-and-lists").await;
    let registered = Api::trusting(&server_url, ca.pem())
        .get("/api/documents?kind=event", &admin_key)
        .await
        .ok();
    assert_eq!(registered[0]["scope"], "fest", "{registered}");
    let event = DocumentId::parse(registered[0]["document_id"].as_str().unwrap()).unwrap();

    // ---- signed tickets: on, a code issued and checked, codes revoked ----
    ui.click("#enable-signed").await;
    ui.wait_text("#signed-status", "signed tickets on", |t| {
        t.starts_with("On:")
    })
    .await;
    let key = ui
        .el("#signed-status code")
        .await
        .attr("title")
        .await
        .unwrap()
        .unwrap();
    ui.fill("#issue-attendee", "late-guest-e2e").await;
    ui.fill("#issue-type", "day").await;
    ui.click("#issue-ticket").await;
    let code = ui
        .wait_text("#issued-code", "the signed code", |t| t.starts_with("TK1:"))
        .await;
    let claims = client_core::event_model::tickets::verify(
        &client_core::event_model::tickets::parse_key(&key).unwrap(),
        &event.to_string(),
        &code,
    )
    .expect("the code verifies under the key the event shows");
    assert_eq!(
        (claims.attendee_id.as_str(), claims.ticket_type.as_str()),
        ("late-guest-e2e", "day")
    );
    assert!(
        ui.el("#issued-qr")
            .await
            .attr("src")
            .await
            .unwrap()
            .unwrap()
            .starts_with("data:image/png;base64,iVBOR")
    );
    ui.shot("04b-signed-ticket").await;
    ui.fill("#revoke-attendee", "late-guest-e2e").await;
    ui.click("#revoke-codes").await;
    ui.wait_text("#revoked", "the revocation", |t| {
        t.contains("late-guest-e2e")
    })
    .await;

    // ---- CSV import: good rows in, broken rows reported by line ----
    let csv_path = dir.path().join("attendees.csv");
    let mut csv = String::from("ticket_code,name,email\n");
    for i in 0..200 {
        csv.push_str(&format!("T-{i:04},Guest {i},guest{i}@example.org\n"));
    }
    csv.push_str(",Nobody,nobody@example.org\n"); // line 202: no ticket code
    csv.push_str("T-0003,Again,again@example.org\n"); // line 203: a ticket code already used
    std::fs::write(&csv_path, csv).unwrap();
    ui.go("import").await;
    // The native file dialog cannot be driven here: the path is typed.
    ui.el("#choose-csv").await;
    ui.fill("#csv-path", &csv_path.display().to_string()).await;
    ui.click("#start-import").await;
    let summary = ui
        .wait_text("#import-summary", "the import report", |t| {
            t.starts_with("Imported")
        })
        .await;
    assert_eq!(summary, "Imported 200 attendees; 2 rows refused.");
    let rejected = ui.text_of("#rejected-rows").await;
    assert!(
        rejected.contains("202") && rejected.contains("203"),
        "{rejected}"
    );
    assert_eq!(
        ui.el("#import-progress")
            .await
            .attr("value")
            .await
            .unwrap()
            .as_deref(),
        Some("100")
    );
    ui.shot("05-import").await;

    // ---- search ----
    ui.go("search").await;
    ui.fill("#search-query", "Guest 17").await;
    ui.wait_text("#search-results", "the search result", |t| {
        t.contains("T-0017")
    })
    .await;
    ui.shot("06-search").await;

    // ---- live dashboard: a scan by another replica appears ----
    ui.go("dashboard").await;
    ui.wait_text("#event-totals", "the totals", |t| t.contains("0 of 200"))
        .await;
    // A second door downloads the event and loses the network before the scan below.
    let door_b = ClientCore::open(dir.path().join("door-b.sqlite3")).unwrap();
    let door_b_sync = door_b
        .start_sync(SyncConfig::new(server_url.clone(), &admin_key).with_trust(trust.clone()));
    door_b.find(event).unwrap();
    wait_until("door B has the event", LIMIT, || async {
        door_b
            .counts(event, Some("main"))
            .is_ok_and(|c| c.expected == 200)
    })
    .await;
    door_b_sync.stop().await;
    let tablet = ClientCore::open(dir.path().join("tablet.sqlite3")).unwrap();
    let tablet_sync = tablet
        .start_sync(SyncConfig::new(server_url.clone(), &admin_key).with_trust(trust.clone()));
    tablet.find(event).unwrap();
    wait_until("the tablet has the event", LIMIT, || async {
        tablet
            .counts(event, Some("main"))
            .is_ok_and(|c| c.expected == 200)
    })
    .await;
    tablet.set_presence(event, Some("main"));
    admit(&tablet, event, "T-0005");
    let tablet_device = tablet.recent_scans(event, 1).unwrap()[0].device_id.clone();
    ui.wait_text(
        "tr[data-list=main] .checked-in",
        "the scan on the dashboard",
        |t| t == "1",
    )
    .await;
    ui.wait_text("#recent-scans", "the recent scan", |t| {
        t.contains(&tablet_device[..8])
    })
    .await;
    ui.wait_text(
        "tr[data-list=main]",
        "the tablet online at the main door",
        |t| t.contains(&tablet_device[..8]),
    )
    .await;
    // Door B, offline, admits the same ticket; when it syncs, the later scan is a duplicate.
    admit(&door_b, event, "T-0005");
    let door_b_sync = door_b
        .start_sync(SyncConfig::new(server_url.clone(), &admin_key).with_trust(trust.clone()));
    ui.wait_text("#duplicates tbody", "the duplicate to review", |t| {
        t.contains("T-0005")
    })
    .await;
    assert_eq!(
        ui.text_of("tr[data-list=main] .checked-in").await,
        "1",
        "a duplicate is not a second person"
    );
    // Fleet readiness: the tablet at the main door holds the event.
    ui.wait_text(
        &format!("#fleet tr[data-device='{tablet_device}']"),
        "the tablet's readiness",
        |t| t.contains("Main entrance") && t.contains("yes"),
    )
    .await;
    // The figures: the arrival curve drawn, each tablet's tally, no-shows.
    ui.el("#arrival-chart canvas").await;
    ui.wait_text("#arrival-peak", "the peak", |t| t.contains(": 1 entry ("))
        .await;
    ui.wait_text("#device-tally", "the tablets' tallies", |t| {
        t.contains(&tablet_device[..8])
    })
    .await;
    ui.wait_text("#no-shows", "the no-shows", |t| t.contains("199"))
        .await;
    let report_path = dir.path().join("report.csv");
    ui.fill("#export-path", &report_path.display().to_string())
        .await;
    ui.click("#export-report").await;
    ui.wait_text("#exported", "the export", |t| t.starts_with("Wrote 200"))
        .await;
    let report = std::fs::read_to_string(&report_path).unwrap();
    assert_eq!(
        report.lines().count(),
        201,
        "a header and one row per attendee"
    );
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("T-0005,") && l.contains(",checked_in,")),
        "{report}"
    );
    ui.client
        .execute(
            "document.getElementById('fleet').scrollIntoView(); window.scrollBy(0, -60)",
            vec![],
        )
        .await
        .unwrap();
    ui.shot("07-dashboard").await;
    door_b_sync.stop().await;

    // ---- users: create, assign, a role change that needs a step-up ----
    ui.go("users").await;
    ui.fill("#new-user-email", "door@example.org").await;
    ui.select("#new-user-role", "staff").await;
    ui.fill("#new-user-password", PASSWORD).await;
    ui.click("#create-user").await;
    ui.wait_text("#users-table", "the new user", |t| {
        t.contains("door@example.org")
    })
    .await;
    ui.fill("tr[data-email='door@example.org'] input.events", "fest")
        .await;
    ui.click("tr[data-email='door@example.org'] .assign button")
        .await;
    let since_sign_in = Instant::now();
    ui.wait_text("tr[data-email='door@example.org']", "the assignment", |t| {
        t.contains("door")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(6).saturating_sub(since_sign_in.elapsed())).await;
    ui.select("tr[data-email='mo@example.org'] select.role", "staff")
        .await;
    let code = authenticator.next_code().await;
    ui.fill("#step-up-code", &code).await;
    ui.shot("08-step-up").await;
    ui.click("#step-up-form button[type=submit]").await;
    let deadline = Instant::now() + LIMIT;
    loop {
        let users = server.store.accounts.list_users().await.unwrap();
        let mo = users
            .iter()
            .find(|u| u.email == "mo@example.org")
            .map(|u| u.role);
        let door = users
            .iter()
            .find(|u| u.email == "door@example.org")
            .map(|u| u.events.clone());
        if mo == Some(Role::Staff) && door == Some(vec!["fest".to_owned()]) {
            break;
        }
        if Instant::now() > deadline {
            ui.failure_shot().await;
            panic!("role change / assignment did not land: mo {mo:?}, door {door:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_until("the role change and the assignment land", LIMIT, || async {
        let users = server.store.accounts.list_users().await.unwrap();
        users
            .iter()
            .any(|u| u.email == "mo@example.org" && u.role == Role::Staff)
            && users
                .iter()
                .any(|u| u.email == "door@example.org" && u.events == ["fest"])
    })
    .await;
    ui.shot("09-users").await;

    // ---- devices: revoke a member's phone (signed in with a password) ----
    server
        .store
        .accounts
        .set_user_role(&member, Role::Member)
        .await
        .unwrap();
    let phone = Api::trusting(&server_url, ca.pem())
        .login("mo@example.org", PASSWORD, "Mo's phone")
        .await
        .ok();
    let phone_token = phone["session"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    ui.go("devices").await;
    let row = "tr[data-device=\"Mo's phone\"]";
    ui.wait_text("#devices-table", "the phone", |t| t.contains("Mo's phone"))
        .await;
    ui.click(&format!("{row} button.revoke")).await;
    ui.click(&format!("{row} button.confirm-revoke")).await;
    ui.wait_text(row, "the phone revoked", |t| t.contains("revoked"))
        .await;
    ui.shot("10-devices").await;
    let refused = Api::trusting(&server_url, ca.pem())
        .get("/api/me", &phone_token)
        .await;
    assert_eq!(refused.status, 401);
    assert_eq!(
        refused.body["error"], "device_revoked",
        "{:?}",
        refused.body
    );

    // ---- audit log: chain verified, filtered, exported ----
    ui.go("audit").await;
    ui.wait_text("#audit-chain", "the chain verification", |t| {
        t.starts_with("Chain verified")
    })
    .await;
    ui.fill("#audit-action", "device.revoked").await;
    ui.click("#audit-apply").await;
    let filtered =
        |t: &str| t.contains("device.revoked") && t.lines().all(|l| l.contains("device.revoked"));
    ui.wait_text("#audit-table tbody", "the filtered entries", filtered)
        .await;
    // Still filtered a moment later: no slower, older answer replaced it.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let rows = ui
        .client
        .find_all(Locator::Css("#audit-table tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "one revocation in the log");
    assert!(filtered(&ui.text_of("#audit-table tbody").await));
    // By name: who revoked, and which device (ids on hover).
    ui.wait_text("#audit-table tbody .actor", "the actor by name", |t| {
        t == "ada@example.org"
    })
    .await;
    ui.wait_text("#audit-table tbody .target", "the device by name", |t| {
        t == "Mo's phone"
    })
    .await;
    let actor = ui.el("#audit-table tbody .actor span").await;
    assert!(
        actor
            .attr("title")
            .await
            .unwrap()
            .unwrap()
            .starts_with("user:"),
        "the id on hover"
    );
    ui.shot("11-audit").await;
    ui.click("#audit-export").await;
    // The step-up of the role change may have run out meanwhile.
    tokio::time::sleep(Duration::from_millis(500)).await;
    if ui.client.find(Locator::Css("#step-up-code")).await.is_ok() {
        let code = authenticator.next_code().await;
        ui.fill("#step-up-code", &code).await;
        ui.click("#step-up-form button[type=submit]").await;
    }
    let exported = ui
        .wait_text("#audit-exported", "the export", |t| {
            t.starts_with("Exported")
        })
        .await;
    let path = exported.split(" to ").nth(1).unwrap();
    let lines = std::fs::read_to_string(path).unwrap();
    assert!(
        lines.lines().any(|l| l.contains("device.revoked")),
        "{lines}"
    );

    // ---- my settings: change, see the backups, restore an older one ----
    ui.go("settings").await;
    ui.select("#setting-theme", "dark").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ui.select("#setting-theme", "light").await;
    let deadline = Instant::now() + LIMIT;
    loop {
        ui.click("#reload-backups").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        if ui
            .client
            .find(Locator::Css("tr[data-theme=dark] button.restore"))
            .await
            .is_ok()
            && ui
                .client
                .find(Locator::Css("tr[data-theme=light] button.restore"))
                .await
                .is_ok()
        {
            break;
        }
        assert!(Instant::now() < deadline, "no backups of both themes");
    }
    ui.click("tr[data-theme=dark] button.restore").await;
    let deadline = Instant::now() + LIMIT;
    while ui
        .el("#setting-theme")
        .await
        .prop("value")
        .await
        .unwrap()
        .as_deref()
        != Some("dark")
    {
        assert!(
            Instant::now() < deadline,
            "the restore did not reach the app"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    ui.shot("12-settings").await;

    // ---- server health: the server's own report, as an admin sees it ----
    ui.go("health").await;
    let health = ui
        .wait_text("#health-table", "the server's status", |t| {
            t.contains("sqlite") && t.contains("answered in")
        })
        .await;
    assert!(
        health.contains(env!("CARGO_PKG_VERSION")),
        "the version: {health}"
    );
    // The tablet and this app hold sync connections to the server.
    let connections = ui
        .text_of("#health-table tr[data-row=connections] td")
        .await;
    assert!(
        connections.trim().parse::<u64>().unwrap() >= 2,
        "connections: {connections}"
    );
    ui.shot("12b-health").await;

    // ---- offline: the server stops; browse, search and edit locally ----
    let addr = server_url
        .trim_start_matches("wss://")
        .trim_end_matches("/sync")
        .to_owned();
    tablet_sync.stop().await;
    server.stop().await;
    ui.wait_text("#sync-indicator", "offline", |t| !t.starts_with("Online"))
        .await;
    // In plain words, with the next try; the raw error behind "Details".
    ui.wait_text("#sync-indicator", "the failure in plain words", |t| {
        t.starts_with("Can't reach the server; retrying")
    })
    .await;
    ui.el("#sync-error-details").await;
    ui.go("search").await;
    ui.fill("#search-query", "guest42@").await;
    ui.wait_text("#search-results", "an offline search", |t| {
        t.contains("T-0042")
    })
    .await;
    ui.go("events").await;
    ui.click("#events-table tr.chosen button:not(.link)").await;
    // The edit form loads the event after it opens: type once it has.
    ui.wait_value("#event-name", "the edit form to load the event", |name| {
        name == "Summer Fest"
    })
    .await;
    ui.fill("#event-name", "Summer Fest (moved indoors)").await;
    ui.click("#save-event").await;
    ui.wait_text("#events-table", "the offline edit", |t| {
        t.contains("moved indoors")
    })
    .await;
    ui.wait_text("#sync-indicator", "a change waiting", |t| {
        t.contains("waiting") && !t.contains("nothing waiting")
    })
    .await;
    ui.shot("13-offline").await;

    // The server comes back on the same address: the edit syncs.
    let server = InProcessServer::restart_on(&config, addr.parse().unwrap()).await;
    ui.wait_text("#sync-indicator", "back online", |t| {
        t.starts_with("Online") && t.contains("nothing waiting")
    })
    .await;
    let observer = ClientCore::open(dir.path().join("observer.sqlite3")).unwrap();
    let observer_sync = observer
        .start_sync(SyncConfig::new(server.url.clone(), &admin_key).with_trust(trust.clone()));
    observer.find(event).unwrap();
    // A rare failure here (1 of 5 full runs on 2026-12-02) turned out to be
    // the edit itself: typed while the form loaded, it saved "Summer
    // FestSummer Fest (moved indoors)" (see `Ui::fill`). The message still
    // says what the observer holds and its sync state.
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let name = observer
            .read(event, client_core::event_model::document::read_info)
            .ok()
            .and_then(Result::ok)
            .map(|info| info.name);
        if name.as_deref() == Some("Summer Fest (moved indoors)") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the offline edit did not reach a fresh observer within {LIMIT:?}: it holds the event named {name:?}; its sync status: {:?}",
            observer.sync_status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ui.shot("14-back-online").await;
    observer_sync.stop().await;
    ui.client.close().await.unwrap();
    server.stop().await;
}

impl Ui {
    /// What the window showed when a step failed, for the person reading the log.
    async fn failure_shot(&self) {
        if let Ok(png) = self.client.screenshot().await {
            let path = self.shots.join("failure.png");
            let _ = std::fs::write(&path, png);
            eprintln!("failure screenshot: {}", path.display());
        }
    }

    async fn text_of(&self, css: &str) -> String {
        self.el(css).await.text().await.unwrap()
    }
}
