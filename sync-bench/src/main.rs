//! `sync-bench`: simulated automerge-repo clients against any server that
//! speaks the automerge-repo websocket protocol v1 (ours, or a stock one).
//!
//! `load`: N clients share K documents (client i on document i mod K); each
//! makes M changes whose commit message carries its send time, and every
//! client measures how long other clients' changes took to reach it.
//! `writes`: N writers, each on its own document, each change acknowledged
//! (the server's heads include it, so it is durable) before the next.
//! `idle`: N connections that only handshake and stay open.
//! `event-download` and `offline-tablets`: check-in with client-core
//! replicas (see `checkin.rs`); `stadium`: many tablets online on one event
//! while scans go on (see `stadium.rs`); `many-events`: the server's memory
//! with many events stored and some in use (see `many_events.rs`).
//! Results are printed as one JSON object.

mod checkin;
mod door;
mod many_events;
mod soak;
mod stadium;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use automerge::sync::{self, SyncDoc};
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{Automerge, ROOT};
use clap::{Parser, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use sync_protocol::{DocumentId, Message, PROTOCOL_VERSION};
use tokio::sync::Barrier;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[derive(Clone, Copy, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Mode {
    Load,
    /// Many writers, each on a document of its own, no other readers: how
    /// many changes per second the server makes durable and acknowledges.
    Writes,
    Idle,
    EventDownload,
    OfflineTablets,
    /// The door tablet of `offline-tablets` as a process of its own,
    /// driven over stdin and stdout by that mode (see `door.rs`); not for
    /// use on its own.
    DoorTablet,
    /// `--clients` tablets online on one event of `--attendees`, scanning
    /// at `--rate` per second for `--duration-secs` (see `stadium.rs`).
    Stadium,
    /// `--events` events of `--attendees` on the server, `--active` of them
    /// in use at once: the server's memory (see `many_events.rs`).
    ManyEvents,
    /// A mixed load (scans, settings changes, sign-ins, reconnects) for
    /// `--duration-secs`, the server's memory, descriptors and the
    /// latencies every `--report-every-secs` (see `soak.rs`).
    Soak,
}

#[derive(Parser, Clone)]
#[command(about = "Load tool for automerge-repo sync servers; prints JSON")]
struct Args {
    /// Server websocket URL, e.g. ws://127.0.0.1:8080/sync. Repeat it to
    /// spread clients over several nodes (client i uses URL i mod n), which
    /// measures cross-node propagation.
    #[arg(long = "url", required = true)]
    urls: Vec<String>,
    /// Bearer token (sent as `?token=` too, for servers that only read that).
    #[arg(long, default_value = "")]
    token: String,
    #[arg(long, value_enum, default_value = "load")]
    mode: Mode,
    #[arg(long, default_value_t = 100)]
    clients: usize,
    #[arg(long, default_value_t = 10)]
    docs: usize,
    /// Changes made by each client (load mode).
    #[arg(long, default_value_t = 20)]
    changes: usize,
    /// Writes: every change overwrites the same key (a setting toggled
    /// again and again) instead of adding a key of its own (a scan).
    /// Automerge keeps every overwritten value, so each change then costs
    /// more as the key's history grows.
    #[arg(long)]
    overwrite: bool,
    /// Pause between one client's changes, in milliseconds.
    #[arg(long, default_value_t = 10)]
    interval_ms: u64,
    /// How long idle connections are held before counting them, in seconds.
    #[arg(long, default_value_t = 5)]
    hold_secs: u64,
    /// PID of the server, to report its resident memory (Linux /proc).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// Attendees in the event (event-download).
    #[arg(long, default_value_t = 100_000)]
    attendees: usize,
    /// Offline scans per tablet (offline-tablets; `--clients` tablets).
    #[arg(long, default_value_t = 2_000)]
    scans: usize,
    /// Where the reconnecting tablets keep their stores (offline-tablets;
    /// default: beside the door tablet's). On one machine every replica
    /// shares one disk, which real tablets do not: a tmpfs here (e.g.
    /// /dev/shm) keeps their writes from slowing the door tablet's fsyncs.
    #[arg(long)]
    tablet_dir: Option<std::path::PathBuf>,
    /// The CPU the door tablet's process runs on (offline-tablets; Linux).
    /// Real tablets each have a CPU of their own: with the server and this
    /// bench held to the other CPUs (`taskset -c 0`), a door scan's latency
    /// is its own work and its waits for its own store, not the machine's
    /// 21 replicas competing for two cores.
    #[arg(long)]
    door_cpu: Option<usize>,
    /// Tablets that are real client-core replicas and make the scans
    /// (stadium; the other `--clients` are protocol-level readers).
    #[arg(long, default_value_t = 10)]
    scanners: usize,
    /// Attendees already checked in before the clock starts (stadium): an
    /// event part-way through its doors, whose scans map is that full.
    #[arg(long, default_value_t = 0)]
    checked_in: usize,
    /// Scans per second over all scanners (stadium).
    #[arg(long, default_value_t = 50)]
    rate: u64,
    /// How long the scanners scan, in seconds (stadium).
    #[arg(long, default_value_t = 60)]
    duration_secs: u64,
    /// Seconds between the soak's reports.
    #[arg(long, default_value_t = 60)]
    report_every_secs: u64,
    /// Event documents put on the server (many-events).
    #[arg(long, default_value_t = 1000)]
    events: usize,
    /// Events opened and written at once (many-events).
    #[arg(long, default_value_t = 200)]
    active: usize,
    /// A CA certificate (PEM) to trust beside the system's roots, for
    /// `wss://` servers with a private certificate.
    #[arg(long)]
    ca_file: Option<std::path::PathBuf>,
}

impl Args {
    /// Which servers the bench's connections trust.
    fn trust(&self) -> anyhow::Result<client_core::ServerTrust> {
        let trust = client_core::ServerTrust::default();
        Ok(match &self.ca_file {
            Some(path) => {
                let pem = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                trust.with_extra_ca_pem(&pem)?
            }
            None => trust,
        })
    }

    /// The TLS connector of the raw protocol clients, made once: building a
    /// rustls configuration parses every root certificate, which 19,000 idle
    /// connections would otherwise repeat 19,000 times.
    fn connector(&self) -> anyhow::Result<tokio_tungstenite::Connector> {
        static CONNECTOR: std::sync::OnceLock<tokio_tungstenite::Connector> =
            std::sync::OnceLock::new();
        if let Some(connector) = CONNECTOR.get() {
            return Ok(connector.clone());
        }
        let connector = tokio_tungstenite::Connector::Rustls(self.trust()?.rustls_config()?);
        Ok(CONNECTOR.get_or_init(|| connector).clone())
    }

    /// A client-core sync configuration for `url`, with the bench's trust.
    fn sync_config(&self, url: &str) -> anyhow::Result<client_core::SyncConfig> {
        Ok(client_core::SyncConfig::new(url, &self.token).with_trust(self.trust()?))
    }
}

#[derive(Serialize, Default)]
struct Latency {
    samples: usize,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

#[derive(Serialize)]
struct Report {
    mode: Mode,
    urls: Vec<String>,
    clients: usize,
    docs: usize,
    changes_per_client: usize,
    accepted_changes: usize,
    elapsed_s: f64,
    accepted_changes_per_s: f64,
    propagation: Latency,
    connections_held: usize,
    errors: Vec<String>,
    server_rss_mib: Option<f64>,
    /// Server CPU (user + system) over the run, and per change delivered
    /// to another client (load mode).
    server_cpu_s: Option<f64>,
    server_cpu_us_per_delivery: Option<f64>,
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects and completes the join/peer handshake; returns the socket and the server's peer id.
async fn connect(args: &Args, base: &str, peer_id: &str) -> anyhow::Result<(Socket, String)> {
    let url = if args.token.is_empty() {
        base.to_owned()
    } else {
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}token={}", args.token)
    };
    let mut request = url.into_client_request()?;
    if !args.token.is_empty() {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {}", args.token).parse()?);
    }
    let connector = args.connector()?;
    let (mut socket, _) =
        tokio_tungstenite::connect_async_tls_with_config(request, None, false, Some(connector))
            .await
            .context("connecting")?;
    let join = Message::Join {
        sender_id: peer_id.to_owned(),
        supported_protocol_versions: vec![PROTOCOL_VERSION.into()],
        peer_metadata: None,
    };
    socket.send(WsMessage::Binary(join.encode().into())).await?;
    loop {
        match socket.next().await {
            Some(Ok(WsMessage::Binary(bytes))) => match Message::decode(&bytes)? {
                Message::Peer { sender_id, .. } => return Ok((socket, sender_id)),
                Message::Error { message } => bail!("server error: {message}"),
                _ => continue,
            },
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => bail!("closed during handshake"),
        }
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// One simulated client on one document.
struct Client {
    socket: Socket,
    peer_id: String,
    server_id: String,
    doc_id: DocumentId,
    doc: Automerge,
    state: sync::State,
    latencies_ms: Vec<f64>,
}

impl Client {
    async fn connect(
        args: &Args,
        url: &str,
        label: &str,
        doc_id: DocumentId,
        doc: Automerge,
    ) -> anyhow::Result<Self> {
        let peer_id = format!("bench-{label}-{}", uuid::Uuid::new_v4());
        let (socket, server_id) = connect(args, url, &peer_id).await?;
        Ok(Self {
            socket,
            peer_id,
            server_id,
            doc_id,
            doc,
            state: sync::State::new(),
            latencies_ms: Vec::new(),
        })
    }

    async fn send_sync(&mut self, kind_request: bool) -> anyhow::Result<()> {
        if let Some(message) = self.doc.generate_sync_message(&mut self.state) {
            let data = message.encode();
            let message = if kind_request {
                Message::Request {
                    sender_id: self.peer_id.clone(),
                    target_id: self.server_id.clone(),
                    document_id: self.doc_id,
                    data,
                }
            } else {
                Message::Sync {
                    sender_id: self.peer_id.clone(),
                    target_id: self.server_id.clone(),
                    document_id: self.doc_id,
                    data,
                }
            };
            self.socket
                .send(WsMessage::Binary(message.encode().into()))
                .await?;
        }
        Ok(())
    }

    /// Applies one incoming frame; records propagation latency of other peers' changes.
    async fn on_frame(&mut self, frame: WsMessage) -> anyhow::Result<()> {
        let WsMessage::Binary(bytes) = frame else {
            return Ok(());
        };
        match Message::decode(&bytes)? {
            Message::Sync { data, .. } | Message::Request { data, .. } => {
                let before = self.doc.get_heads();
                self.doc
                    .receive_sync_message(&mut self.state, sync::Message::decode(&data)?)?;
                let received = now_us();
                for change in self.doc.get_changes(&before) {
                    if let Some(sent) = change
                        .message()
                        .and_then(|m| m.strip_prefix("t="))
                        .and_then(|t| t.parse::<u64>().ok())
                    {
                        self.latencies_ms
                            .push(received.saturating_sub(sent) as f64 / 1000.0);
                    }
                }
                self.send_sync(false).await
            }
            Message::Error { message } => bail!("server error: {message}"),
            Message::DocUnavailable { .. } => bail!("document {} unavailable", self.doc_id),
            _ => Ok(()),
        }
    }

    /// Sends what the server lacks and waits until it says it holds every
    /// change of ours (durable, on our server); `what` names the wait in errors.
    async fn push_until_acknowledged(&mut self, what: &'static str) -> anyhow::Result<()> {
        self.send_sync(false).await?;
        while !self.server_has_ours() {
            let frame = self.socket.next().await.context(what)??;
            self.on_frame(frame).await?;
        }
        Ok(())
    }

    /// Whether the server has said it holds every change of ours.
    fn server_has_ours(&self) -> bool {
        self.state.their_heads.as_ref() == Some(&self.doc.get_heads())
    }

    fn change_count(&self) -> usize {
        self.doc.get_changes(&[]).len()
    }
}

/// Puts one document on the server and waits until the server confirms it.
async fn seed_document(args: &Args, doc_id: DocumentId, bytes: &[u8]) -> anyhow::Result<()> {
    let mut client =
        Client::connect(args, &args.urls[0], "seed", doc_id, Automerge::load(bytes)?).await?;
    client
        .push_until_acknowledged("closed while seeding")
        .await?;
    let _ = client.socket.close(None).await;
    Ok(())
}

/// Connects and downloads the document; every client then starts writing at once.
async fn join_document(args: &Args, index: usize, doc_id: DocumentId) -> anyhow::Result<Client> {
    // Clients of one document alternate between nodes, so with several URLs
    // most propagations cross nodes.
    let url = &args.urls[(index / args.docs.max(1)) % args.urls.len()];
    let mut client =
        Client::connect(args, url, &index.to_string(), doc_id, Automerge::new()).await?;
    client.send_sync(true).await?;
    while client.doc.get_heads().is_empty() {
        let frame = client
            .socket
            .next()
            .await
            .context("closed while loading")??;
        client.on_frame(frame).await?;
    }
    Ok(client)
}

async fn load_client(
    args: &Args,
    index: usize,
    doc_id: DocumentId,
    start: &Barrier,
    expected: usize,
) -> anyhow::Result<Vec<f64>> {
    let joined = join_document(args, index, doc_id).await;
    // Every task reaches the barrier exactly once, even after an error,
    // so one failed client cannot hang the others.
    start.wait().await;
    let mut client = joined?;
    client.latencies_ms.clear();
    let mut made = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(args.interval_ms.max(1)));
    // Done when every change is here and the server has all of ours: a
    // change made while a message was in flight goes out with the next
    // round, and leaving before that (everything else having arrived)
    // would strand it, and every other client waiting for it.
    while made < args.changes || client.change_count() < expected || !client.server_has_ours() {
        tokio::select! {
            _ = tick.tick(), if made < args.changes => {
                let mut tx = client.doc.transaction();
                tx.put(ROOT, format!("c{index}"), made as i64)?;
                tx.commit_with(CommitOptions::default().with_message(format!("t={}", now_us())));
                made += 1;
                client.send_sync(false).await?;
            }
            frame = client.socket.next() => {
                let frame = frame.context("server closed the connection")??;
                client.on_frame(frame).await?;
            }
        }
    }
    let _ = client.socket.close(None).await;
    Ok(client.latencies_ms)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// CPU seconds (user + system) a process has used so far (Linux /proc).
fn process_cpu_s(pid: Option<u32>) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / per_s)
}

fn server_rss_mib(pid: Option<u32>) -> Option<f64> {
    status_mib(&format!("/proc/{}/status", pid?), "VmRSS:")
}

/// The bench process's own peak resident memory (its replicas' too, in
/// the check-in modes).
fn bench_peak_rss_mib() -> Option<f64> {
    status_mib("/proc/self/status", "VmHWM:")
}

/// A memory field of a `/proc/<pid>/status` file, in MiB.
fn status_mib(path: &str, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(path).ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

async fn run_load(args: &Args) -> anyhow::Result<Report> {
    let docs = args.docs.max(1);
    // Seed each document with one change (so every client can ask for it).
    let mut seeds = Vec::with_capacity(docs);
    for d in 0..docs {
        let id = DocumentId::random();
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        tx.put(ROOT, "seed", d as i64)?;
        tx.commit();
        seeds.push((id, doc.save()));
    }
    for (id, bytes) in &seeds {
        seed_document(args, *id, bytes)
            .await
            .context("seeding documents")?;
    }
    let clients_per_doc: Vec<usize> = (0..docs)
        .map(|d| (0..args.clients).filter(|i| i % docs == d).count())
        .collect();
    let barrier = std::sync::Arc::new(Barrier::new(args.clients));
    let args = std::sync::Arc::new(Args { ..args.clone() });
    let server_cpu_before = process_cpu_s(args.server_pid);
    let mut tasks = Vec::new();
    for i in 0..args.clients {
        let d = i % docs;
        let id = seeds[d].0;
        let expected = 1 + clients_per_doc[d] * args.changes;
        let args = args.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            load_client(&args, i, id, &barrier, expected).await
        }));
    }
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    let mut finished = 0;
    for task in tasks {
        match task.await {
            Ok(Ok(l)) => {
                finished += 1;
                latencies.extend(l);
            }
            Ok(Err(e)) => errors.push(format!("{e:#}")),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let server_cpu_s = server_cpu_before
        .zip(process_cpu_s(args.server_pid))
        .map(|(before, after)| after - before);
    latencies.sort_by(|a, b| a.total_cmp(b));
    let accepted = finished * args.changes;
    Ok(Report {
        mode: Mode::Load,
        urls: args.urls.clone(),
        clients: args.clients,
        docs,
        changes_per_client: args.changes,
        accepted_changes: accepted,
        elapsed_s: elapsed,
        accepted_changes_per_s: accepted as f64 / elapsed,
        propagation: Latency {
            samples: latencies.len(),
            p50_ms: percentile(&latencies, 50.0),
            p95_ms: percentile(&latencies, 95.0),
            p99_ms: percentile(&latencies, 99.0),
            max_ms: latencies.last().copied().unwrap_or(0.0),
        },
        connections_held: finished,
        errors,
        server_rss_mib: server_rss_mib(args.server_pid),
        server_cpu_s,
        server_cpu_us_per_delivery: server_cpu_s
            .filter(|_| !latencies.is_empty())
            .map(|cpu| cpu * 1e6 / latencies.len() as f64),
    })
}

/// One writer on a document of its own: a change, then its acknowledgement
/// (the server answers with heads that include it only once it is durable),
/// `changes` times. Returns the changes acknowledged.
async fn write_client(args: &Args, index: usize, start: &Barrier) -> anyhow::Result<usize> {
    let mut doc = Automerge::new();
    let mut tx = doc.transaction();
    tx.put(ROOT, "writer", index as i64)?;
    tx.commit();
    let url = &args.urls[index % args.urls.len()];
    let connected =
        Client::connect(args, url, &format!("w{index}"), DocumentId::random(), doc).await;
    // Every task reaches the barrier once, even after an error.
    start.wait().await;
    let mut client = connected?;
    let mut made = 0;
    loop {
        client
            .push_until_acknowledged("server closed the connection")
            .await?;
        if made == args.changes {
            break;
        }
        let mut tx = client.doc.transaction();
        if args.overwrite {
            tx.put(ROOT, "n", made as i64)?;
        } else {
            tx.put(ROOT, format!("n{made}"), made as i64)?;
        }
        tx.commit();
        made += 1;
    }
    let _ = client.socket.close(None).await;
    Ok(made)
}

async fn run_writes(args: &Args) -> anyhow::Result<Report> {
    let barrier = std::sync::Arc::new(Barrier::new(args.clients + 1));
    let args = std::sync::Arc::new(args.clone());
    let mut tasks = Vec::new();
    for i in 0..args.clients {
        let (args, barrier) = (args.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            write_client(&args, i, &barrier).await
        }));
    }
    // Timed from when every writer is connected.
    barrier.wait().await;
    let server_cpu_before = process_cpu_s(args.server_pid);
    let started = Instant::now();
    let (mut accepted, mut finished, mut errors) = (0, 0, Vec::new());
    for task in tasks {
        match task.await {
            Ok(Ok(made)) => {
                finished += 1;
                accepted += made;
            }
            Ok(Err(e)) => errors.push(format!("{e:#}")),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let server_cpu_s = server_cpu_before
        .zip(process_cpu_s(args.server_pid))
        .map(|(before, after)| after - before);
    Ok(Report {
        mode: Mode::Writes,
        urls: args.urls.clone(),
        clients: args.clients,
        docs: args.clients,
        changes_per_client: args.changes,
        accepted_changes: accepted,
        elapsed_s: elapsed,
        accepted_changes_per_s: accepted as f64 / elapsed,
        propagation: Latency::default(),
        connections_held: finished,
        errors,
        server_rss_mib: server_rss_mib(args.server_pid),
        server_cpu_s,
        // Per acknowledged change here: no other client receives it.
        server_cpu_us_per_delivery: server_cpu_s
            .filter(|_| accepted > 0)
            .map(|cpu| cpu * 1e6 / accepted as f64),
    })
}

async fn run_idle(args: &Args) -> anyhow::Result<Report> {
    let before = server_rss_mib(args.server_pid);
    let mut sockets = Vec::with_capacity(args.clients);
    let mut errors = Vec::new();
    let started = Instant::now();
    // Connect in waves of 100 so the accept queue is never the bottleneck.
    for wave in (0..args.clients).collect::<Vec<_>>().chunks(100) {
        let results = futures_util::future::join_all(wave.iter().map(|i| {
            let peer = format!("idle-{i}");
            let url = &args.urls[i % args.urls.len()];
            async move { connect(args, url, &peer).await }
        }))
        .await;
        for r in results {
            match r {
                Ok((s, _)) => sockets.push(s),
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(args.hold_secs)).await;
    let held = sockets.len();
    let rss = server_rss_mib(args.server_pid);
    if let (Some(b), Some(a)) = (before, rss) {
        eprintln!("server RSS {b:.1} MiB before, {a:.1} MiB with {held} idle connections");
    }
    Ok(Report {
        mode: Mode::Idle,
        urls: args.urls.clone(),
        clients: args.clients,
        docs: 0,
        changes_per_client: 0,
        accepted_changes: 0,
        elapsed_s: elapsed,
        accepted_changes_per_s: 0.0,
        propagation: Latency::default(),
        connections_held: held,
        errors,
        server_rss_mib: rss,
        server_cpu_s: None,
        server_cpu_us_per_delivery: None,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The replicas' warnings (a slow check-in answer, a failed compaction)
    // on stderr beside the JSON on stdout; `RUST_LOG` for more.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_thread_names(true)
        .init();
    let args = Args::parse();
    for url in &args.urls {
        let host = url
            .strip_prefix("ws://")
            .or_else(|| url.strip_prefix("wss://"))
            .unwrap_or_default();
        if !(host.starts_with("127.") || host.starts_with("localhost") || host.starts_with("[::1]"))
        {
            bail!(
                "sync-bench only targets loopback servers (ws[s]://127.x.x.x, localhost, [::1]), not {url}"
            );
        }
    }
    let limit = Duration::from_secs(args.timeout_secs);
    let report = match args.mode {
        Mode::Load => serde_json::to_value(
            tokio::time::timeout(limit, run_load(&args))
                .await
                .context("timed out")??,
        )?,
        Mode::Writes => serde_json::to_value(
            tokio::time::timeout(limit, run_writes(&args))
                .await
                .context("timed out")??,
        )?,
        Mode::Idle => serde_json::to_value(
            tokio::time::timeout(limit, run_idle(&args))
                .await
                .context("timed out")??,
        )?,
        Mode::EventDownload => checkin::event_download(&args).await?,
        Mode::OfflineTablets => checkin::offline_tablets(&args).await?,
        Mode::DoorTablet => return door::serve(&args).await,
        Mode::Stadium => stadium::stadium(&args).await?,
        Mode::Soak => soak::soak(&args).await?,
        Mode::ManyEvents => tokio::time::timeout(limit, many_events::many_events(&args))
            .await
            .context("timed out")??,
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
