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
use client_core::{ClientCore, DocumentId, SyncHandle};
use serde_json::{Value, json};

use crate::{Args, door};

pub(crate) async fn wait_for(
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

/// Asks `tablet` (syncing) for `event` and waits until its index holds the
/// event's `attendees` on the list "main": the download is done.
pub(crate) async fn download(
    what: &str,
    tablet: &ClientCore,
    event: DocumentId,
    attendees: usize,
    limit: Duration,
) -> anyhow::Result<()> {
    tablet.find(event)?;
    wait_for(what, limit, || {
        tablet
            .counts(event, Some("main"))
            .is_ok_and(|c| c.expected == attendees as u64)
    })
    .await
}

/// An administrator's replica holding an uploaded event of `attendees`.
pub(crate) async fn seed_event(
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
    let sync = admin.start_sync(args.sync_config(&args.urls[0])?);
    wait_for("the upload", Duration::from_secs(args.timeout_secs), || {
        admin.sync_status().pending_changes == 0
    })
    .await
    .with_context(|| format!("the administrator's sync status: {:?}", admin.sync_status()))?;
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
    let sync = tablet.start_sync(args.sync_config(&args.urls[0])?);
    download(
        "the download",
        &tablet,
        event,
        attendees,
        Duration::from_secs(args.timeout_secs),
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
    // Tablet i scans tickets [i * stride, i * stride + scans): neighbours
    // overlap; the door tablet's fresh tickets come after all of those.
    let stride = scans * 3 / 4;
    let offline_attendees = stride * (tablets - 1) + scans;
    let attendees = offline_attendees + door::TICKETS;
    let (admin, admin_sync, event, _, _) = seed_event(args, dir.path(), attendees).await?;
    let tablet_dir = match &args.tablet_dir {
        Some(parent) => Some(tempfile::tempdir_in(parent)?),
        None => None,
    };
    // The door tablet, which stays online and scans during the reconnect,
    // is a process of its own (on `--door-cpu` when given), its store on
    // the disk beside the admin's.
    let mut door = door::DoorProcess::start(args)?;
    door.open(&dir.path().join("door.sqlite3"), event, attendees)?;
    let mut replicas = Vec::with_capacity(tablets);
    for i in 0..tablets {
        let place = tablet_dir.as_ref().map_or(dir.path(), |other| other.path());
        let tablet = ClientCore::open(place.join(format!("tablet{i}.sqlite3")))?;
        let sync = tablet.start_sync(args.sync_config(&args.urls[i % args.urls.len()])?);
        download(
            "a tablet's download",
            &tablet,
            event,
            attendees,
            Duration::from_secs(args.timeout_secs),
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
    let offline_total = (tablets * scans) as u64;
    let distinct = offline_attendees;
    for tablet in &replicas {
        tablet.flush_journal()?;
    }
    let changes_uploaded: u64 = replicas
        .iter()
        .map(|t| t.sync_status().pending_changes)
        .sum();
    let receive_cpu_before: Vec<Duration> = replicas
        .iter()
        .chain([&admin])
        .map(|r| r.sync_receive_cpu())
        .collect();
    // The door tablet scans fresh tickets at a steady rate while the
    // others come back, timing each answer.
    door.start_scanning(offline_attendees)?;
    let server_cpu_before = crate::process_cpu_s(args.server_pid);
    let started = Instant::now();
    let configs = (0..replicas.len())
        .map(|i| args.sync_config(&args.urls[i % args.urls.len()]))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let syncs: Vec<SyncHandle> = replicas
        .iter()
        .zip(configs)
        .map(|(t, config)| t.start_sync(config))
        .collect();
    let others = || replicas.iter().chain([&admin]);
    // A count per replica, not the scans read back (that alone was a
    // noticeable part of the bench's CPU).
    wait_for(
        "the offline scans everywhere",
        Duration::from_secs(args.timeout_secs),
        || {
            others().all(|r| r.scan_count(event).is_ok_and(|n| n >= offline_total))
                && door.scan_count().is_ok_and(|n| n >= offline_total)
        },
    )
    .await?;
    let door_latencies = door.stop_scanning()?;
    let total = offline_total + door_latencies.len() as u64;
    wait_for(
        "convergence",
        Duration::from_secs(args.timeout_secs),
        || {
            others().all(|r| r.scan_count(event).is_ok_and(|n| n == total))
                && door.scan_count().is_ok_and(|n| n == total)
        },
    )
    .await?;
    let converge_s = started.elapsed().as_secs_f64();
    let server_cpu_s = server_cpu_before
        .zip(crate::process_cpu_s(args.server_pid))
        .map(|(before, after)| after - before);
    let door_report = door.report()?;
    let mut tablet_cpu: Vec<f64> = others()
        .zip(&receive_cpu_before)
        .map(|(r, before)| (r.sync_receive_cpu() - *before).as_secs_f64())
        .collect();
    tablet_cpu.push(door_report.receive_cpu_s);
    let reference = admin.counts(event, Some("main"))?;
    let duplicates = admin.duplicates(event)?.len();
    let same_everywhere = others().all(|r| {
        r.counts(event, Some("main")).ok() == Some(reference)
            && r.duplicates(event).map(|d| d.len()).ok() == Some(duplicates)
    }) && (
        door_report.expected,
        door_report.checked_in,
        door_report.inside,
    ) == (reference.expected, reference.checked_in, reference.inside)
        && door_report.duplicates == duplicates;
    for sync in syncs {
        sync.stop().await;
    }
    door.quit()?;
    admin_sync.stop().await;
    let mut sorted = door_latencies.clone();
    sorted.sort_by(f64::total_cmp);
    let scan_p99 = crate::percentile(&sorted, 99.0);
    let scan_max = sorted.last().copied().unwrap_or(0.0);
    Ok(json!({
        "mode": "offline-tablets",
        "tablets": tablets,
        "scans_per_tablet": scans,
        "attendees": attendees,
        "offline_scanning_s": scanning_s,
        "changes_uploaded": changes_uploaded,
        "reconnect_until_converged_s": converge_s,
        "scans_everywhere": total,
        "lost": total as i64 - admin.scan_count(event)? as i64,
        "checked_in": reference.checked_in,
        "expected_checked_in": distinct + door_latencies.len(),
        "duplicates_flagged": duplicates,
        "expected_duplicates": offline_total as usize - distinct,
        "same_counts_and_duplicates_everywhere": same_everywhere,
        "scans_during_reconnect": door_latencies.len(),
        "scan_during_reconnect_p99_ms": scan_p99,
        "scan_during_reconnect_max_ms": scan_max,
        "door_cpu": args.door_cpu,
        "server_cpu_s": server_cpu_s,
        "tablet_cpu_s_max": tablet_cpu.iter().copied().fold(0.0, f64::max),
        "tablet_cpu_s_sum": tablet_cpu.iter().sum::<f64>(),
        // Each replica's, the reconnecting tablets first, then the admin
        // and the door (its own process): which ones cost the most.
        "tablet_cpu_s": tablet_cpu,
        "server_rss_mib": crate::server_rss_mib(args.server_pid),
        "bench_peak_rss_mib": crate::bench_peak_rss_mib(),
    }))
}

/// Refuses a CPU number the pinning below cannot name.
pub(crate) fn check_cpu(cpu: usize) -> anyhow::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // libc's CPU_SET indexes a fixed-size set (and panics past it).
        if cpu >= libc::CPU_SETSIZE as usize {
            bail!("there is no CPU {cpu} (at most {})", libc::CPU_SETSIZE - 1);
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    bail!("--door-cpu {cpu}: pinning a process is only done on Linux")
}

/// Moves the calling thread to `cpu` alone (Linux; `cpu` checked by
/// [`check_cpu`]). Async-signal-safe: the door tablet's process calls it
/// between fork and exec, so every thread it starts runs there.
pub(crate) fn pin_this_thread(cpu: usize) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `set` is a zeroed cpu_set_t, written only through libc's
        // own macros with a CPU below CPU_SETSIZE, and passed with its
        // size; 0 names the calling thread.
        let done = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
        };
        if done != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = cpu;
        Err(std::io::Error::other("pinning is only done on Linux"))
    }
}
