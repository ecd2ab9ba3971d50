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

use crate::Args;

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

/// Scans a door tablet makes per second while the others reconnect.
const DOOR_SCANS_PER_S: u64 = 5;
/// Fresh tickets kept for that door tablet.
const DOOR_TICKETS: usize = 2_000;

pub async fn offline_tablets(args: &Args) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir()?;
    let tablets = args.clients.max(1);
    let scans = args.scans;
    // Tablet i scans tickets [i * stride, i * stride + scans): neighbours
    // overlap; the door tablet's fresh tickets come after all of those.
    let stride = scans * 3 / 4;
    let offline_attendees = stride * (tablets - 1) + scans;
    let attendees = offline_attendees + DOOR_TICKETS;
    let (admin, admin_sync, event, _, _) = seed_event(args, dir.path(), attendees).await?;
    let tablet_dir = match &args.tablet_dir {
        Some(parent) => Some(tempfile::tempdir_in(parent)?),
        None => None,
    };
    // With `--door-cpu`, everything the door tablet does (its scans, its
    // sync, its journal writer and compactions) runs on that CPU.
    let door_cpu = args.door_cpu.map(CpuRuntime::on).transpose()?;
    let mut replicas = Vec::with_capacity(tablets + 1);
    // The last replica is the door tablet that stays online.
    for i in 0..=tablets {
        let place = match &tablet_dir {
            Some(other) if i < tablets => other.path(),
            _ => dir.path(),
        };
        let path = place.join(format!("tablet{i}.sqlite3"));
        let config = args.sync_config(&args.urls[i % args.urls.len()])?;
        let (tablet, sync) = match door_cpu.as_ref().filter(|_| i == tablets) {
            Some(cpu) => {
                let tablet = cpu.open(path).await?;
                let sync = cpu.start_sync(&tablet, config);
                (tablet, sync)
            }
            None => {
                let tablet = ClientCore::open(path)?;
                let sync = tablet.start_sync(config);
                (tablet, sync)
            }
        };
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
    let door = replicas.pop().context("no door tablet")?;
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
        .chain([&door, &admin])
        .map(|r| r.sync_receive_cpu())
        .collect();
    let door_config = args.sync_config(&args.urls[0])?;
    let door_sync = match &door_cpu {
        Some(cpu) => cpu.start_sync(&door, door_config),
        None => door.start_sync(door_config),
    };
    wait_for(
        "the door tablet's connection",
        Duration::from_secs(args.timeout_secs),
        || door.sync_status().connected,
    )
    .await?;
    // The door tablet scans fresh tickets at a steady rate while the
    // others come back, timing each answer.
    let stop_door = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let door_scanner = {
        let (door, stop) = (door.clone(), stop_door.clone());
        let door_cpu = args.door_cpu;
        std::thread::spawn(move || -> anyhow::Result<Vec<f64>> {
            if let Some(cpu) = door_cpu {
                run_this_thread_on(cpu)?;
            }
            let mut latencies = Vec::new();
            let period = Duration::from_millis(1000 / DOOR_SCANS_PER_S);
            let mut next = Instant::now();
            for n in 0..DOOR_TICKETS {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let code = format!("T{:07}", offline_attendees + n);
                let asked = Instant::now();
                let result = door.check_in(event, &code, "main", Direction::Entry)?;
                latencies.push(asked.elapsed().as_secs_f64() * 1e3);
                if result.answer != Answer::Admitted {
                    bail!("the door tablet answered {:?}", result.answer);
                }
                next += period;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            Ok(latencies)
        })
    };
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
    let all = || replicas.iter().chain([&door, &admin]);
    // A count per replica, not the scans read back (that alone was a
    // noticeable part of the bench's CPU).
    wait_for(
        "the offline scans everywhere",
        Duration::from_secs(args.timeout_secs),
        || all().all(|r| r.scan_count(event).is_ok_and(|n| n >= offline_total)),
    )
    .await?;
    stop_door.store(true, std::sync::atomic::Ordering::Relaxed);
    let door_latencies = door_scanner
        .join()
        .map_err(|_| anyhow::anyhow!("the door tablet's scanner panicked"))??;
    let total = offline_total + door_latencies.len() as u64;
    wait_for(
        "convergence",
        Duration::from_secs(args.timeout_secs),
        || all().all(|r| r.scan_count(event).is_ok_and(|n| n == total)),
    )
    .await?;
    let converge_s = started.elapsed().as_secs_f64();
    let server_cpu_s = server_cpu_before
        .zip(crate::process_cpu_s(args.server_pid))
        .map(|(before, after)| after - before);
    let tablet_cpu: Vec<f64> = all()
        .zip(&receive_cpu_before)
        .map(|(r, before)| (r.sync_receive_cpu() - *before).as_secs_f64())
        .collect();
    let reference = admin.counts(event, Some("main"))?;
    let duplicates = admin.duplicates(event)?.len();
    let same_everywhere = all().all(|r| {
        r.counts(event, Some("main")).ok() == Some(reference)
            && r.duplicates(event).map(|d| d.len()).ok() == Some(duplicates)
    });
    for sync in syncs {
        sync.stop().await;
    }
    door_sync.stop().await;
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
        // Each replica's, the reconnecting tablets first, then the door
        // and the admin: which ones cost the most.
        "tablet_cpu_s": tablet_cpu,
        "server_rss_mib": crate::server_rss_mib(args.server_pid),
        "bench_peak_rss_mib": crate::bench_peak_rss_mib(),
    }))
}

