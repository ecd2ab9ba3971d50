//! The sync client: one websocket to the server, reconnecting with backoff,
//! speaking the same automerge-repo protocol as any stock peer.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use automerge::sync::State;
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use sync_protocol::{DocumentId, Message, PROTOCOL_VERSION, PeerMetadata};
use tokio::sync::{broadcast, watch};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::account::{Account, AccountError, SessionState};
use crate::tls::{self, ServerTrust};
use crate::{ClientCore, DocEvent, SyncProblem};

/// Where and how to sync.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// `ws://host:port/sync`
    pub url: String,
    /// Further servers (nodes sharing one store) tried in turn when the
    /// current one cannot be reached or drops the connection.
    pub fallback_urls: Vec<String>,
    /// A fixed token (an API key), used when `account` is `None`.
    pub token: String,
    /// A signed-in account: its access token (refreshed as needed) opens
    /// each connection; while signed out, syncing waits.
    pub account: Option<Account>,
    pub max_message_bytes: usize,
    /// First reconnect delay; doubles (with jitter) up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Which servers `wss://` trusts (a signed-in account's own trust when
    /// made by [`SyncConfig::with_account`]).
    pub trust: ServerTrust,
}

impl SyncConfig {
    /// Several nodes: the first is preferred, the others are failovers.
    pub fn with_fallbacks(mut self, urls: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.fallback_urls = urls.into_iter().map(Into::into).collect();
        self
    }

    fn all_urls(&self) -> Vec<&str> {
        std::iter::once(self.url.as_str())
            .chain(self.fallback_urls.iter().map(String::as_str))
            .collect()
    }

    /// Syncs as a signed-in user (see [`Account`]).
    pub fn with_account(url: impl Into<String>, account: &Account) -> Self {
        Self {
            account: Some(account.clone()),
            trust: account.trust().clone(),
            ..Self::new(url, "")
        }
    }

    pub fn new(url: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            fallback_urls: Vec::new(),
            token: token.into(),
            account: None,
            max_message_bytes: sync_protocol::DEFAULT_MAX_MESSAGE_BYTES,
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            trust: ServerTrust::default(),
        }
    }

    /// Trusts the servers `trust` names (a venue's CA, a pinned key).
    pub fn with_trust(mut self, trust: ServerTrust) -> Self {
        self.trust = trust;
        self
    }
}

/// A running sync client. Dropping it does not stop it; call [`SyncHandle::stop`].
pub struct SyncHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl SyncHandle {
    /// Closes the connection and ends the task. Local data is unaffected.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

impl ClientCore {
    /// Starts syncing with a server in the background (on the current tokio runtime).
    pub fn start_sync(&self, config: SyncConfig) -> SyncHandle {
        start(self.clone(), config)
    }
}

fn start(core: ClientCore, config: SyncConfig) -> SyncHandle {
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(run(core, config, stop_rx));
    SyncHandle { stop, task }
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("connect: {0}")]
    Connect(String),
    #[error("the server's certificate is not trusted: {0}")]
    UntrustedCertificate(String),
    #[error("server refused the token (HTTP 401: {0})")]
    Unauthorized(String),
    #[error("not signed in: {0}")]
    SignedOut(String),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("server closed the connection")]
    Closed,
    /// The access token that opened this socket is about to expire: the
    /// next connection opens with a fresh one (the server would cut this).
    #[error("access token about to expire; reconnecting with a fresh one")]
    Renew,
    #[error("server error: {0}")]
    Server(String),
    #[error("local store: {0}")]
    Local(#[from] crate::ClientError),
}

impl SessionError {
    /// What the failure means for the people at the door.
    fn problem(&self) -> Option<SyncProblem> {
        Some(match self {
            SessionError::Connect(_) | SessionError::Closed => SyncProblem::Unreachable,
            SessionError::UntrustedCertificate(_) => SyncProblem::UntrustedServer,
            SessionError::Unauthorized(_) | SessionError::SignedOut(_) => SyncProblem::NotSignedIn,
            SessionError::Protocol(_) | SessionError::Server(_) => SyncProblem::ServerError,
            SessionError::Local(_) => SyncProblem::LocalStorage,
            SessionError::Renew => return None,
        })
    }
}

