//! `stadium`: many tablets online on one event while scans go on, measuring
//! how long a scan takes to reach every other tablet and what the server
//! spends per delivery.
//!
//! `--scanners` tablets are real client-core replicas: they download the
//! event, scan fresh tickets at `--rate` scans per second in all for
//! `--duration-secs`, and each times when every other scanner's scan shows
//! in its own index (`propagation_*`). The rest of `--clients` are
//! protocol-level readers: a websocket speaking automerge's sync protocol
//! that already holds the event (a tablet at a venue downloaded it before
//! the doors opened), keeps only the change hashes it has seen, and answers
//! every message carrying changes as an automerge peer would (its new heads).
//! Holding 500 real replicas of a 30,000-attendee event would need more
//! memory than this machine has; the server cannot tell the difference.
//! Readers time each scan's arrival (`reader_arrival_*`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use automerge::ChangeHash;
use automerge::sync::{self, BloomFilter, Have};
use client_core::event_model::rules::{Answer, Direction};
use client_core::{ChangeOrigin, ClientCore, DocEvent, DocumentId};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sync_protocol::Message;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::Args;
use crate::checkin::{download, seed_event, wait_for};

/// What one sync message from the server carries, decoded once for every
/// reader that receives the same bytes (in-sync readers get identical
/// messages): the bench runs hundreds of readers on the same two cores as
/// the server, and decoding each change once per reader would make the
/// bench, not the server, the bottleneck.
struct Decoded {
    changes: Vec<(ChangeHash, Vec<ChangeHash>)>,
    scan_ids: Vec<String>,
}

#[derive(Default)]
struct DecodeCache(Mutex<HashMap<Vec<u8>, Arc<Decoded>>>);

impl DecodeCache {
    fn decode(&self, data: &[u8]) -> anyhow::Result<(sync::Message, Arc<Decoded>)> {
        let message = sync::Message::decode(data)?;
        if let Some(found) = self.0.lock().expect("decode cache").get(data) {
            return Ok((message, found.clone()));
        }
        let mut decoded = Decoded {
            changes: Vec::new(),
            scan_ids: Vec::new(),
        };
        for chunk in message.changes.iter() {
            let change = automerge::Change::from_bytes(chunk.to_vec())
                .context("a reader received something other than a change (a whole document?)")?;
            for op in change.decode().operations {
                if let automerge::legacy::Key::Map(key) = &op.key {
                    decoded.scan_ids.push(key.to_string());
                }
            }
            decoded
                .changes
                .push((change.hash(), change.deps().to_vec()));
        }
        let decoded = Arc::new(decoded);
        self.0
            .lock()
            .expect("decode cache")
            .insert(data.to_vec(), decoded.clone());
        Ok((message, decoded))
    }
}

/// A protocol-level tablet: the change hashes it holds and its heads.
struct Reader {
    socket: crate::Socket,
    peer_id: String,
    server_id: String,
    event: DocumentId,
    known: HashSet<ChangeHash>,
    heads: Vec<ChangeHash>,
    /// Each message that brought changes, and when.
    arrivals: Vec<(Arc<Decoded>, Instant)>,
    /// Map keys seen so far (scan ids, and any other record's key).
    keys_seen: Arc<AtomicUsize>,
}

impl Reader {
    async fn connect(
        args: &Args,
        index: usize,
        event: DocumentId,
        heads: &[ChangeHash],
        keys_seen: Arc<AtomicUsize>,
    ) -> anyhow::Result<Self> {
        let peer_id = format!("stadium-reader-{index}-{}", uuid::Uuid::new_v4());
        let url = &args.urls[index % args.urls.len()];
        let (socket, server_id) = crate::connect(args, url, &peer_id).await?;
        let mut reader = Self {
            socket,
            peer_id,
            server_id,
            event,
            known: heads.iter().copied().collect(),
            heads: heads.to_vec(),
            arrivals: Vec::new(),
            keys_seen,
        };
        reader.send_heads().await?;
        Ok(reader)
    }

