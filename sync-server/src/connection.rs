//! One websocket connection: the join/peer handshake, then routing each
//! message to its document, with a writer task draining the outbound queue.
//! Anything malformed gets an `error` message and the connection is closed;
//! other connections never notice.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket};
use futures_util::{SinkExt, StreamExt};
use sync_protocol::{DocumentId, EXT_CHANGE_REJECTED, Message, PROTOCOL_VERSION, PeerMetadata};
use tokio::sync::{Notify, mpsc, watch};

use crate::audit::NewAuditEntry;
use crate::auth::Principal;
use crate::live::LiveConnections;
use crate::metrics as m;
use crate::policy;
use crate::registry::{DocCommand, Outbound, PeerHandle, Registry, SyncKind};

static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// How long a new connection has to send `join`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages queued for one connection before it counts as not keeping up.
const OUTBOUND_QUEUE: usize = 4096;

/// What a connection needs from the server.
#[derive(Clone)]
pub struct ConnectionContext {
    pub registry: Registry,
    pub server_peer_id: String,
    pub storage_id: String,
    pub max_message_bytes: usize,
    pub shutdown: watch::Receiver<bool>,
    /// Sustained messages per second per connection, and the burst allowed.
    pub message_rate: (u32, u32),
    /// Open connections by who holds them (for revocation).
    pub live: LiveConnections,
}

type MessageLimiter = governor::DefaultDirectRateLimiter;

fn message_limiter((per_second, burst): (u32, u32)) -> Option<MessageLimiter> {
    let rate = std::num::NonZeroU32::new(per_second)?;
    let burst = std::num::NonZeroU32::new(burst.max(per_second)).unwrap_or(rate);
    Some(governor::RateLimiter::direct(
        governor::Quota::per_second(rate).allow_burst(burst),
    ))
}

/// Why a connection ends.
enum End {
    /// The peer went away or we are shutting down: no error to report.
    Quiet,
    /// A protocol error: tell the peer, then close.
    Error(String),
}

#[tracing::instrument(name = "connection", skip_all, fields(conn = tracing::field::Empty, principal = %principal.name, peer = tracing::field::Empty))]
pub async fn serve(
    socket: WebSocket,
    ctx: ConnectionContext,
    principal: Principal,
    address: std::net::SocketAddr,
) {
    let key = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
    // Listed while open, so revoking the session, device or key closes it.
    let (_listed, mut revoked) = ctx.live.register(key, &principal);
    tracing::Span::current().record("conn", key);
    metrics::gauge!(m::CONNECTIONS).increment(1.0);
    metrics::counter!(m::CONNECTIONS_TOTAL).increment(1);

    let (sink, mut stream) = socket.split();
    let (outbound_tx, outbound_rx) = mpsc::channel(OUTBOUND_QUEUE);
    let writer = tokio::spawn(write_loop(sink, outbound_rx));
    let kill = Arc::new(Notify::new());

    let mut session = Session {
        key,
        ctx: ctx.clone(),
        actor: principal.audit_name(),
        address: address.ip().to_string(),
        principal,
        peer_id: None,
        outbound: outbound_tx.clone(),
        kill: kill.clone(),
        documents: HashMap::new(),
        rejection_notices: false,
    };
    let mut shutdown = ctx.shutdown.clone();
    let limiter = message_limiter(ctx.message_rate);
    // A socket lives no longer than the access token that opened it.
    let token_expired = token_deadline(session.principal.expires_ms());
    tokio::pin!(token_expired);
    let end = loop {
        let frame = tokio::select! {
            frame = next_frame(&mut stream, session.peer_id.is_none()) => frame,
            _ = &mut token_expired => {
                metrics::counter!(m::CONNECTIONS_CUT, "reason" => "token_expired").increment(1);
                break End::Error(sync_protocol::ACCESS_TOKEN_EXPIRED.into());
            }
            _ = kill.notified() => break End::Error("connection is not keeping up with its documents".into()),
            reason = revoked.wait_for(Option::is_some) => {
                let reason = reason.map(|r| r.clone().unwrap_or_default()).unwrap_or_default();
                metrics::counter!(m::CONNECTIONS_CUT, "reason" => "revoked").increment(1);
                break End::Error(format!("access revoked: {reason}"));
            }
            _ = shutdown.wait_for(|stop| *stop) => break End::Quiet,
        };
        let bytes = match frame {
            Frame::Binary(bytes) => bytes,
            Frame::Ignored => continue,
            Frame::Closed => break End::Quiet,
            Frame::Bad(reason) => break End::Error(reason),
        };
        metrics::counter!(m::MESSAGES_IN).increment(1);
        metrics::counter!(m::BYTES_IN).increment(bytes.len() as u64);
        if let Some(limiter) = &limiter
            && limiter.check().is_err()
        {
            // Over the rate: stop reading this socket until it may go on.
            // TCP pushes back on the peer; nothing is dropped.
            metrics::counter!(m::MESSAGES_THROTTLED).increment(1);
            limiter.until_ready().await;
        }
        let message = match Message::decode_limited(&bytes, ctx.max_message_bytes) {
            Ok(message) => message,
            Err(error) => break End::Error(format!("invalid message: {error}")),
        };
        tracing::debug!(kind = message.type_name(), doc = ?message.document_id(), bytes = bytes.len(), "message in");
        if let Err(reason) = session.handle(message).await {
            break End::Error(reason.to_string());
        }
    };

    if let End::Error(reason) = &end {
        tracing::info!(%reason, "closing connection after protocol error");
        metrics::counter!(m::PROTOCOL_ERRORS, "kind" => "connection").increment(1);
        let _ = outbound_tx.send(Outbound::Close(reason.clone())).await;
    }
    session.detach_all().await;
    drop(session);
    drop(outbound_tx);
    // The writer ends once every document has dropped its sender, or after a
    // close; bound the wait so a stuck peer cannot hold shutdown.
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    metrics::gauge!(m::CONNECTIONS).decrement(1.0);
}

