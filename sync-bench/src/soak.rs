//! `soak`: a mixed load for `--duration-secs`, reporting the server's
//! resident memory, open file descriptors and threads, and the latencies
//! of what happened, every `--report-every-secs`. What a venue's day does
//! to a server, compressed: whatever grows minute after minute (memory,
//! descriptors, sessions) shows as a slope here.
//!
//! All real parts: `--scanners` client-core tablets check tickets in at
//! `--rate` scans per second in all (each answer timed) while an
//! administrator's replica takes every scan in; a member's device signed in
//! with a password and TOTP changes a setting every 5 s through its settings
//! document (validated by the server); another member device signs in
//! afresh every 31 s (password, then a TOTP code of a new 30 s window) and
//! signs out again; a tablet reconnects every 10 s and times until it holds
//! every scan made before it reconnected. At the end everything must have
//! arrived: `lost` counts scans the administrator never saw.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use client_core::event_model::rules::{Answer, Direction};
use client_core::{Account, ClientCore, SettingValue, SignInStep, SyncConfig};
use serde_json::{Value, json};

use crate::Args;
use crate::checkin::{download, seed_event, wait_for};
use crate::stadium::latency_summary;

/// What happened in one reporting window, filled in by the load's tasks.
#[derive(Default)]
struct Window {
    scan_answer_ms: Vec<f64>,
    sign_in_ms: Vec<f64>,
    reconnect_ms: Vec<f64>,
    settings_changes: u64,
    errors: Vec<String>,
}

type Shared = Arc<Mutex<Window>>;

fn record(window: &Shared, f: impl FnOnce(&mut Window)) {
    f(&mut window.lock().expect("soak window"));
}