    /// What an automerge peer holding exactly `heads` says: its heads, and
    /// that it has nothing the server lacks.
    async fn send_heads(&mut self) -> anyhow::Result<()> {
        let data = sync::Message {
            heads: self.heads.clone(),
            need: Vec::new(),
            have: vec![Have {
                last_sync: self.heads.clone(),
                bloom: BloomFilter::default(),
            }],
            changes: Vec::<Vec<u8>>::new().into(),
            flags: None,
            version: sync::MessageVersion::V1,
        }
        .encode();
        let message = Message::Sync {
            sender_id: self.peer_id.clone(),
            target_id: self.server_id.clone(),
            document_id: self.event,
            data,
        };
        self.socket
            .send(WsMessage::Binary(message.encode().into()))
            .await?;
        Ok(())
    }

    /// Takes in one frame; answers when it brought changes.
    async fn on_frame(&mut self, frame: WsMessage, cache: &DecodeCache) -> anyhow::Result<bool> {
        let WsMessage::Binary(bytes) = frame else {
            return Ok(false);
        };
        let data = match Message::decode(&bytes)? {
            Message::Sync { data, .. } | Message::Request { data, .. } => data,
            Message::Error { message } => bail!("server error: {message}"),
            Message::DocUnavailable { .. } => bail!("the event is unavailable to a reader"),
            _ => return Ok(false),
        };
        let (message, decoded) = cache.decode(&data)?;
        if decoded.changes.is_empty() {
            return Ok(false);
        }
        let arrived = Instant::now();
        for (hash, deps) in &decoded.changes {
            if self.known.insert(*hash) {
                self.heads.retain(|h| !deps.contains(h));
                self.heads.push(*hash);
            }
        }
        self.heads.sort();
        if message.heads.iter().all(|h| self.known.contains(h)) {
            self.heads = message.heads;
        }
        self.keys_seen
            .fetch_add(decoded.scan_ids.len(), Ordering::Relaxed);
        self.arrivals.push((decoded, arrived));
        self.send_heads().await?;
        Ok(true)
    }
}

/// Scans one scanner tablet made: id and when its answer came back.
type Made = Vec<(String, Instant)>;

pub(crate) fn latency_summary(mut samples: Vec<f64>) -> Value {
    samples.sort_by(f64::total_cmp);
    json!({
        "samples": samples.len(),
        "p50_ms": crate::percentile(&samples, 50.0),
        "p99_ms": crate::percentile(&samples, 99.0),
        "max_ms": samples.last().copied().unwrap_or(0.0),
    })
}

