//! Accounts through the real REST API and websocket on loopback, with TOTP
//! codes computed by the test's own RFC 6238 code: enrollment, sign-in with a
//! code and with a recovery code, replay and reuse refused, throttling,
//! refresh rotation with reuse detection and the grace retry, device
//! revocation closing a live socket, step-up, API keys, the audit API.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sync_protocol::Message;
use sync_server::auth::{self, Role};
use sync_tests::accounts::{Api, Enrolled, enroll, hotp, totp_now, unix_secs};
use sync_tests::raw::{self, next_message};
use sync_tests::{InProcessServer, create_user, test_config};

const PASSWORD: &str = "correct horse battery";

struct Fixture {
    _dir: tempfile::TempDir,
    server: InProcessServer,
    api: Api,
}

async fn start(tune: impl FnOnce(&mut sync_server::Config)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    tune(&mut config);
    let server = InProcessServer::start(&config).await;
    let api = Api::new(&server.url);
    Fixture {
        _dir: dir,
        server,
        api,
    }
}

impl Fixture {
    async fn admin_key(&self) -> String {
        let (token, hash) = auth::new_token();
        self.server
            .store
            .accounts
            .create_api_key("test admin", Role::Admin, &hash)
            .await
            .unwrap();
        token
    }

    async fn audit(&self) -> Vec<sync_server::audit::AuditEntry> {
        self.server
            .store
            .audit
            .audit_entries(0, 100_000)
            .await
            .unwrap()
    }

    async fn actions(&self) -> Vec<(String, String, Value)> {
        self.audit()
            .await
            .into_iter()
            .map(|e| (e.entry.action, e.entry.result, e.entry.details))
            .collect()
    }
}

/// The TOTP step a code for "now" belongs to (for replays of exactly that step).
fn current_step() -> u64 {
    unix_secs() / 30
}