pub async fn soak(args: &Args) -> anyhow::Result<Value> {
    // Sessions are kept in a keychain; the bench's is in memory.
    keyring_core::set_default_store(keyring_core::mock::Store::new()?);
    let dir = tempfile::tempdir()?;
    let url = args.urls[0].clone();
    let http = url
        .replacen("ws://", "http://", 1)
        .replacen("wss://", "https://", 1)
        .trim_end_matches("/sync")
        .to_owned();
    let attendees = args.attendees;
    let (admin, _admin_sync, event, _, _) = seed_event(args, dir.path(), attendees).await?;

    let mut scanners = Vec::new();
    for i in 0..args.scanners.max(1) {
        let tablet = ClientCore::open(dir.path().join(format!("scanner{i}.sqlite3")))?;
        let sync = tablet.start_sync(args.sync_config(&url)?);
        download(
            "a scanner's download",
            &tablet,
            event,
            attendees,
            limit(args),
        )
        .await?;
        scanners.push((tablet, sync));
    }

    // A member whose settings sync, signed in once (enrolling TOTP).
    let email = format!("soak-{}@example.org", uuid::Uuid::new_v4());
    let password = "soak-password-1";
    create_member(args, &http, &email, password).await?;
    let member = ClientCore::open(dir.path().join("member.sqlite3"))?;
    let account = Account::new(&member, &http)?;
    let secret = enroll(&account, &email, password).await?;
    let settings = account.open_settings().await?;
    let _member_sync = member.start_sync(SyncConfig::with_account(&url, &account));
    let enrolled_at = Instant::now();

    let window: Shared = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration_secs);

    // Scans, on a thread of their own (check_in is synchronous), at a steady rate.
    let scanner_cores: Vec<ClientCore> = scanners.iter().map(|(t, _)| t.clone()).collect();
    let scanning = {
        let (window, stop, made) = (window.clone(), stop.clone(), made.clone());
        let period = Duration::from_micros(1_000_000 / args.rate.max(1));
        std::thread::spawn(move || -> anyhow::Result<()> {
            let mut next = Instant::now();
            for n in 0..attendees {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let tablet = &scanner_cores[n % scanner_cores.len()];
                let asked = Instant::now();
                let result =
                    tablet.check_in(event, &format!("T{n:07}"), "main", Direction::Entry)?;
                let ms = asked.elapsed().as_secs_f64() * 1000.0;
                if result.answer != Answer::Admitted {
                    bail!("scan {n} answered {:?}", result.answer);
                }
                made.fetch_add(1, Ordering::Relaxed);
                record(&window, |w| w.scan_answer_ms.push(ms));
                next += period;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            Ok(())
        })
    };

    // Settings changes every 5 s.
    let settings_task = {
        let (window, stop, member) = (window.clone(), stop.clone(), member.clone());
        tokio::spawn(async move {
            let themes = ["dark", "light", "system"];
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let value = SettingValue::Text(themes[n % themes.len()].into());
                match member.set_setting(settings, "theme", value) {
                    Ok(()) => record(&window, |w| w.settings_changes += 1),
                    Err(e) => record(&window, |w| w.errors.push(format!("setting: {e}"))),
                }
                n += 1;
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        })
    };

    // A fresh sign-in every 31 s (a new TOTP window each time), then out again.
    let sign_ins = {
        let (window, stop) = (window.clone(), stop.clone());
        let (http, email, secret) = (http.clone(), email.clone(), secret.clone());
        let device = ClientCore::open(dir.path().join("signin.sqlite3"))?;
        tokio::spawn(async move {
            let mut due = enrolled_at + Duration::from_secs(31);
            while !stop.load(Ordering::Relaxed) {
                if Instant::now() < due {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                due += Duration::from_secs(31);
                let asked = Instant::now();
                match sign_in_and_out(&device, &http, &email, password, &secret).await {
                    Ok(()) => {
                        let ms = asked.elapsed().as_secs_f64() * 1000.0;
                        record(&window, |w| w.sign_in_ms.push(ms));
                    }
                    Err(e) => record(&window, |w| w.errors.push(format!("sign-in: {e:#}"))),
                }
            }
        })
    };

    // A tablet that reconnects every 10 s and times until it holds every
    // scan the administrator had when it reconnected.
    let reconnects = {
        let (window, stop, admin) = (window.clone(), stop.clone(), admin.clone());
        let tablet = ClientCore::open(dir.path().join("reconnecting.sqlite3"))?;
        tablet.find(event)?;
        let config = args.sync_config(&url)?;
        let limit = limit(args);
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let asked = Instant::now();
                let behind = admin.scan_count(event).unwrap_or(0);
                let sync = tablet.start_sync(config.clone());
                let synced = wait_for("the reconnecting tablet", limit, || {
                    tablet.sync_status().connected
                        && tablet.scan_count(event).is_ok_and(|n| n >= behind)
                })
                .await;
                match synced {
                    Ok(()) => {
                        let ms = asked.elapsed().as_secs_f64() * 1000.0;
                        record(&window, |w| w.reconnect_ms.push(ms));
                    }
                    Err(e) => record(&window, |w| w.errors.push(format!("reconnect: {e:#}"))),
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
                sync.stop().await;
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        })
    };

    // Every window: the server's process, and what the tasks saw.
    let every = Duration::from_secs(args.report_every_secs.max(1));
    let mut windows = Vec::new();
    let mut errors = Vec::new();
    let mut next_report = started + every;
    let mut scanning = Some(scanning);
    while Instant::now() < deadline {
        tokio::time::sleep_until(next_report.min(deadline).into()).await;
        next_report += every;
        if Instant::now() >= deadline {
            // The last window ends with the load: no scan falls after it.
            stop.store(true, Ordering::Relaxed);
            if let Some(scanning) = scanning.take() {
                scanning
                    .join()
                    .map_err(|_| anyhow::anyhow!("the scanner thread panicked"))??;
            }
        }
        let seen = admin.scan_count(event)?;
        let done = std::mem::take(&mut *window.lock().expect("soak window"));
        errors.extend(done.errors.iter().cloned());
        let minute = json!({
            "at_s": started.elapsed().as_secs(),
            "server_rss_mib": crate::server_rss_mib(args.server_pid),
            "server_open_fds": open_fds(args.server_pid),
            "server_threads": threads(args.server_pid),
            "server_cpu_s": crate::process_cpu_s(args.server_pid),
            "scans_made": made.load(Ordering::Relaxed),
            "scans_at_admin": seen,
            "scan_answer": latency_summary(done.scan_answer_ms),
            "sign_in": latency_summary(done.sign_in_ms),
            "reconnect_until_synced": latency_summary(done.reconnect_ms),
            "settings_changes": done.settings_changes,
            "errors": done.errors.len(),
        });
        eprintln!("{minute}");
        windows.push(minute);
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(scanning) = scanning.take() {
        scanning
            .join()
            .map_err(|_| anyhow::anyhow!("the scanner thread panicked"))??;
    }
    for task in [settings_task, sign_ins, reconnects] {
        task.await?;
    }
    // What the other tasks did after the last window: their errors count.
    errors.extend(std::mem::take(
        &mut window.lock().expect("soak window").errors,
    ));
    // Nothing lost: every scan reaches the administrator, every setting the server.
    let made = made.load(Ordering::Relaxed);
    for (tablet, _) in &scanners {
        tablet.flush_journal()?;
    }
    let arrived = wait_for("every scan at the administrator", limit(args), || {
        admin.scan_count(event).is_ok_and(|n| n >= made)
    })
    .await;
    wait_for("the member's settings at the server", limit(args), || {
        member.sync_status().pending_changes == 0
    })
    .await?;
    let seen = admin.scan_count(event)?;
    let rss: Vec<f64> = windows
        .iter()
        .filter_map(|w| w["server_rss_mib"].as_f64())
        .collect();
    let fds: Vec<u64> = windows
        .iter()
        .filter_map(|w| w["server_open_fds"].as_u64())
        .collect();
    Ok(json!({
        "mode": "soak",
        "duration_s": args.duration_secs,
        "scanners": scanners.len(),
        "rate": args.rate,
        "scans_made": made,
        "scans_at_admin": seen,
        "lost": made.saturating_sub(seen),
        "all_arrived": arrived.is_ok(),
        "errors": errors,
        // Growth from the second window (after the start-up's allocations)
        // to the last.
        "server_rss_mib_second_window": rss.get(1),
        "server_rss_mib_last": rss.last(),
        "server_rss_mib_max": rss.iter().copied().fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v)))),
        "server_open_fds_second_window": fds.get(1),
        "server_open_fds_last": fds.last(),
        "server_open_fds_max": fds.iter().max(),
        "windows": windows,
    }))
}