#[tracing::instrument(name = "sync", skip_all, fields(url = %config.url))]
async fn run(core: ClientCore, config: SyncConfig, mut stop: watch::Receiver<bool>) {
    let mut backoff = config.min_backoff;
    let urls = config.all_urls();
    for url in &urls {
        tls::warn_if_cleartext(url);
    }
    let tls_config = match config.trust.client_config() {
        Ok(tls_config) => std::sync::Arc::new(tls_config),
        Err(error) => {
            // Nothing can connect until the settings change: say so and wait.
            tracing::error!(%error, "sync cannot start");
            core.set_status(|s| {
                s.last_error = Some(error.to_string());
                s.last_error_at = Some(SystemTime::now());
                s.problem = Some(SyncProblem::Settings);
            });
            let _ = stop.wait_for(|s| *s).await;
            return;
        }
    };
    let mut current = 0;
    loop {
        if *stop.borrow() {
            break;
        }
        let url = urls[current];
        let outcome = session(&core, &config, &tls_config, url, &mut stop, &mut backoff).await;
        // A planned renewal reconnects at once: the status stays connected
        // (the next session sets it again, or the failure below clears it).
        if !matches!(outcome, Err(SessionError::Renew)) {
            core.set_status(|s| s.connected = false);
        }
        match outcome {
            Ok(()) => break, // stopped
            Err(SessionError::Unauthorized(code)) if config.account.is_some() => {
                let account = config.account.as_ref().expect("checked");
                tracing::info!(%code, "sync refused the session's token");
                if let Err(error) = account.unauthorized(&code).await {
                    tracing::info!(%error, "could not renew the session");
                }
                core.set_status(|s| {
                    s.last_error = Some(format!("server refused the token: {code}"));
                    s.last_error_at = Some(SystemTime::now());
                    s.problem = Some(SyncProblem::NotSignedIn);
                });
            }
            Err(SessionError::Renew) => {
                tracing::debug!("renewing the connection with a fresh access token");
                continue;
            }
            Err(SessionError::SignedOut(reason)) => {
                // Nothing to do until someone signs in; local writes keep
                // landing in the store meanwhile.
                core.set_status(|s| {
                    s.last_error = Some(format!("not signed in: {reason}"));
                    s.last_error_at = Some(SystemTime::now());
                    s.problem = Some(SyncProblem::NotSignedIn);
                    // It waits for a sign-in, not for a timer.
                    s.next_retry_at = None;
                });
                let account = config.account.as_ref().expect("only accounts sign out");
                let mut state = account.watch_state();
                tokio::select! {
                    _ = state.wait_for(|s| matches!(s, SessionState::SignedIn(_))) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
                backoff = config.min_backoff;
                continue;
            }
            Err(error) => {
                tracing::info!(%error, url, "sync connection ended");
                // Next time, try the next node; a lone server is simply retried.
                current = (current + 1) % urls.len();
                let text = error.to_string();
                let problem = error.problem();
                core.set_status(|s| {
                    s.last_error = Some(text);
                    s.last_error_at = Some(SystemTime::now());
                    s.problem = problem;
                });
            }
        }
        let jitter = rand::rng().random_range(0.8..1.2);
        let delay = backoff.mul_f64(jitter);
        backoff = (backoff * 2).min(config.max_backoff);
        core.set_status(|s| s.next_retry_at = Some(SystemTime::now() + delay));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
}

/// One connection, from connect to close. `Ok` only when asked to stop.
async fn session(
    core: &ClientCore,
    config: &SyncConfig,
    tls_config: &std::sync::Arc<rustls::ClientConfig>,
    url: &str,
    stop: &mut watch::Receiver<bool>,
    backoff: &mut Duration,
) -> Result<(), SessionError> {
    let mut request = url
        .into_client_request()
        .map_err(|e| SessionError::Connect(e.to_string()))?;
    let (token, token_expires_ms) = match &config.account {
        Some(account) => match account.access_token_until().await {
            Ok((token, expires_ms)) => (token, Some(expires_ms)),
            Err(AccountError::Network(error)) => return Err(SessionError::Connect(error)),
            Err(AccountError::UntrustedCertificate(why)) => {
                return Err(SessionError::UntrustedCertificate(why));
            }
            Err(other) => return Err(SessionError::SignedOut(other.to_string())),
        },
        None => (config.token.clone(), None),
    };
    let bearer = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|e| SessionError::Connect(format!("token is not a valid header value: {e}")))?;
    request.headers_mut().insert("authorization", bearer);
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(config.max_message_bytes))
        .max_frame_size(Some(config.max_message_bytes));
    // `ws://` stays plain; `wss://` goes through our rustls configuration.
    let connector = tokio_tungstenite::Connector::Rustls(tls_config.clone());
    let (socket, _) = tokio_tungstenite::connect_async_tls_with_config(
        request,
        Some(ws_config),
        true,
        Some(connector),
    )
    .await
    .map_err(|e| match e {
        tokio_tungstenite::tungstenite::Error::Http(resp) if resp.status() == 401 => {
            // The server says why in a JSON body: `token_expired`, `device_revoked`, ...
            let code = resp
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "invalid".into());
            SessionError::Unauthorized(code)
        }
        other => match tls::untrusted_reason(&other) {
            Some(why) => SessionError::UntrustedCertificate(why),
            None => SessionError::Connect(other.to_string()),
        },
    })?;
    let (mut sink, mut stream) = socket.split();

    // Scans answered while offline go into their documents first, so the
    // first exchange carries them (and a refusal of them is heard now).
    if let Err(error) = core.flush_journal() {
        tracing::warn!(%error, "journaled scans not yet written; sync goes on");
    }
    // Subscribe before listing documents so no local change slips between.
    let mut events = core.subscribe();
    let peer_id = format!("client-{}", uuid::Uuid::new_v4());
    let join = Message::Join {
        sender_id: peer_id.clone(),
        supported_protocol_versions: vec![PROTOCOL_VERSION.into()],
        peer_metadata: Some(PeerMetadata {
            storage_id: None,
            is_ephemeral: false,
            // Refused changes are reported to us (and set aside) instead of
            // the server closing the connection.
            extensions: vec![sync_protocol::EXT_CHANGE_REJECTED.into()],
        }),
    };
    sink.send(WsMessage::Binary(join.encode().into()))
        .await
        .map_err(|e| SessionError::Connect(e.to_string()))?;
    let rejection_notices;
    let server_id = match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
        Ok(Some(Ok(WsMessage::Binary(bytes)))) => match Message::decode(&bytes) {
            Ok(Message::Peer {
                sender_id,
                peer_metadata,
                ..
            }) => {
                rejection_notices = peer_metadata.is_some_and(|m| {
                    m.extensions
                        .iter()
                        .any(|e| e == sync_protocol::EXT_CHANGE_REJECTED)
                });
                sender_id
            }
            Ok(Message::Error { message }) => return Err(SessionError::Server(message)),
            Ok(other) => {
                return Err(SessionError::Protocol(format!(
                    "expected `peer`, got `{}`",
                    other.type_name()
                )));
            }
            Err(e) => return Err(SessionError::Protocol(e.to_string())),
        },
        Ok(_) => return Err(SessionError::Closed),
        Err(_) => return Err(SessionError::Protocol("no `peer` reply within 10 s".into())),
    };
    tracing::info!(%server_id, url, "connected");
    *backoff = config.min_backoff;
    core.set_status(|s| {
        s.connected = true;
        s.next_retry_at = None;
    });

    let mut peer = Peer {
        core,
        peer_id,
        server_id,
        states: HashMap::new(),
        outbox: Vec::new(),
        rejection_notices,
        pushed: std::collections::HashSet::new(),
    };
    for (id, has_content, wanted) in core.sync_targets() {
        if has_content {
            peer.offer(id, false);
        } else if wanted {
            peer.offer(id, true);
        }
    }
    // While connected, keep the session's tokens fresh in the background
    // (an open socket needs none, but the next connection and the REST API do).
    let mut keep_fresh = tokio::time::interval(Duration::from_secs(30));
    keep_fresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Presence beacons: now, every few seconds, and whenever the intent changes.
    let mut beacon_every = tokio::time::interval(Duration::from_millis(
        event_model::presence::BEACON_EVERY_MS as u64,
    ));
    beacon_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut intent = core.presence_intent.subscribe();
    let session_id = uuid::Uuid::new_v4().to_string();
    let mut beacons_sent = 0u64;
    let renew = renew_before(token_expires_ms);
    tokio::pin!(renew);
    loop {
        for message in peer.outbox.drain(..) {
            tracing::debug!(kind = message.type_name(), doc = ?message.document_id(), "message out");
            sink.send(WsMessage::Binary(message.encode().into()))
                .await
                .map_err(|_| SessionError::Closed)?;
        }
        tokio::select! {
            frame = stream.next() => {
                let bytes = match frame {
                    Some(Ok(WsMessage::Binary(bytes))) => bytes,
                    Some(Ok(WsMessage::Close(_))) | None => return Err(SessionError::Closed),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(SessionError::Protocol(e.to_string())),
                };
                let message = Message::decode_limited(&bytes, config.max_message_bytes)
                    .map_err(|e| SessionError::Protocol(e.to_string()))?;
                peer.handle(message)?;
            }
            event = events.recv() => match event {
                Ok(DocEvent::Changed { document, origin: crate::ChangeOrigin::Local, .. }) => peer.offer(document, false),
                Ok(DocEvent::Wanted { document }) => peer.offer(document, true),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Missed some notices: offer everything again (cheap when in sync).
                    for (id, has_content, wanted) in core.sync_targets() {
                        if has_content || wanted {
                            peer.offer(id, !has_content);
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
            _ = beacon_every.tick() => {
                peer.send_beacon(&session_id, &mut beacons_sent)?;
            }
            Ok(()) = intent.changed() => {
                peer.send_beacon(&session_id, &mut beacons_sent)?;
            }
            _ = keep_fresh.tick(), if config.account.is_some() => {
                if let Some(account) = &config.account
                    && let Err(error) = account.access_token().await
                {
                    tracing::info!(%error, "background token refresh failed");
                }
            }
            () = &mut renew => {
                // Between messages, so nothing is half applied; everything
                // local is durable, and the next session resumes from it.
                let _ = sink.send(WsMessage::Close(None)).await;
                return Err(SessionError::Renew);
            }
            () = stopped(stop) => {
                let _ = sink.send(WsMessage::Close(None)).await;
                return Ok(());
            }
        }
    }
}

/// Resolves a little before a token expiring at `expires_ms` (unix ms)
/// does: a fifth of what is left, at most a minute, so even short-lived
/// tokens are renewed before the server cuts the socket. Never without one,
/// and never for a fresh token that already looks spent: this device's clock
/// is then ahead of the server's, and renewing at once would reconnect in a
/// tight loop; the server's cut at the real expiry (answered with a refresh
/// and the usual backoff) takes over.
async fn renew_before(expires_ms: Option<i64>) {
    /// Less than this left on a token just obtained means a skewed clock.
    const TOO_SHORT_MS: i64 = 2_000;
    let left = expires_ms.map_or(0, |at| at - crate::time::now_ms());
    if left < TOO_SHORT_MS {
        return std::future::pending().await;
    }
    let early = (left / 5).min(60_000);
    tokio::time::sleep(Duration::from_millis((left - early) as u64)).await;
}

/// Resolves once a stop is requested (holds no borrow across awaits).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Per-connection protocol state: one automerge sync state per document.
struct Peer<'a> {
    core: &'a ClientCore,
    peer_id: String,
    server_id: String,
    states: HashMap<DocumentId, State>,
    outbox: Vec<Message>,
    /// The server reports refused changes instead of closing (extension).
    rejection_notices: bool,
    /// Documents whose unconfirmed changes were pushed after a
    /// `doc-unavailable`, this connection.
    pushed: std::collections::HashSet<DocumentId>,
}

impl Peer<'_> {
    /// Queues this device's presence beacon, if it announces one on a
    /// document this connection syncs.
    fn send_beacon(&mut self, session_id: &str, sent: &mut u64) -> Result<(), SessionError> {
        let Some((document_id, data)) = self.core.beacon()? else {
            return Ok(());
        };
        if !self.states.contains_key(&document_id) {
            return Ok(());
        }
        *sent += 1;
        self.outbox.push(Message::Ephemeral {
            sender_id: self.peer_id.clone(),
            target_id: self.server_id.clone(),
            count: *sent,
            session_id: session_id.to_owned(),
            document_id,
            data,
        });
        Ok(())
    }

    /// Sends whatever the sync protocol wants to say about `id` now.
    fn offer(&mut self, id: DocumentId, as_request: bool) {
        let state = self.states.entry(id).or_default();
        if let Some(data) = self.core.generate_sync_message(id, state) {
            let message = if as_request {
                Message::Request {
                    sender_id: self.peer_id.clone(),
                    target_id: self.server_id.clone(),
                    document_id: id,
                    data,
                }
            } else {
                Message::Sync {
                    sender_id: self.peer_id.clone(),
                    target_id: self.server_id.clone(),
                    document_id: id,
                    data,
                }
            };
            self.outbox.push(message);
        }
    }

    fn handle(&mut self, message: Message) -> Result<(), SessionError> {
        match message {
            Message::Sync {
                document_id, data, ..
            }
            | Message::Request {
                document_id, data, ..
            } => {
                if !self.core.lock().docs.contains_key(&document_id) {
                    // We never asked for it; the server should not push it.
                    return Ok(());
                }
                let state = self.states.entry(document_id).or_default();
                self.core.receive_sync_message(document_id, state, &data)?;
                self.offer(document_id, false);
                Ok(())
            }
            Message::DocUnavailable { document_id, .. } => {
                self.core.mark_unavailable(document_id);
                // Journaled scans count among the changes to push.
                if let Err(error) = self.core.flush_journal_of(document_id) {
                    tracing::warn!(%error, doc = %document_id, "journaled scans not yet written");
                }
                // We hold changes the server never confirmed, and it will not
                // show us the document (our rights may have gone while we were
                // offline): push them once, to hear whether they are refused
                // and set them aside, rather than keep them pending forever.
                if self.rejection_notices
                    && self.pushed.insert(document_id)
                    && let Some(data) = self.core.unconfirmed_changes_message(document_id)
                {
                    self.outbox.push(Message::Sync {
                        sender_id: self.peer_id.clone(),
                        target_id: self.server_id.clone(),
                        document_id,
                        data,
                    });
                }
                Ok(())
            }
            Message::ChangeRejected {
                document_id,
                changes,
                reason,
                ..
            } => {
                self.core.quarantine(document_id, &changes, &reason)?;
                // Start this document's sync over from what we now hold.
                self.states.remove(&document_id);
                self.offer(document_id, false);
                Ok(())
            }
            Message::Error { message } if message == sync_protocol::ACCESS_TOKEN_EXPIRED => {
                Err(SessionError::Unauthorized("token_expired".into()))
            }
            Message::Error { message } => Err(SessionError::Server(message)),
            Message::Ephemeral {
                document_id, data, ..
            } => {
                self.core.heard_presence(document_id, &data);
                Ok(())
            }
            Message::RemoteHeadsChanged { .. }
            | Message::RemoteSubscriptionChange { .. }
            | Message::Leave { .. } => Ok(()),
            Message::Join { .. } | Message::Peer { .. } => Err(SessionError::Protocol(format!(
                "unexpected `{}` after the handshake",
                message.type_name()
            ))),
        }
    }
}

#[cfg(test)]
mod renewal_tests {
    use std::time::{Duration, Instant};

    use super::renew_before;

    #[tokio::test]
    async fn renewal_comes_early_and_never_for_a_token_that_looks_spent() {
        // 2.5 s left: renewed a fifth early, after about 2 s.
        let started = Instant::now();
        renew_before(Some(crate::time::now_ms() + 2_500)).await;
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(1_900) && waited < Duration::from_millis(2_400),
            "{waited:?}"
        );
        // A fresh token with under 2 s left (a clock ahead of the server's),
        // and no token at all: no renewal, so no reconnect loop.
        let wait = Duration::from_millis(300);
        for expires in [
            Some(crate::time::now_ms() + 1_000),
            Some(crate::time::now_ms() - 60_000),
            None,
        ] {
            assert!(
                tokio::time::timeout(wait, renew_before(expires))
                    .await
                    .is_err(),
                "{expires:?}"
            );
        }
    }
}