/// Resolves when a credential expiring at `expires_ms` (unix ms) expires;
/// never for one that does not expire.
async fn token_deadline(expires_ms: Option<i64>) {
    match expires_ms {
        Some(at) => {
            let left = at.saturating_sub(crate::auth::unix_ms()).max(0);
            tokio::time::sleep(Duration::from_millis(left as u64)).await;
        }
        None => std::future::pending().await,
    }
}

enum Frame {
    Binary(Vec<u8>),
    Ignored,
    Closed,
    Bad(String),
}

async fn next_frame(
    stream: &mut futures_util::stream::SplitStream<WebSocket>,
    handshaking: bool,
) -> Frame {
    let next = if handshaking {
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.next()).await {
            Ok(next) => next,
            Err(_) => return Frame::Bad("no join message within 10 seconds".into()),
        }
    } else {
        stream.next().await
    };
    match next {
        None | Some(Ok(WsMessage::Close(_))) => Frame::Closed,
        Some(Ok(WsMessage::Binary(bytes))) => Frame::Binary(bytes.to_vec()),
        Some(Ok(WsMessage::Text(_))) => Frame::Bad(
            "text frames are not part of the protocol; send CBOR in binary frames".into(),
        ),
        Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => Frame::Ignored,
        Some(Err(error)) => Frame::Bad(frame_error(&error.to_string())),
    }
}

fn frame_error(error: &str) -> String {
    if error.contains("too long") || error.contains("Space limit") || error.contains("size") {
        format!("message too large: {error}")
    } else {
        format!("websocket error: {error}")
    }
}

