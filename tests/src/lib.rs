//! Helpers for the cross-crate tests: real servers (in-process or as a child
//! process) on loopback, admin tokens, and waiting for conditions.

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod accounts;
pub mod tls;

use sync_server::auth::{self, Role};
use sync_server::store::{SqliteStore, Store};
use sync_server::{Config, RunningServer};

/// Creates an API token directly in the store of `data_dir`.
pub async fn create_token(data_dir: &Path, role: Role) -> String {
    let store = Store::new(SqliteStore::open(data_dir, false).expect("open store"));
    let (token, hash) = auth::new_token();
    store
        .accounts
        .create_api_key("test", role, &hash)
        .await
        .expect("create key");
    store.node.close().await.expect("close store");
    token
}

/// Creates a user directly in a store; returns the user id.
pub async fn create_user(store: &Store, email: &str, role: Role, password: &str) -> String {
    let hash = sync_server::identity::password::hash_password(password).expect("hash password");
    store
        .accounts
        .create_user(email, role, &hash)
        .await
        .expect("create user")
        .id
}

/// A plain reqwest client for the tests' own API calls, trusting `ca_pem`
/// when given. reqwest is built without a TLS provider of its own (the
/// workspace has one TLS stack: rustls with aws-lc-rs), so this installs
/// that provider as the process default first.
pub fn http_client(ca_pem: Option<&str>) -> reqwest::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut builder = reqwest::Client::builder();
    if let Some(pem) = ca_pem {
        builder = builder.add_root_certificate(
            reqwest::Certificate::from_pem(pem.as_bytes()).expect("a CA in PEM"),
        );
    }
    builder.build().expect("an HTTP client")
}

/// A secrets key file in `dir`, made once: what the PostgreSQL nodes of a
/// test share (they refuse to start without one).
pub fn secrets_key_file(dir: &Path) -> PathBuf {
    let path = dir.join("shared-secrets.key");
    if !path.exists() {
        std::fs::create_dir_all(dir).expect("key dir");
        sync_server::secrets::write_key_file(&path, &sync_server::secrets::new_key_text())
            .expect("write the key");
    }
    path
}

/// A TOML config file in `dir` naming the key of [`secrets_key_file`], for
/// server processes (`--config FILE`).
pub fn secrets_config_file(dir: &Path) -> PathBuf {
    let key = secrets_key_file(dir);
    let path = dir.join("secrets.toml");
    std::fs::write(
        &path,
        format!("secrets_key_file = {:?}\n", key.display().to_string()),
    )
    .expect("write the config");
    path
}

/// Test defaults: an ephemeral port on loopback.
pub fn test_config(data_dir: &Path) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_path_buf(),
        ..Config::default()
    }
}

/// A server running inside the test process.
pub struct InProcessServer {
    pub server: RunningServer,
    pub url: String,
    pub store: Store,
}

impl InProcessServer {
    pub async fn start(config: &Config) -> Self {
        let store = Store::new(SqliteStore::open(&config.data_dir, false).expect("open store"));
        let server = sync_server::start_with_store(config, store.clone(), "test-storage".into())
            .await
            .expect("start server");
        let url = server.sync_url();
        Self { server, url, store }
    }

    /// Starts a server again on `addr`, where a stopped one listened (its
    /// clients reconnect there). Tests run in parallel and the port came
    /// from the ephemeral range, so until the kernel hands it back out
    /// another test's outgoing connection may hold it as its local port:
    /// binding is retried for a few seconds while the address is in use.
    pub async fn restart_on(config: &Config, addr: std::net::SocketAddr) -> Self {
        let mut config = config.clone();
        config.listen = addr;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let store = Store::new(SqliteStore::open(&config.data_dir, false).expect("open store"));
            match sync_server::start_with_store(&config, store.clone(), "test-storage".into()).await
            {
                Ok(server) => {
                    let url = server.sync_url();
                    return Self { server, url, store };
                }
                Err(sync_server::ServeError::Bind { source, .. })
                    if source.kind() == std::io::ErrorKind::AddrInUse
                        && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("restarting the server on {addr}: {e}"),
            }
        }
    }

    pub async fn stop(self) {
        self.server.shutdown().await.expect("clean shutdown");
    }
}

