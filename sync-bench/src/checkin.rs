//! Check-in benchmarks with real client-core replicas (local SQLite stores
//! in a temporary directory) against a running server:
//!
//! `event-download`: an event of N attendees is imported and uploaded by an
//! administrator's replica; then a fresh tablet downloads it, and the clock
//! stops when that tablet can answer a scan.
//!
//! `offline-tablets`: T tablets download an event, go offline, each scans S
//! tickets (neighbouring tablets overlap, so duplicates arise), then all
//! reconnect at once; the clock stops when every replica holds every scan.
//! Reports lost scans and whether every duplicate was flagged everywhere.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use client_core::event_model::document::{CheckinList, EventInfo};
use client_core::event_model::rules::{Answer, Direction, ListRules};
use client_core::{ClientCore, DocumentId, SyncConfig, SyncHandle};
use serde_json::{Value, json};

use crate::Args;

async fn wait_for(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// An administrator's replica holding an uploaded event of `attendees`.
async fn seed_event(
    args: &Args,
    dir: &std::path::Path,
    attendees: usize,
) -> anyhow::Result<(ClientCore, SyncHandle, DocumentId, f64, f64)> {
    let admin = ClientCore::open(dir.join("admin.sqlite3"))?;
    let event = admin.create_event(&EventInfo::new("bench", "Benchmark event"))?;
    admin.put_checkin_list(
        event,
        &CheckinList {
            id: "main".into(),
            name: "Main".into(),
            rules: ListRules::default(),
        },
    )?;
    let mut csv = String::from("ticket_code,name,email\n");
    for i in 0..attendees {
        csv.push_str(&format!("T{i:07},Guest {i},guest{i}@example.org\n"));
    }
    let started = Instant::now();
    admin
        .import_attendees_csv(event, csv.as_bytes(), |_| true)?
        .context("import aborted")?;
    let import_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let sync = admin.start_sync(SyncConfig::new(args.urls[0].clone(), &args.token));
    wait_for("the upload", Duration::from_secs(args.timeout_secs), || {
        admin.sync_status().pending_changes == 0
    })
    .await?;
    Ok((
        admin,
        sync,
        event,
        import_s,
        started.elapsed().as_secs_f64(),
    ))
}

pub async fn event_download(args: &Args) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir()?;
    let attendees = args.attendees;
    let (_admin, admin_sync, event, import_s, upload_s) =
        seed_event(args, dir.path(), attendees).await?;
    let tablet = ClientCore::open(dir.path().join("tablet.sqlite3"))?;
    let started = Instant::now();
    let sync = tablet.start_sync(SyncConfig::new(args.urls[0].clone(), &args.token));
    tablet.find(event)?;
    wait_for(
        "the download",
        Duration::from_secs(args.timeout_secs),
        || {
            tablet
                .counts(event, Some("main"))
                .is_ok_and(|c| c.expected == attendees as u64)
        },
    )
    .await?;
    let answer = tablet.check_in(event, "T0000042", "main", Direction::Entry)?;
    let ready_s = started.elapsed().as_secs_f64();
    if answer.answer != Answer::Admitted {
        bail!("the downloaded tablet answered {:?}", answer.answer);
    }
    sync.stop().await;
    admin_sync.stop().await;
    Ok(json!({
        "mode": "event-download",
        "attendees": attendees,
        "import_s": import_s,
        "upload_s": upload_s,
        "download_until_first_answer_s": ready_s,
        "server_rss_mib": crate::server_rss_mib(args.server_pid),
    }))
}

pub async fn offline_tablets(args: &Args) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir()?;
    let tablets = args.clients.max(1);
    let scans = args.scans;
    // Tablet i scans tickets [i * stride, i * stride + scans): neighbours overlap.
    let stride = scans * 3 / 4;
    let attendees = stride * (tablets - 1) + scans;
    let (admin, admin_sync, event, _, _) = seed_event(args, dir.path(), attendees).await?;
    let mut replicas = Vec::with_capacity(tablets);
    for i in 0..tablets {
        let tablet = ClientCore::open(dir.path().join(format!("tablet{i}.sqlite3")))?;
        let sync = tablet.start_sync(SyncConfig::new(
            args.urls[i % args.urls.len()].clone(),
            &args.token,
        ));
        tablet.find(event)?;
        wait_for(
            "a tablet's download",
            Duration::from_secs(args.timeout_secs),
            || {
                tablet
                    .counts(event, Some("main"))
                    .is_ok_and(|c| c.expected == attendees as u64)
            },
        )
        .await?;
        sync.stop().await;
        replicas.push(tablet);
    }
    let started = Instant::now();
    for (i, tablet) in replicas.iter().enumerate() {
        for n in 0..scans {
            let code = format!("T{:07}", i * stride + n);
            let result = tablet.check_in(event, &code, "main", Direction::Entry)?;
            if result.answer != Answer::Admitted {
                bail!("an offline tablet answered {:?}", result.answer);
            }
        }
    }
    let scanning_s = started.elapsed().as_secs_f64();
    let total = tablets * scans;
    let distinct = attendees;
    let started = Instant::now();
    let syncs: Vec<SyncHandle> = replicas
        .iter()
        .enumerate()
        .map(|(i, t)| {
            t.start_sync(SyncConfig::new(
                args.urls[i % args.urls.len()].clone(),
                &args.token,
            ))
        })
        .collect();
    let all = || replicas.iter().chain(std::iter::once(&admin));
    wait_for(
        "convergence",
        Duration::from_secs(args.timeout_secs),
        || {
            all().all(|r| {
                r.recent_scans(event, total + 1)
                    .is_ok_and(|s| s.len() == total)
            })
        },
    )
    .await?;
    let converge_s = started.elapsed().as_secs_f64();
    let reference = admin.counts(event, Some("main"))?;
    let duplicates = admin.duplicates(event)?.len();
    let same_everywhere = all().all(|r| {
        r.counts(event, Some("main")).ok() == Some(reference)
            && r.duplicates(event).map(|d| d.len()).ok() == Some(duplicates)
    });
    for sync in syncs {
        sync.stop().await;
    }
    admin_sync.stop().await;
    Ok(json!({
        "mode": "offline-tablets",
        "tablets": tablets,
        "scans_per_tablet": scans,
        "attendees": attendees,
        "offline_scanning_s": scanning_s,
        "reconnect_until_converged_s": converge_s,
        "scans_everywhere": total,
        "lost": total as i64 - admin.recent_scans(event, total + 1)?.len() as i64,
        "checked_in": reference.checked_in,
        "expected_checked_in": distinct,
        "duplicates_flagged": duplicates,
        "expected_duplicates": total - distinct,
        "same_counts_and_duplicates_everywhere": same_everywhere,
        "server_rss_mib": crate::server_rss_mib(args.server_pid),
    }))
}