pub async fn stadium(args: &Args) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir()?;
    let scanners = args.scanners.clamp(2, args.clients.max(2));
    let readers = args.clients.saturating_sub(scanners);
    let total_scans = (args.rate * args.duration_secs) as usize;
    let attendees = args.attendees.max(total_scans + args.checked_in);
    let limit = Duration::from_secs(args.timeout_secs);
    let (admin, admin_sync, event, _, _) = seed_event(args, dir.path(), attendees).await?;
    // Another door has already checked in the last `--checked-in` tickets
    // (the scanners take theirs from the first).
    let mut earlier = HashSet::with_capacity(args.checked_in);
    for n in attendees - args.checked_in..attendees {
        let result = admin.check_in(event, &format!("T{n:07}"), "main", Direction::Entry)?;
        earlier.insert(result.scan_id.context("an earlier scan was admitted")?);
    }
    admin.flush_journal()?;
    // Journaled scans count as pending until they are in the document.
    wait_for("the earlier scans' upload", limit, || {
        admin.sync_status().pending_changes == 0
    })
    .await?;
    let earlier = Arc::new(earlier);
    let heads = admin.heads(event)?;
    // The administrator leaves: every listener below is a tablet.
    admin_sync.stop().await;
    drop(admin);

    let mut tablets = Vec::with_capacity(scanners);
    let mut syncs = Vec::with_capacity(scanners);
    for i in 0..scanners {
        let tablet = ClientCore::open(dir.path().join(format!("scanner{i}.sqlite3")))?;
        syncs.push(tablet.start_sync(args.sync_config(&args.urls[i % args.urls.len()])?));
        download("a scanner's download", &tablet, event, attendees, limit).await?;
        tablets.push(tablet);
    }

    let cache = Arc::new(DecodeCache::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut reader_tasks = Vec::with_capacity(readers);
    let mut reader_counts = Vec::with_capacity(readers);
    // Connected in waves, each reader told the server its heads before the
    // clock starts.
    let args_shared = Arc::new(args.clone());
    for wave in (0..readers).collect::<Vec<_>>().chunks(50) {
        let connected = futures_util::future::join_all(wave.iter().map(|&i| {
            let seen = Arc::new(AtomicUsize::new(0));
            reader_counts.push(seen.clone());
            let (args, heads) = (args_shared.clone(), heads.clone());
            async move { Reader::connect(&args, i, event, &heads, seen).await }
        }))
        .await;
        for reader in connected {
            let mut reader = reader.context("a reader's connection")?;
            let (cache, stop) = (cache.clone(), stop.clone());
            reader_tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let frame = tokio::select! {
                        frame = reader.socket.next() => frame,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    };
                    let frame = frame.context("the server closed a reader")??;
                    reader.on_frame(frame, &cache).await?;
                }
                let _ = reader.socket.close(None).await;
                anyhow::Ok(reader.arrivals)
            }));
        }
    }

    // Each scanner's index, watched: when a remote change arrives, which
    // scans became visible and when.
    let mut watchers = Vec::with_capacity(scanners);
    let visible_counts: Vec<Arc<AtomicUsize>> = (0..scanners)
        .map(|_| Arc::new(AtomicUsize::new(0)))
        .collect();
    for (tablet, visible) in tablets.iter().zip(&visible_counts) {
        let (tablet, visible, stop) = (tablet.clone(), visible.clone(), stop.clone());
        let earlier = earlier.clone();
        let mut events = tablet.subscribe();
        watchers.push(tokio::spawn(async move {
            let mut seen: HashMap<String, Instant> = HashMap::new();
            let mut position = 0;
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            while !stop.load(Ordering::Relaxed) {
                tokio::select! {
                    event_seen = events.recv() => match event_seen {
                        Ok(DocEvent::Changed { document, origin: ChangeOrigin::Remote, .. })
                            if document == event => {}
                        Ok(_) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => break,
                    },
                    _ = tick.tick() => {}
                }
                let at = Instant::now();
                // Only what entered the index since the last look (counting
                // or re-reading every scan made the watchers a large part of
                // the bench's CPU once the event held thousands).
                loop {
                    let batch = tablet.scans_after(event, position, 1024)?;
                    for (at_position, scan) in &batch {
                        position = *at_position;
                        if !earlier.contains(&scan.scan_id) {
                            seen.entry(scan.scan_id.clone()).or_insert(at);
                        }
                    }
                    if batch.len() < 1024 {
                        break;
                    }
                }
                visible.store(seen.len(), Ordering::Relaxed);
            }
            anyhow::Ok(seen)
        }));
    }

    let server_cpu_before = crate::process_cpu_s(args.server_pid);
    let started = Instant::now();
    let mut scanner_threads = Vec::with_capacity(scanners);
    for (k, tablet) in tablets.iter().enumerate() {
        let tablet = tablet.clone();
        let rate = args.rate as f64;
        scanner_threads.push(std::thread::spawn(
            move || -> anyhow::Result<(Made, Vec<f64>)> {
                let mut made = Vec::new();
                let mut answer_ms = Vec::new();
                // Scan n (ticket n) is due at n / rate; scanner k makes every
                // scanners-th one.
                for n in (k..total_scans).step_by(scanners) {
                    let due = started + Duration::from_secs_f64(n as f64 / rate);
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    let asked = Instant::now();
                    let result =
                        tablet.check_in(event, &format!("T{n:07}"), "main", Direction::Entry)?;
                    let answered = Instant::now();
                    if result.answer != Answer::Admitted {
                        bail!(
                            "scanner {k} answered {:?} for a fresh ticket",
                            result.answer
                        );
                    }
                    answer_ms.push((answered - asked).as_secs_f64() * 1e3);
                    made.push((
                        result.scan_id.context("an admitted scan has an id")?,
                        answered,
                    ));
                }
                Ok((made, answer_ms))
            },
        ));
    }
    let mut made: HashMap<String, (usize, Instant)> = HashMap::new();
    let mut answer_ms = Vec::new();
    for (k, thread) in scanner_threads.into_iter().enumerate() {
        let (scans, answers) = thread
            .join()
            .map_err(|_| anyhow::anyhow!("a scanner panicked"))??;
        made.extend(scans.into_iter().map(|(id, at)| (id, (k, at))));
        answer_ms.extend(answers);
    }
    let scanning_s = started.elapsed().as_secs_f64();
    // Every reader holds every scan; every scanner sees the others' scans
    // in its index (its own are there from the start).
    // A reader or watcher that failed stops the wait (its error is
    // reported below); progress goes to stderr every 10 s.
    let mut last_report = Instant::now();
    let waited = wait_for("every scan on every tablet", limit, || {
        let fewest = |counts: &[Arc<AtomicUsize>]| {
            counts
                .iter()
                .map(|n| n.load(Ordering::Relaxed))
                .min()
                .unwrap_or(total_scans)
        };
        let (readers_least, scanners_least) = (fewest(&reader_counts), fewest(&visible_counts));
        if last_report.elapsed() > Duration::from_secs(10) {
            last_report = Instant::now();
            eprintln!(
                "of {total_scans} scans, the slowest reader has {readers_least}, the slowest scanner {scanners_least}"
            );
        }
        let failed = reader_tasks.iter().any(|t| t.is_finished())
            || watchers.iter().any(|t| t.is_finished());
        failed || (readers_least >= total_scans && scanners_least >= total_scans)
    })
    .await;
    let settled_s = started.elapsed().as_secs_f64();
    let server_cpu_s = server_cpu_before
        .zip(crate::process_cpu_s(args.server_pid))
        .map(|(before, after)| after - before);
    stop.store(true, Ordering::Relaxed);

    let mut arrival_ms = Vec::new();
    let mut errors = Vec::new();
    let mut readers_complete = 0;
    for task in reader_tasks {
        match task.await {
            Ok(Ok(arrivals)) => {
                let mut got = 0;
                for (decoded, at) in arrivals {
                    for id in &decoded.scan_ids {
                        if let Some((_, made_at)) = made.get(id) {
                            got += 1;
                            arrival_ms
                                .push(at.saturating_duration_since(*made_at).as_secs_f64() * 1e3);
                        }
                    }
                }
                if got == total_scans {
                    readers_complete += 1;
                }
            }
            Ok(Err(e)) => errors.push(format!("{e:#}")),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let mut propagation_ms = Vec::new();
    for (k, watcher) in watchers.into_iter().enumerate() {
        let seen = watcher
            .await
            .map_err(|_| anyhow::anyhow!("a watcher panicked"))??;
        for (id, at) in seen {
            if let Some((maker, made_at)) = made.get(&id)
                && *maker != k
            {
                propagation_ms.push(at.saturating_duration_since(*made_at).as_secs_f64() * 1e3);
            }
        }
    }
    let counts: Vec<u64> = tablets
        .iter()
        .map(|t| t.scan_count(event).map(|n| n - earlier.len() as u64))
        .collect::<Result<_, _>>()?;
    for sync in syncs {
        sync.stop().await;
    }
    if let Err(e) = waited {
        errors.push(format!("{e:#}"));
    }
    let deliveries = (total_scans * (args.clients.max(scanners) - 1)) as f64;
    let propagation = latency_summary(propagation_ms);
    Ok(json!({
        "mode": "stadium",
        "tablets": readers + scanners,
        "scanner_replicas": scanners,
        "protocol_readers": readers,
        "attendees": attendees,
        "checked_in_before": earlier.len(),
        "scans": total_scans,
        "scans_per_s": args.rate,
        "scanning_s": scanning_s,
        "until_every_tablet_has_every_scan_s": settled_s,
        "lost_on_scanners": counts.iter().map(|&n| total_scans as i64 - n as i64).max(),
        "readers_with_every_scan": readers_complete,
        "propagation_p50_ms": propagation["p50_ms"],
        "propagation_p99_ms": propagation["p99_ms"],
        "propagation": propagation,
        "reader_arrival": latency_summary(arrival_ms),
        "scan_answer": latency_summary(answer_ms),
        "server_cpu_s": server_cpu_s,
        "server_cpu_us_per_delivery": server_cpu_s.map(|cpu| cpu * 1e6 / deliveries),
        "server_rss_mib": crate::server_rss_mib(args.server_pid),
        "errors": errors,
    }))
}