/// A tokio runtime whose every thread (worker and blocking pool) runs on
/// one CPU: a replica opened and synced through it does all its work there
/// (threads it starts inherit the CPU), as a tablet with a CPU of its own.
struct CpuRuntime {
    runtime: Option<tokio::runtime::Runtime>,
}

impl CpuRuntime {
    fn on(cpu: usize) -> anyhow::Result<Self> {
        // Tried once here for a clear error; the runtime's threads then
        // cannot fail to move.
        std::thread::spawn(move || run_this_thread_on(cpu))
            .join()
            .map_err(|_| anyhow::anyhow!("pinning a thread panicked"))??;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(format!("cpu{cpu}"))
            .enable_all()
            .on_thread_start(move || {
                let _ = run_this_thread_on(cpu);
            })
            .build()?;
        Ok(Self {
            runtime: Some(runtime),
        })
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("present until dropped")
    }

    /// Opens a replica on this CPU (its journal writer starts there).
    async fn open(&self, path: std::path::PathBuf) -> anyhow::Result<ClientCore> {
        Ok(self
            .runtime()
            .spawn_blocking(move || ClientCore::open(path))
            .await??)
    }

    fn start_sync(&self, core: &ClientCore, config: client_core::SyncConfig) -> SyncHandle {
        let _on_this_runtime = self.runtime().enter();
        core.start_sync(config)
    }
}

impl Drop for CpuRuntime {
    fn drop(&mut self) {
        // Dropped inside the bench's own runtime, which may not block.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Moves the calling thread to `cpu` alone (Linux; elsewhere an error).
fn run_this_thread_on(cpu: usize) -> anyhow::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // libc's CPU_SET indexes a fixed-size set (and panics past it).
        if cpu >= libc::CPU_SETSIZE as usize {
            bail!("there is no CPU {cpu} (at most {})", libc::CPU_SETSIZE - 1);
        }
        // SAFETY: `set` is a zeroed cpu_set_t, written only through libc's
        // own macros, and passed with its size; 0 names the calling thread.
        let done = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
        };
        if done != 0 {
            bail!(
                "cannot run the door tablet on CPU {cpu}: {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    bail!("--door-cpu {cpu}: pinning a thread is only done on Linux")
}