async fn second_factor(api: &Api, email: &str, factor: Value) -> sync_tests::accounts::Reply {
    let login = api.login(email, PASSWORD, "tablet").await.ok();
    assert_eq!(login["status"], "second_factor_required", "{login}");
    let mut body = factor;
    body["challenge"] = login["challenge"].clone();
    api.post("/api/auth/second-factor", None, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_then_sign_in_with_a_code_and_with_recovery_codes() {
    // This test fails codes on purpose more often than the throttle's free
    // attempts (which have their own test).
    let f = start(|c| c.sign_in_free_attempts = 20).await;
    create_user(&f.server.store, "Staff@Example.org", Role::Staff, PASSWORD).await;
    // Staff must use 2FA: the password alone gives only an enrollment challenge,
    // which opens nothing.
    let login = f
        .api
        .login("staff@example.org", PASSWORD, "door 1")
        .await
        .ok();
    assert_eq!(login["status"], "enrollment_required");
    assert!(login.get("session").is_none());
    let challenge = login["challenge"].as_str().unwrap();
    assert_eq!(f.api.get("/api/me", challenge).await.status, 401);
    // A code from the wrong secret does not confirm an enrollment.
    f.api
        .post(
            "/api/auth/enroll/start",
            None,
            json!({ "challenge": challenge }),
        )
        .await
        .ok();
    let wrong = f
        .api
        .post(
            "/api/auth/enroll/confirm",
            None,
            json!({ "challenge": challenge, "code": hotp(b"not the secret", current_step(), 6) }),
        )
        .await;
    assert_eq!((wrong.status, wrong.error()), (401, "invalid_code"));

    let Enrolled {
        secret,
        step: step_at_enrollment,
        session,
        recovery_codes,
    } = enroll(&f.api, "staff@example.org", PASSWORD, "door 1").await;
    assert_eq!(recovery_codes.len(), 10);
    let access = session["access_token"].as_str().unwrap();
    let me = f.api.get("/api/me", access).await.ok();
    assert_eq!(me["user"]["email"], "staff@example.org");
    assert_eq!(me["user"]["totp_enrolled"], true);
    assert_eq!(me["role"], "staff");
    assert_eq!(me["step_up_fresh"], true);
    // The access token opens the sync endpoint too.
    raw::joined(&f.server.url, access).await;

    // Later sign-ins ask for a code. The code used at enrollment is a replay;
    // a code from another secret is invalid; the next step's code works.
    let enrollment_code = hotp(&secret, step_at_enrollment, 6);
    let replay = second_factor(
        &f.api,
        "staff@example.org",
        json!({ "code": enrollment_code }),
    )
    .await;
    assert_eq!(
        (replay.status, replay.error()),
        (401, "code_replayed"),
        "{:?}",
        replay.body
    );
    let invalid = second_factor(
        &f.api,
        "staff@example.org",
        json!({ "code": hotp(&secret, current_step() + 5, 6) }),
    )
    .await;
    assert_eq!((invalid.status, invalid.error()), (401, "invalid_code"));
    let next_code = hotp(&secret, current_step() + 1, 6);
    let signed_in = second_factor(&f.api, "staff@example.org", json!({ "code": next_code }))
        .await
        .ok();
    assert_eq!(signed_in["status"], "signed_in");
    assert_ne!(
        signed_in["session"]["access_token"],
        session["access_token"]
    );
    // The same code again, even at once, is refused.
    let again = second_factor(&f.api, "staff@example.org", json!({ "code": next_code })).await;
    assert_eq!(again.error(), "code_replayed");

    // Recovery codes: each works once, however it is typed.
    let first = second_factor(
        &f.api,
        "staff@example.org",
        json!({ "recovery_code": recovery_codes[0] }),
    )
    .await
    .ok();
    assert_eq!(first["status"], "signed_in");
    let reused = second_factor(
        &f.api,
        "staff@example.org",
        json!({ "recovery_code": recovery_codes[0] }),
    )
    .await;
    assert_eq!(
        (reused.status, reused.error()),
        (401, "invalid_recovery_code")
    );
    let typed = recovery_codes[1].to_lowercase().replace('-', " ");
    let second = second_factor(
        &f.api,
        "staff@example.org",
        json!({ "recovery_code": typed }),
    )
    .await
    .ok();
    assert_eq!(second["status"], "signed_in");
    // A recovery code signs in but does not unlock privileged actions.
    let me = f
        .api
        .get(
            "/api/me",
            second["session"]["access_token"].as_str().unwrap(),
        )
        .await
        .ok();
    assert_eq!(me["step_up_fresh"], false);

    // A challenge works once.
    let login = f.api.login("staff@example.org", PASSWORD, "x").await.ok();
    let body = json!({ "challenge": login["challenge"], "recovery_code": recovery_codes[2] });
    f.api
        .post("/api/auth/second-factor", None, body.clone())
        .await
        .ok();
    let body = json!({ "challenge": login["challenge"], "recovery_code": recovery_codes[3] });
    let twice = f.api.post("/api/auth/second-factor", None, body).await;
    assert_eq!(twice.error(), "invalid_challenge");

    // Audited: each step and factor, and never a secret, code or token.
    let actions = f.actions().await;
    let has = |action: &str, result: &str, detail: &dyn Fn(&Value) -> bool| {
        actions
            .iter()
            .any(|(a, r, d)| a == action && r == result && detail(d))
    };
    assert!(has("auth.password", "ok", &|d| d["next"] == "enroll"));
    assert!(has("auth.totp_enroll_started", "ok", &|_| true));
    assert!(has("auth.totp_enroll", "denied", &|d| d["reason"]
        == "invalid_code"));
    assert!(has("auth.totp_enrolled", "ok", &|d| d["recovery_codes"] == 10));
    assert!(has("auth.sign_in", "ok", &|d| d["factors"]
        == json!(["password", "totp"])));
    assert!(has("auth.sign_in", "ok", &|d| d["factors"]
        == json!(["password", "recovery_code"])));
    assert!(has("auth.second_factor", "denied", &|d| d["reason"]
        == "code_replayed"));
    assert!(has("auth.second_factor", "denied", &|d| d["reason"]
        == "invalid_recovery_code"));
    // Five failed codes for one account within ten minutes raise an alert.
    assert!(has("security.alert", "alert", &|d| d["kind"]
        == "failed_code_burst"));
    // The administrator's status shows the day's alerts, and the sync
    // connection open now; others may not read it.
    let key = f.admin_key().await;
    let _socket = raw::joined(&f.server.url, &key).await;
    let status = f.api.get("/api/status", &key).await.ok();
    assert!(
        status["security_alerts_24h"].as_u64().unwrap() >= 1,
        "{status}"
    );
    assert_eq!(
        status["last_security_alert"]["kind"], "failed_code_burst",
        "{status}"
    );
    assert_eq!(status["connections"], 1, "{status}");
    assert_eq!(status["store"]["kind"], "sqlite", "{status}");
    assert_eq!(status["store"]["migrations_pending"], false, "{status}");
    assert_eq!(
        status["store"]["schema_version"], status["store"]["expected_version"],
        "{status}"
    );
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"), "{status}");
    let staff = second["session"]["access_token"].as_str().unwrap();
    let refused = f.api.get("/api/status", staff).await;
    assert_eq!((refused.status, refused.error()), (403, "forbidden"));
    let log = serde_json::to_string(&f.audit().await).unwrap();
    let secret_b32 = f
        .server
        .store
        .accounts
        .user_by_email("staff@example.org")
        .await
        .unwrap()
        .unwrap()
        .totp_secret
        .unwrap();
    for needle in [
        secret_b32.as_str(),
        recovery_codes[0].as_str(),
        access,
        session["refresh_token"].as_str().unwrap(),
        PASSWORD,
    ] {
        assert!(
            !log.contains(needle),
            "the audit log holds a secret: {needle}"
        );
    }
    f.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_are_throttled_per_account_and_address_with_growing_delays() {
    let f = start(|_| {}).await;
    for email in ["ada@example.org", "bob@example.org"] {
        create_user(&f.server.store, email, Role::Member, PASSWORD).await;
    }
    // Three free failures, then a delay of 1 s after the fourth.
    for _ in 0..4 {
        let wrong = f.api.login("ada@example.org", "wrong password!", "t").await;
        assert_eq!((wrong.status, wrong.error()), (401, "invalid_credentials"));
    }
    // Now even the right password waits, for this account and this address.
    let waiting = f.api.login("ada@example.org", PASSWORD, "t").await;
    assert_eq!((waiting.status, waiting.error()), (429, "throttled"));
    assert_eq!(waiting.retry_after.as_deref(), Some("1"));
    let other = f.api.login("bob@example.org", PASSWORD, "t").await;
    assert_eq!(other.status, 429, "the address is throttled too");
    // After the delay an attempt is allowed; another failure doubles the delay.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let wrong = f.api.login("ada@example.org", "wrong password!", "t").await;
    assert_eq!(wrong.status, 401);
    let waiting = f.api.login("ada@example.org", PASSWORD, "t").await;
    assert_eq!(waiting.status, 429);
    assert_eq!(waiting.retry_after.as_deref(), Some("2"));
    // Never a lockout: waiting it out, the right password signs in.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let ok = f.api.login("ada@example.org", PASSWORD, "t").await.ok();
    assert_eq!(
        ok["status"], "signed_in",
        "members sign in without 2FA by default"
    );
    let actions = f.actions().await;
    assert!(
        actions
            .iter()
            .any(|(a, r, _)| a == "auth.throttled" && r == "denied")
    );
    assert_eq!(
        actions
            .iter()
            .filter(|(a, _, d)| a == "auth.password" && d["reason"] == "wrong_password")
            .count(),
        5
    );
    f.server.stop().await;
}

fn tokens(session: &Value) -> (String, String) {
    (
        session["access_token"].as_str().unwrap().to_owned(),
        session["refresh_token"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotates_detects_reuse_and_forgives_a_quick_retry() {
    let f = start(|c| c.refresh_grace_secs = 2).await;
    create_user(&f.server.store, "m@example.org", Role::Member, PASSWORD).await;
    let refresh = |token: &str| {
        let api = f.api.clone();
        let token = token.to_owned();
        async move {
            api.post("/api/auth/refresh", None, json!({ "refresh_token": token }))
                .await
        }
    };
    let s0 = f.api.login("m@example.org", PASSWORD, "phone").await.ok()["session"].clone();
    let (a0, r0) = tokens(&s0);
    let s1 = refresh(&r0).await.ok();
    let (a1, r1) = tokens(&s1);
    assert_ne!((&a1, &r1), (&a0, &r0));
    assert_eq!(s1["session_id"], s0["session_id"]);
    // The answer was "lost": the retry within the grace window gets the same pair.
    let retry = refresh(&r0).await.ok();
    assert_eq!(tokens(&retry), (a1.clone(), r1.clone()));
    f.api.get("/api/me", &a1).await.ok();
    let s2 = refresh(&r1).await.ok();
    let (a2, r2) = tokens(&s2);
    let mut socket = raw::joined(&f.server.url, &a2).await;

    // r0 again, after its successor was used: reuse. The whole family ends,
    // its live connection closes, and an alert is raised.
    let reused = refresh(&r0).await;
    assert_eq!((reused.status, reused.error()), (401, "token_reused"));
    match next_message(&mut socket).await {
        Some(Message::Error { message }) => assert!(message.contains("revoked"), "{message}"),
        other => panic!("expected the socket to be closed with an error, got {other:?}"),
    }
    let after = refresh(&r2).await;
    assert_eq!((after.status, after.error()), (401, "session_revoked"));
    let me = f.api.get("/api/me", &a2).await;
    assert_eq!((me.status, me.error()), (401, "session_revoked"));

    // Outside the grace window, even the latest token's retry is reuse.
    let t0 = f.api.login("m@example.org", PASSWORD, "phone").await.ok()["session"].clone();
    let (_, t0_refresh) = tokens(&t0);
    refresh(&t0_refresh).await.ok();
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(refresh(&t0_refresh).await.error(), "token_reused");
    // Garbage is simply invalid.
    assert_eq!(refresh("rt_nonsense").await.error(), "invalid");

    let actions = f.actions().await;
    assert_eq!(
        actions
            .iter()
            .filter(|(a, _, _)| a == "auth.token_reuse")
            .count(),
        2
    );
    assert!(
        actions
            .iter()
            .any(|(a, _, d)| a == "auth.refresh_retry" && d["session"] == s0["session_id"])
    );
    assert!(
        actions
            .iter()
            .any(|(a, r, d)| a == "security.alert" && r == "alert" && d["kind"] == "token_reuse")
    );
    let metrics = reqwest::get(format!("{}/metrics", f.api.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("sync_security_alerts_total{kind=\"token_reuse\"}"),
        "{metrics}"
    );
    f.server.stop().await;
}

/// The HTTP status and JSON body of a refused websocket upgrade.
async fn refused_upgrade(url: &str, token: &str) -> (u16, Value) {
    use tokio_tungstenite::tungstenite::Error;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(Error::Http(response)) => {
            let body = response
                .body()
                .as_ref()
                .map(|b| serde_json::from_slice(b).unwrap_or(Value::Null))
                .unwrap_or(Value::Null);
            (response.status().as_u16(), body)
        }
        Ok(_) => panic!("the upgrade was accepted"),
        Err(other) => panic!("unexpected error {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_device_closes_its_socket_at_once_and_tells_it_to_wipe() {
    let f = start(|_| {}).await;
    let admin = f.admin_key().await;
    create_user(&f.server.store, "m@example.org", Role::Member, PASSWORD).await;
    create_user(&f.server.store, "n@example.org", Role::Member, PASSWORD).await;
    let session = f
        .api
        .login("m@example.org", PASSWORD, "tablet 7")
        .await
        .ok()["session"]
        .clone();
    let (access, refresh) = tokens(&session);
    let device = session["device_id"].as_str().unwrap().to_owned();
    let other = f
        .api
        .login("n@example.org", PASSWORD, "n's phone")
        .await
        .ok()["session"]
        .clone();
    let mut socket = raw::joined(&f.server.url, &access).await;
    let mut bystander = raw::joined(&f.server.url, other["access_token"].as_str().unwrap()).await;

    let devices = f.api.get("/api/devices", &access).await.ok();
    assert_eq!(
        devices.as_array().unwrap().len(),
        1,
        "a member sees only their own devices"
    );
    assert_eq!(devices[0]["name"], "tablet 7");
    assert_eq!(devices[0]["online"], true);
    // Someone else cannot revoke it (and does not learn it exists).
    let foreign = f
        .api
        .post(
            &format!("/api/devices/{device}/revoke"),
            other["access_token"].as_str(),
            json!({}),
        )
        .await;
    assert_eq!(foreign.status, 404);

    let revoked_at = Instant::now();
    assert_eq!(
        f.api
            .post(
                &format!("/api/devices/{device}/revoke"),
                Some(&admin),
                json!({})
            )
            .await
            .status,
        204
    );
    match next_message(&mut socket).await {
        Some(Message::Error { message }) => {
            assert!(message.contains("device revoked"), "{message}")
        }
        other => panic!("expected an error before the close, got {other:?}"),
    }
    assert!(
        next_message(&mut socket).await.is_none(),
        "then the socket closes"
    );
    let closed_after = revoked_at.elapsed();
    assert!(
        closed_after < Duration::from_secs(1),
        "closed after {closed_after:?}"
    );

    // Every later contact says: revoked, wipe.
    let (status, body) = refused_upgrade(&f.server.url, &access).await;
    assert_eq!(
        (status, body["error"].as_str(), body["wipe"].as_bool()),
        (401, Some("device_revoked"), Some(true))
    );
    let refreshed = f
        .api
        .post(
            "/api/auth/refresh",
            None,
            json!({ "refresh_token": refresh }),
        )
        .await;
    assert_eq!(
        (refreshed.error(), refreshed.body["wipe"].as_bool()),
        ("device_revoked", Some(true))
    );
    let again = f
        .api
        .post(
            "/api/auth/login",
            None,
            json!({ "email": "m@example.org", "password": PASSWORD, "device_name": "tablet 7", "device_id": device }),
        )
        .await;
    assert_eq!((again.status, again.error()), (401, "device_revoked"));
    // Signing in as a fresh device (after the wipe) works.
    f.api
        .login("m@example.org", PASSWORD, "tablet 7 (wiped)")
        .await
        .ok();
    // The bystander's connection is untouched.
    raw::send(&mut bystander, &raw::join(&["1"])).await;
    let all = f.api.get("/api/devices", &admin).await.ok();
    let listed = all
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == device.as_str())
        .unwrap();
    assert!(listed["revoked_ms"].is_i64());
    assert!(
        f.actions()
            .await
            .iter()
            .any(|(a, _, d)| a == "device.revoked" && d["name"] == "tablet 7")
    );
    f.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_actions_need_a_recent_code_and_api_keys_are_managed() {
    let f = start(|c| c.step_up_window_secs = 2).await;
    create_user(&f.server.store, "root@example.org", Role::Admin, PASSWORD).await;
    let member = create_user(&f.server.store, "m@example.org", Role::Member, PASSWORD).await;
    let admin = enroll(&f.api, "root@example.org", PASSWORD, "desk").await;
    let token = admin.access().to_owned();

    // Fresh from the TOTP sign-in: an API key can be made; it opens /sync.
    let created = f
        .api
        .post(
            "/api/api-keys",
            Some(&token),
            json!({ "name": "importer", "role": "staff" }),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let key = created.body["token"].as_str().unwrap().to_owned();
    let key_id = created.body["id"].as_str().unwrap().to_owned();
    let mut key_socket = raw::joined(&f.server.url, &key).await;
    let keys = f.api.get("/api/api-keys", &token).await.ok();
    let listed = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == key_id.as_str())
        .unwrap();
    assert_eq!(listed["name"], "importer");
    assert!(listed["last_used_at"].is_string());
    assert!(
        !keys.to_string().contains(&key),
        "keys are never shown again"
    );

    // After the window, privileged actions ask for a step-up.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let stale = f
        .api
        .post(
            "/api/api-keys",
            Some(&token),
            json!({ "name": "late", "role": "staff" }),
        )
        .await;
    assert_eq!((stale.status, stale.error()), (403, "step_up_required"));
    let patch = f
        .api
        .call(
            reqwest::Method::PATCH,
            &format!("/api/users/{member}"),
            Some(&token),
            Some(json!({ "role": "staff" })),
        )
        .await;
    assert_eq!(patch.error(), "step_up_required");
    let export = f.api.get("/api/audit/export", &token).await;
    assert_eq!(export.error(), "step_up_required");
    // A wrong code does not unlock; a fresh one does.
    let wrong = f
        .api
        .post(
            "/api/auth/step-up",
            Some(&token),
            json!({ "code": "000000" }),
        )
        .await;
    assert_eq!(wrong.status, 401);
    let code = totp_now(&admin.secret, 1);
    assert_eq!(
        f.api
            .post("/api/auth/step-up", Some(&token), json!({ "code": code }))
            .await
            .status,
        204
    );
    let patch = f
        .api
        .call(
            reqwest::Method::PATCH,
            &format!("/api/users/{member}"),
            Some(&token),
            Some(json!({ "role": "staff" })),
        )
        .await;
    assert_eq!(patch.status, 204, "{:?}", patch.body);
    let users = f.api.get("/api/users", &token).await.ok();
    assert!(
        users
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["id"] == member.as_str() && u["role"] == "staff")
    );
    let export = f.api.get("/api/audit/export", &token).await;
    assert_eq!(export.status, 200);
    let lines: Vec<Value> = export
        .body
        .as_str()
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.iter().any(|e| e["action"] == "api_key.created"));

    // Revoking the key closes its socket and refuses it afterwards.
    let deleted = f
        .api
        .call(
            reqwest::Method::DELETE,
            &format!("/api/api-keys/{key_id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(deleted.status, 204);
    assert!(matches!(
        next_message(&mut key_socket).await,
        Some(Message::Error { .. })
    ));
    assert_eq!(refused_upgrade(&f.server.url, &key).await.0, 401);

    // Non-admins see no administration.
    let member_session = f.api.login("m@example.org", PASSWORD, "t").await.ok();
    assert_eq!(
        member_session["status"], "enrollment_required",
        "now staff: 2FA required"
    );

    // The audit API filters, pages, and records its own use.
    let page = f
        .api
        .get("/api/audit?action=api_key.created&limit=1", &token)
        .await
        .ok();
    assert_eq!(page["entries"].as_array().unwrap().len(), 1);
    assert_eq!(page["entries"][0]["action"], "api_key.created");
    let next = page["next_after"]
        .as_u64()
        .expect("a full page has a next page");
    let rest = f
        .api
        .get(
            &format!("/api/audit?action=api_key.created&after={next}"),
            &token,
        )
        .await
        .ok();
    assert!(
        rest["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["seq"].as_u64().unwrap() > next)
    );
    let bad = f.api.get("/api/audit?since=yesterday", &token).await;
    assert_eq!(bad.status, 400);
    let verify = f.api.get("/api/audit/verify", &token).await.ok();
    assert_eq!(verify["valid"], true);
    let actions = f.actions().await;
    for action in [
        "api_key.created",
        "api_key.revoked",
        "admin.role_changed",
        "auth.step_up",
        "audit.read",
        "audit.export",
        "audit.verify",
    ] {
        assert!(
            actions.iter().any(|(a, _, _)| a == action),
            "{action} is audited"
        );
    }
    f.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_exactly_the_served_routes() {
    let f = start(|_| {}).await;
    let spec: Value = reqwest::get(format!("{}/api/openapi.json", f.api.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    let mut described = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            described.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    described.sort();
    let expected = [
        "DELETE /api/api-keys/{id}",
        "GET /api/api-keys",
        "GET /api/audit",
        "GET /api/audit/export",
        "GET /api/audit/verify",
        "GET /api/devices",
        "GET /api/documents",
        "GET /api/me",
        "GET /api/presence",
        "GET /api/status",
        "GET /api/users",
        "PATCH /api/users/{id}",
        "POST /api/api-keys",
        "POST /api/auth/enroll/confirm",
        "POST /api/auth/enroll/start",
        "POST /api/auth/login",
        "POST /api/auth/logout",
        "POST /api/auth/logout-everywhere",
        "POST /api/auth/password",
        "POST /api/auth/refresh",
        "POST /api/auth/second-factor",
        "POST /api/auth/step-up",
        "POST /api/devices/{id}/revoke",
        "POST /api/documents",
        "POST /api/users",
        "POST /api/users/{id}/reset-2fa",
        "POST /api/users/{id}/sessions/revoke",
        "PUT /api/users/{id}/events",
        "GET /api/settings/{document_id}/backups",
        "POST /api/settings/{document_id}/backups/{backup_id}/restore",
        "GET /api/events/{document_id}/ticket-key",
        "POST /api/events/{document_id}/tickets",
    ];
    let mut expected = expected.to_vec();
    expected.sort();
    assert_eq!(described, expected);
    // Every described route is served: no 404 or 405 for it.
    for entry in &described {
        let (method, path) = entry.split_once(' ').unwrap();
        let path: String = path
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    "x"
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let reply = f
            .api
            .call(method.parse().unwrap(), &path, None, Some(json!({})))
            .await;
        assert!(
            reply.status != 404 && reply.status != 405,
            "{entry} answered {}",
            reply.status
        );
    }
    f.server.stop().await;
}

/// Every refusal under `/api` is the one JSON error body, including axum's
/// own (a body that is not JSON, the wrong content type, a query that does
/// not parse, an unknown route or method), and the OpenAPI document lists
/// the statuses the layers and extractors answer with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_under_api_is_the_json_error_body_and_documented() {
    let f = start(|_| {}).await;
    let key = f.admin_key().await;
    let base = f
        .server
        .url
        .replacen("ws://", "http://", 1)
        .trim_end_matches("/sync")
        .to_owned();
    let client = sync_tests::http_client(None);
    use reqwest::Method;
    /// A request (method, path, content type and body) and the status and
    /// error code it must get.
    type Case<'a> = (Method, &'a str, Option<(&'a str, &'a str)>, u16, &'a str);
    let cases: [Case; 7] = [
        (
            Method::POST,
            "/api/auth/login",
            Some(("text/plain", "hello")),
            415,
            "unsupported_media_type",
        ),
        (
            Method::POST,
            "/api/auth/login",
            Some(("application/json", "{")),
            400,
            "bad_request",
        ),
        (
            Method::POST,
            "/api/auth/login",
            Some(("application/json", r#"{"email": 5}"#)),
            422,
            "invalid_body",
        ),
        (
            Method::GET,
            "/api/audit?limit=many",
            None,
            400,
            "bad_request",
        ),
        (
            Method::GET,
            "/api/audit?limit=5000",
            None,
            400,
            "bad_request",
        ),
        (Method::GET, "/api/no-such-route", None, 404, "not_found"),
        (
            Method::DELETE,
            "/api/users",
            None,
            405,
            "method_not_allowed",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let mut request = client
            .request(method.clone(), format!("{base}{path}"))
            .bearer_auth(&key);
        if let Some((content_type, text)) = body {
            request = request
                .header("content-type", content_type)
                .body(text.to_owned());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{method} {path}");
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_type.starts_with("application/json"),
            "{method} {path}: {content_type}"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], code, "{method} {path}: {body}");
        assert!(
            !body["message"].as_str().unwrap().is_empty(),
            "{method} {path}: {body}"
        );
    }
    let doc = f.api.get("/api/openapi.json", &key).await.ok();
    let login = &doc["paths"]["/api/auth/login"]["post"]["responses"];
    for status in ["400", "413", "415", "422", "429", "503"] {
        assert_eq!(
            login[status]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorBody",
            "login {status}: {login}"
        );
    }
    // A bearer route documents 401; one without parameters or body no 400.
    let status = &doc["paths"]["/api/status"]["get"]["responses"];
    assert!(status.get("401").is_some(), "{status}");
    assert!(status.get("400").is_none(), "{status}");
    f.server.stop().await;
}
