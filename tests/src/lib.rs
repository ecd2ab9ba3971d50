//! Helpers for the cross-crate tests: real servers (in-process or as a child
//! process) on loopback, admin tokens, and waiting for conditions.

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sync_server::auth::{self, Role};
use sync_server::store::{SqliteStore, Store};
use sync_server::{Config, RunningServer};

/// Creates an API token directly in the store of `data_dir`.
pub async fn create_token(data_dir: &Path, role: Role) -> String {
    let store = SqliteStore::open(data_dir, false).expect("open store");
    let (token, hash) = auth::new_token();
    store.create_api_key("test", role, &hash).await.expect("create key");
    store.close().await.expect("close store");
    token
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
    pub store: Arc<SqliteStore>,
}

impl InProcessServer {
    pub async fn start(config: &Config) -> Self {
        let store = Arc::new(SqliteStore::open(&config.data_dir, false).expect("open store"));
        let server = sync_server::start_with_store(config, store.clone(), "test-storage".into())
            .await
            .expect("start server");
        let url = server.sync_url();
        Self { server, url, store }
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
        let mut child = Command::new(workspace_binary("sync-server"))
            .args(["--data-dir"])
            .arg(data_dir)
            .args(["serve", "--listen", listen])
            .env("RUST_LOG", "info,automerge=warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sync-server");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("sync-server exited before listening")
                .expect("read stderr");
            if let Some(rest) = line.split("addr=").nth(1)
                && line.contains("listening")
            {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        // Keep draining stderr so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self {
            url: format!("ws://{addr}/sync"),
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
        Command::new("kill").args(["-TERM", &pid]).status().expect("kill -TERM");
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
    use automerge::{ObjType, ReadDoc, Value, ROOT};
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
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message as WsMessage;
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
        socket.send(WsMessage::Binary(message.encode().into())).await.unwrap();
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
            match tokio::time::timeout(LIMIT, socket.next()).await.expect("server answers in time") {
                Some(Ok(WsMessage::Binary(bytes))) => return Some(Message::decode(&bytes).unwrap()),
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
        }
    }
}