/// Waits until `check` returns true, polling; panics with `what` after `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A task that ends as soon as `core`'s sync status shows it offline, and
/// never otherwise: still running when checked means it stayed connected.
pub fn ends_when_offline(core: &client_core::ClientCore) -> tokio::task::JoinHandle<()> {
    let mut status = core.watch_sync_status();
    tokio::spawn(async move {
        loop {
            if !status.borrow_and_update().connected {
                return;
            }
            if status.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    })
}

/// The sum of a metric's samples in this process's registry (servers
/// started in-process), over the lines that contain every one of `labels`.
pub fn metric_sum(name: &str, labels: &[&str]) -> f64 {
    sync_server::metrics::install()
        .render()
        .lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Path of a binary built from this workspace (`cargo build --bins` first).
pub fn workspace_binary(name: &str) -> PathBuf {
    if let Ok(path) = std::env::var(format!("{}_BIN", name.to_uppercase().replace('-', "_"))) {
        return PathBuf::from(path);
    }
    // target/<profile>/deps/<test-binary> -> target/<profile>/<name>
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// A `sync-server` child process.
pub struct ServerProcess {
    pub child: Child,
    pub url: String,
    pub addr: String,
}

impl ServerProcess {
    /// Starts `sync-server serve` on an ephemeral loopback port and waits
    /// until it logs the address it listens on.
    pub fn start(data_dir: &Path) -> Self {
        Self::start_on(data_dir, "127.0.0.1:0")
    }

    /// Like [`ServerProcess::start`], on a given address (to restart in place).
    pub fn start_on(data_dir: &Path, listen: &str) -> Self {
        Self::start_with(data_dir, listen, &[])
    }

    /// With extra global options, e.g. `["--database-url", url]`.
    pub fn start_with(data_dir: &Path, listen: &str, options: &[&str]) -> Self {
        Self::start_serving(data_dir, listen, options, &[])
    }

    /// With global options and options of `serve` (`--tls-cert FILE ...`).
    pub fn start_serving(
        data_dir: &Path,
        listen: &str,
        options: &[&str],
        serve_options: &[&std::ffi::OsStr],
    ) -> Self {
        let mut child = Command::new(workspace_binary("sync-server"))
            .args(["--data-dir"])
            .arg(data_dir)
            .args(options)
            .args(["serve", "--listen", listen])
            .args(serve_options)
            .env("RUST_LOG", "info,automerge=warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sync-server");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let (addr, scheme) = loop {
            let line = lines
                .next()
                .expect("sync-server exited before listening")
                .expect("read stderr");
            if let Some(rest) = line.split("addr=").nth(1)
                && line.contains("listening")
            {
                let scheme = if line.contains("tls=true") {
                    "wss"
                } else {
                    "ws"
                };
                break (rest.split_whitespace().next().unwrap().to_string(), scheme);
            }
        };
        // Keep draining stderr so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self {
            url: format!("{scheme}://{addr}/sync"),
            addr,
            child,
        }
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        self.child.wait().expect("wait")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Logs to the test's output when `RUST_LOG` is set.
pub fn init_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber_init();
    }
}

fn tracing_subscriber_init() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init()
}

/// A string field of a document's root, whether stored as a scalar string
/// (Rust peers) or as a text object (JavaScript peers store strings as text).
pub fn root_string(doc: &automerge::Automerge, key: &str) -> Option<String> {
    use automerge::{ObjType, ROOT, ReadDoc, Value};
    match doc.get(ROOT, key).ok().flatten()? {
        (Value::Object(ObjType::Text), id) => doc.text(&id).ok(),
        (value, _) => value.into_string().ok(),
    }
}

/// A bare protocol peer over a websocket, for tests that need to send exactly
/// what they want (or what no honest client would).
pub mod raw {
    use std::time::Duration;

    use futures_util::{SinkExt, StreamExt};
    use sync_protocol::Message;
    use tokio::net::TcpStream;
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

    pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;
    const LIMIT: Duration = Duration::from_secs(20);

    pub async fn connect(url: &str, token: &str) -> Socket {
        let mut request = url.into_client_request().unwrap();
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        tokio_tungstenite::connect_async(request).await.unwrap().0
    }

    pub async fn send(socket: &mut Socket, message: &Message) {
        socket
            .send(WsMessage::Binary(message.encode().into()))
            .await
            .unwrap();
    }

    /// A `join` from the peer `raw-peer`.
    pub fn join(versions: &[&str]) -> Message {
        join_as("raw-peer", versions)
    }

    pub fn join_as(peer_id: &str, versions: &[&str]) -> Message {
        Message::Join {
            sender_id: peer_id.into(),
            supported_protocol_versions: versions.iter().map(|v| v.to_string()).collect(),
            peer_metadata: None,
        }
    }

    /// Connected and past the handshake, as `raw-peer`.
    pub async fn joined(url: &str, token: &str) -> Socket {
        joined_as(url, token, "raw-peer").await.0
    }

    /// Connected and past the handshake; also returns the server's peer id.
    pub async fn joined_as(url: &str, token: &str, peer_id: &str) -> (Socket, String) {
        let mut socket = connect(url, token).await;
        send(&mut socket, &join_as(peer_id, &["1"])).await;
        match next_message(&mut socket).await {
            Some(Message::Peer {
                selected_protocol_version,
                sender_id,
                target_id,
                ..
            }) => {
                assert_eq!(selected_protocol_version, "1");
                assert_eq!(target_id, peer_id);
                (socket, sender_id)
            }
            other => panic!("expected peer, got {other:?}"),
        }
    }

    /// The next protocol message, or `None` once the server closed.
    pub async fn next_message(socket: &mut Socket) -> Option<Message> {
        loop {
            match tokio::time::timeout(LIMIT, socket.next())
                .await
                .expect("server answers in time")
            {
                Some(Ok(WsMessage::Binary(bytes))) => {
                    return Some(Message::decode(&bytes).unwrap());
                }
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
        }
    }
}

/// A throwaway PostgreSQL cluster on loopback, from the machine's Debian
/// packages (`postgresql`), stopped when dropped. Runs the server binaries as
/// the `postgres` user when the tests run as root (initdb refuses root).
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl PgCluster {
    pub fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server packages are installed (tests/run.sh installs `postgresql`)")
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").exists())
            .max()
            .expect("an initdb under /usr/lib/postgresql/*/bin");
        let dir = tempfile::tempdir().expect("tempdir");
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout == b"0\n")
            .unwrap_or(false);
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown the cluster directory");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = Self {
            dir,
            bin,
            port,
            as_postgres,
        };
        let data = cluster.data_dir();
        cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
            cluster.dir.path().display()
        );
        let log = cluster.dir.path().join("server.log").display().to_string();
        cluster.run(
            "pg_ctl",
            &["-D", &data, "-o", &options, "-l", &log, "-w", "start"],
        );
        cluster
    }

    fn data_dir(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let program = self.bin.join(tool);
        let output = if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&program)
                .args(args)
                .output()
        } else {
            Command::new(&program).args(args).output()
        }
        .unwrap_or_else(|e| panic!("running {tool}: {e}"));
        assert!(
            output.status.success(),
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// A cluster and the URL of a fresh database in it, from async code
    /// (the blocking steps run on the blocking pool).
    pub async fn start_with_database() -> (Self, String) {
        tokio::task::spawn_blocking(|| {
            let cluster = Self::start();
            let url = cluster.create_database();
            (cluster, url)
        })
        .await
        .expect("starting PostgreSQL")
    }

    /// A new, empty database in this cluster; returns its URL (blocking).
    pub fn create_database(&self) -> String {
        let name = format!("test_{}", uuid_like());
        let mut admin = postgres::Client::connect(&self.url("postgres"), postgres::NoTls)
            .expect("connect to the cluster");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create database");
        self.url(&name)
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.data_dir();
        let program = self.bin.join("pg_ctl");
        let args = ["-D", data.as_str(), "-m", "immediate", "stop"];
        let _ = if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&program)
                .args(args)
                .output()
        } else {
            Command::new(&program).args(args).output()
        };
    }
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{:x}", nanos, std::process::id())
}