async fn write_loop(
    mut sink: futures_util::stream::SplitSink<WebSocket, WsMessage>,
    mut rx: mpsc::Receiver<Outbound>,
) {
    while let Some(first) = rx.recv().await {
        // Whatever else is already queued goes out with it, flushed once:
        // a listener that fell behind catches up with one write, not one
        // system call per message.
        let mut next = Some(first);
        let mut batched = 0;
        while let Some(out) = next.take() {
            let bytes = match out {
                Outbound::Message(message) => message.encode(),
                Outbound::Sync { message, target } => message.encode_for(&target),
                Outbound::Close(reason) => return close_with(sink, reason).await,
            };
            metrics::counter!(m::MESSAGES_OUT).increment(1);
            metrics::counter!(m::BYTES_OUT).increment(bytes.len() as u64);
            if sink.feed(WsMessage::Binary(bytes.into())).await.is_err() {
                return;
            }
            batched += 1;
            if batched < WRITE_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
    let _ = sink.send(WsMessage::Close(None)).await;
}

/// Messages written to one socket before a flush, at most.
const WRITE_BATCH: usize = 64;

/// Sends an `error` message with `reason`, then closes the socket.
async fn close_with(
    mut sink: futures_util::stream::SplitSink<WebSocket, WsMessage>,
    reason: String,
) {
    let bytes = Message::Error {
        message: reason.clone(),
    }
    .encode();
    metrics::counter!(m::MESSAGES_OUT).increment(1);
    let _ = sink.send(WsMessage::Binary(bytes.into())).await;
    let mut close_reason = reason;
    close_reason.truncate(120);
    let _ = sink
        .send(WsMessage::Close(Some(CloseFrame {
            code: 1008,
            reason: close_reason.into(),
        })))
        .await;
}

/// Why a session ends: sent to the peer as an `error` message before the
/// socket closes.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("expected `join`, got `{0}`")]
    NotJoin(&'static str),
    #[error("unexpected `{0}` after the handshake")]
    AfterHandshake(&'static str),
    #[error("unsupported protocol version(s) {0:?}; this server speaks \"{PROTOCOL_VERSION}\"")]
    Version(Vec<String>),
    #[error("connection closed")]
    Closed,
    #[error("document closed")]
    DocumentClosed,
}

struct Session {
    key: u64,
    ctx: ConnectionContext,
    principal: Principal,
    actor: String,
    address: String,
    peer_id: Option<String>,
    outbound: mpsc::Sender<Outbound>,
    kill: Arc<Notify>,
    documents: HashMap<DocumentId, mpsc::Sender<DocCommand>>,
    /// The peer speaks the `change-rejected/1` extension.
    rejection_notices: bool,
}

impl Session {
    async fn handle(&mut self, message: Message) -> Result<(), SessionError> {
        let Some(peer_id) = self.peer_id.clone() else {
            return self.handshake(message).await;
        };
        match message {
            Message::Request {
                document_id, data, ..
            } => {
                self.sync(&peer_id, document_id, SyncKind::Request, data)
                    .await
            }
            Message::Sync {
                document_id, data, ..
            } => self.sync(&peer_id, document_id, SyncKind::Sync, data).await,
            Message::Ephemeral { document_id, .. } => {
                // Ephemeral messages go only to peers of documents this one may read.
                if let Some(tx) = self.documents.get(&document_id) {
                    let _ = tx
                        .send(DocCommand::Ephemeral {
                            key: self.key,
                            message,
                        })
                        .await;
                }
                Ok(())
            }
            // Advisory: the peer closes the socket itself.
            Message::Leave { .. } => Ok(()),
            Message::DocUnavailable { .. }
            | Message::ChangeRejected { .. }
            | Message::RemoteSubscriptionChange { .. }
            | Message::RemoteHeadsChanged { .. } => Ok(()),
            Message::Error { message } => {
                tracing::info!(%message, "peer reported an error");
                Ok(())
            }
            Message::Join { .. } | Message::Peer { .. } => {
                Err(SessionError::AfterHandshake(message.type_name()))
            }
        }
    }

    async fn handshake(&mut self, message: Message) -> Result<(), SessionError> {
        let Message::Join {
            sender_id,
            supported_protocol_versions,
            peer_metadata,
        } = message
        else {
            return Err(SessionError::NotJoin(message.type_name()));
        };
        if !supported_protocol_versions
            .iter()
            .any(|v| v == PROTOCOL_VERSION)
        {
            return Err(SessionError::Version(supported_protocol_versions));
        }
        tracing::Span::current().record("peer", sender_id.as_str());
        // Extensions both sides speak; stock peers list none.
        self.rejection_notices = peer_metadata
            .as_ref()
            .is_some_and(|m| m.extensions.iter().any(|e| e == EXT_CHANGE_REJECTED));
        let reply = Message::Peer {
            sender_id: self.ctx.server_peer_id.clone(),
            target_id: sender_id.clone(),
            selected_protocol_version: PROTOCOL_VERSION.into(),
            peer_metadata: Some(PeerMetadata {
                storage_id: Some(self.ctx.storage_id.clone()),
                is_ephemeral: false,
                extensions: if self.rejection_notices {
                    vec![EXT_CHANGE_REJECTED.into()]
                } else {
                    Vec::new()
                },
            }),
        };
        self.outbound
            .send(Outbound::Message(reply))
            .await
            .map_err(|_| SessionError::Closed)?;
        self.peer_id = Some(sender_id);
        Ok(())
    }

    async fn sync(
        &mut self,
        peer_id: &str,
        document_id: DocumentId,
        kind: SyncKind,
        data: Vec<u8>,
    ) -> Result<(), SessionError> {
        let received_at = Instant::now();
        let tx = match self.documents.get(&document_id) {
            Some(tx) => tx.clone(),
            None => {
                let scope = match self
                    .ctx
                    .registry
                    .store()
                    .documents
                    .document_scope(document_id)
                    .await
                {
                    Ok(scope) => scope,
                    Err(error) => {
                        tracing::error!(doc = %document_id, %error, "document scope unreadable");
                        return self.unavailable(peer_id, document_id).await;
                    }
                };
                let access = policy::document_access(&self.principal, scope.as_ref());
                if !access.read {
                    // A peer that speaks the extension and sends changes for a
                    // document it may not (or no longer) read gets them back as
                    // refused, whether or not the document exists (so the
                    // answer reveals nothing), and sets them aside.
                    let carried = if self.rejection_notices && kind == SyncKind::Sync {
                        crate::doc_core::carried_changes(&data)
                    } else {
                        Vec::new()
                    };
                    if !carried.is_empty() {
                        let reason = "not allowed to write to this document".to_owned();
                        let hashes: Vec<String> = carried.iter().map(|h| h.to_string()).collect();
                        let mut entry =
                            NewAuditEntry::new(&self.actor, "document.write_rejected", "denied")
                                .target(document_id.to_string())
                                .address(&self.address)
                                .details(
                                    serde_json::json!({ "reason": reason, "changes": hashes }),
                                );
                        entry.device = self.principal.device_id().map(str::to_owned);
                        if let Err(error) =
                            self.ctx.registry.store().audit.append_audit(entry).await
                        {
                            tracing::error!(%error, "audit log write failed");
                        }
                        self.outbound
                            .send(Outbound::Message(Message::ChangeRejected {
                                sender_id: self.ctx.server_peer_id.clone(),
                                target_id: peer_id.to_owned(),
                                document_id,
                                changes: hashes,
                                reason,
                            }))
                            .await
                            .map_err(|_| SessionError::Closed)?;
                    }
                    tracing::info!(doc = %document_id, "read denied; answering doc-unavailable");
                    let mut entry =
                        NewAuditEntry::new(&self.actor, "document.read_denied", "denied")
                            .target(document_id.to_string())
                            .address(&self.address);
                    entry.device = self.principal.device_id().map(str::to_owned);
                    if let Err(error) = self.ctx.registry.store().audit.append_audit(entry).await {
                        tracing::error!(%error, "audit log write failed");
                    }
                    return self.unavailable(peer_id, document_id).await;
                }
                let peer = PeerHandle {
                    key: self.key,
                    peer_id: peer_id.into(),
                    actor: self.actor.clone(),
                    device: self.principal.device_id().map(str::to_owned),
                    address: self.address.clone(),
                    access,
                    validation: policy::write_validation(&self.principal, scope.as_ref()),
                    rejection_notices: self.rejection_notices,
                    outbound: self.outbound.clone(),
                    kill: self.kill.clone(),
                };
                match self.ctx.registry.attach(document_id, peer).await {
                    Ok(tx) => {
                        self.documents.insert(document_id, tx.clone());
                        tx
                    }
                    Err(error) => {
                        tracing::error!(doc = %document_id, %error, "document could not be opened");
                        return self.unavailable(peer_id, document_id).await;
                    }
                }
            }
        };
        tx.send(DocCommand::Sync {
            key: self.key,
            kind,
            data,
            received_at,
        })
        .await
        .map_err(|_| SessionError::DocumentClosed)
    }

    async fn unavailable(
        &self,
        peer_id: &str,
        document_id: DocumentId,
    ) -> Result<(), SessionError> {
        self.outbound
            .send(Outbound::Message(Message::DocUnavailable {
                sender_id: self.ctx.server_peer_id.clone(),
                target_id: peer_id.to_owned(),
                document_id,
            }))
            .await
            .map_err(|_| SessionError::Closed)
    }

    async fn detach_all(&mut self) {
        for (_, tx) in self.documents.drain() {
            let _ = tx.send(DocCommand::Detach { key: self.key }).await;
        }
    }
}