fn limit(args: &Args) -> Duration {
    Duration::from_secs(args.timeout_secs)
}

/// The staff account (staff must use TOTP), made with the bench's administrator token.
async fn create_member(args: &Args, http: &str, email: &str, password: &str) -> anyhow::Result<()> {
    let reply = reqwest::Client::builder()
        .use_preconfigured_tls(Arc::unwrap_or_clone(args.trust()?.rustls_config()?))
        .build()?
        .post(format!("{http}/api/users"))
        .bearer_auth(&args.token)
        .json(&json!({ "email": email, "role": "staff", "password": password }))
        .send()
        .await?;
    let status = reply.status();
    if !status.is_success() {
        bail!("creating the member: {status} {}", reply.text().await?);
    }
    Ok(())
}

/// Signs in for the first time, enrolling TOTP; returns the secret.
async fn enroll(account: &Account, email: &str, password: &str) -> anyhow::Result<String> {
    let SignInStep::EnrollmentRequired { challenge } =
        account.sign_in(email, password, "soak member").await?
    else {
        bail!("a new member was not asked to enroll");
    };
    let enrollment = account.start_enrollment(&challenge).await?;
    let code = totp_code(&enrollment.secret)?;
    account.confirm_enrollment(&challenge, &code).await?;
    Ok(enrollment.secret)
}

/// One sign-in with password and a current TOTP code, then sign-out.
async fn sign_in_and_out(
    device: &ClientCore,
    http: &str,
    email: &str,
    password: &str,
    secret: &str,
) -> anyhow::Result<()> {
    let account = Account::new(device, http)?;
    let SignInStep::SecondFactorRequired { challenge } =
        account.sign_in(email, password, "soak sign-in").await?
    else {
        bail!("an enrolled member was not asked for a code");
    };
    account
        .submit_totp(&challenge, &totp_code(secret)?)
        .await
        .context("the code")?;
    account.sign_out().await?;
    Ok(())
}

fn totp_code(secret: &str) -> anyhow::Result<String> {
    let bytes = totp_rs::Secret::Encoded(secret.to_owned())
        .to_bytes()
        .map_err(|e| anyhow::anyhow!("TOTP secret: {e:?}"))?;
    let totp = totp_rs::TOTP::new(
        totp_rs::Algorithm::SHA1,
        6,
        1,
        30,
        bytes,
        None,
        "soak".into(),
    )
    .map_err(|e| anyhow::anyhow!("TOTP: {e:?}"))?;
    Ok(totp.generate_current()?)
}

/// Open file descriptors of a process (Linux /proc).
fn open_fds(pid: Option<u32>) -> Option<u64> {
    Some(
        std::fs::read_dir(format!("/proc/{}/fd", pid?))
            .ok()?
            .count() as u64,
    )
}

/// Threads of a process (Linux /proc).
fn threads(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
}