/// Runs the `sync-server` binary on a data directory and waits for it.
pub fn server_command(data_dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(workspace_binary("sync-server"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run sync-server")
}

/// `count` attendees as CSV: tickets `T-0000`..., named `Guest N`.
pub fn attendees_csv(count: usize) -> String {
    let mut csv = String::from("ticket_code,name,email\n");
    for i in 0..count {
        csv.push_str(&format!("T-{i:04},Guest {i},guest{i}@example.org\n"));
    }
    csv
}

/// Makes an event in `core` (an admin's replica): check-in lists `(id, name)`
/// with the default rules and `attendees` from [`attendees_csv`]. Not yet
/// registered or synced.
pub fn seed_event(
    core: &client_core::ClientCore,
    event_id: &str,
    name: &str,
    lists: &[(&str, &str)],
    attendees: usize,
) -> client_core::DocumentId {
    use client_core::event_model::document::CheckinList;
    use client_core::event_model::rules::ListRules;
    let event = core
        .create_event(&client_core::event_model::EventInfo::new(event_id, name))
        .expect("create event");
    for (id, list_name) in lists {
        core.put_checkin_list(
            event,
            &CheckinList {
                id: (*id).into(),
                name: (*list_name).into(),
                rules: ListRules::default(),
            },
        )
        .expect("add list");
    }
    let report = core
        .import_attendees_csv(event, attendees_csv(attendees).as_bytes(), |_| true)
        .expect("import")
        .expect("not aborted");
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    event
}

/// Adds the list `later` to `event`: a door that opens six hours from now
/// (a time rule the tablet tests run into: `NotYetValid`). Returns when
/// it opens (Unix ms).
pub fn add_later_door(core: &client_core::ClientCore, event: client_core::DocumentId) -> i64 {
    use client_core::event_model::document::CheckinList;
    use client_core::event_model::rules::{EntryWindow, ListRules};
    let opens_at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
        + 6 * 3_600_000;
    core.put_checkin_list(
        event,
        &CheckinList {
            id: "later".into(),
            name: "Evening door".into(),
            rules: ListRules {
                window: EntryWindow {
                    valid_from_ms: Some(opens_at_ms),
                    ..EntryWindow::default()
                },
                ..ListRules::default()
            },
        },
    )
    .expect("add the later door");
    opens_at_ms
}

/// Cases a convergence property test runs: `default` in the suite, or
/// `CONVERGENCE_CASES` for a long search.
pub fn convergence_cases(default: u32) -> u32 {
    std::env::var("CONVERGENCE_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// Runs `case` on a fresh two-worker runtime (a property test's case, which
/// proptest calls synchronously).
pub fn block_on_two_workers<F: std::future::Future>(case: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(case)
}

/// A plain HTTP/1.1 GET on loopback: the status and the body.
pub async fn http_get(addr: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
