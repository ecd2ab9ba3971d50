//! One live document's actor: it owns the document's [`DocumentCore`], takes
//! the commands of its mailbox in batches, persists what they change before
//! anyone hears of it, answers its peers, and leaves when it has had none
//! for a while or the memory budget asks it to. Its own file because it is
//! the registry's largest part; [`super::Registry`] only finds and starts it.
//! Over 600 lines: the batch, persist, reply and compaction steps share the
//! actor's state and read best in one place.

use super::*;

struct DocActor {
    id: DocumentId,
    generation: u64,
    registry: Arc<Inner>,
    /// `None` until loaded, or after the store failed to read it.
    core: Option<DocumentCore>,
    peers: HashMap<PeerKey, PeerHandle>,
    chunks_since_snapshot: u64,
    /// Bytes of those chunks, and of the snapshot they would be folded into
    /// ([`worth_compacting`]).
    chunk_bytes_since_snapshot: u64,
    snapshot_bytes: u64,
    /// Every stored chunk with a sequence number up to this one is in the
    /// in-memory document (the safe bound for compaction when several
    /// nodes write one document).
    applied_through: u64,
    /// Another node wrote to the store: catch up after this batch is persisted.
    needs_catch_up: bool,
    /// Actors whose changes this batch accepted (audited once persisted).
    batch_writers: std::collections::BTreeSet<String>,
    /// Set when the in-memory document can no longer be trusted (a store
    /// write or reload failed): the actor leaves, and the next attach starts
    /// a fresh one from what the store holds.
    broken: bool,
    /// Whether this is a member's settings document (looked up once).
    is_settings: Option<bool>,
    /// A settings backup is owed at this time (debounced after changes).
    backup_due: Option<Instant>,
    /// Size and idleness last reported to the memory budget.
    reported: Option<(u64, bool)>,
    /// When peers held back from the last round are due regardless of
    /// their answer (see `DocumentCore::outgoing_paced`).
    held_due: Option<Instant>,
}

/// Starts the actor of document `id` (its `generation` in the registry) on
/// the commands of `rx`.
pub(super) fn start(
    id: DocumentId,
    generation: u64,
    registry: Arc<Inner>,
    rx: mpsc::Receiver<DocCommand>,
) {
    let actor = DocActor {
        id,
        generation,
        registry,
        core: None,
        peers: HashMap::new(),
        chunks_since_snapshot: 0,
        chunk_bytes_since_snapshot: 0,
        snapshot_bytes: 0,
        applied_through: 0,
        needs_catch_up: false,
        batch_writers: Default::default(),
        broken: false,
        is_settings: None,
        backup_due: None,
        reported: None,
        held_due: None,
    };
    tokio::spawn(async move {
        actor.run(rx).await;
        // The actor and its document are gone.
        return_freed_memory();
    });
}

impl DocActor {
    #[tracing::instrument(name = "document", skip_all, fields(doc = %self.id))]
    async fn run(mut self, mut rx: mpsc::Receiver<DocCommand>) {
        let load_error = self.load().await.err();
        if load_error.is_none() {
            metrics::gauge!(m::DOCUMENTS_LOADED).increment(1.0);
        }
        loop {
            let backup_wait = self
                .backup_due
                .map(|due| due.saturating_duration_since(Instant::now()));
            let first = if self.peers.is_empty() {
                let wait = backup_wait.map_or(self.registry.settings.evict_after, |b| {
                    b.min(self.registry.settings.evict_after)
                });
                match tokio::time::timeout(wait, rx.recv()).await {
                    Ok(cmd) => cmd,
                    Err(_) if self.backup_due.is_some() => {
                        self.backup_settings().await;
                        continue;
                    }
                    Err(_) => {
                        if load_error.is_none() {
                            self.compact().await;
                        }
                        if self.leave(&mut rx, false, "idle") {
                            break;
                        }
                        continue;
                    }
                }
            } else if let Some(wake) = [self.backup_due, self.held_due].into_iter().flatten().min()
            {
                match tokio::time::timeout_at(wake.into(), rx.recv()).await {
                    Ok(cmd) => cmd,
                    Err(_) => {
                        let now = Instant::now();
                        if self.held_due.is_some_and(|due| due <= now) {
                            self.send_held();
                        }
                        if self.backup_due.is_some_and(|due| due <= now) {
                            self.backup_settings().await;
                        }
                        continue;
                    }
                }
            } else {
                rx.recv().await
            };
            let Some(first) = first else { break };
            if let Some(error) = &load_error {
                // The document cannot be served; answer every attach with the error.
                if let DocCommand::Attach { ack, .. } = first {
                    let _ = ack.send(Err(error.clone()));
                } else if let DocCommand::Shutdown { done } = first {
                    let _ = done.send(());
                    break;
                }
                continue;
            }
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(cmd) => batch.push(cmd),
                    Err(_) => break,
                }
            }
            let evict = batch.iter().any(|cmd| matches!(cmd, DocCommand::Evict));
            if let Some(done) = self.handle_batch(batch).await {
                self.finish().await;
                let _ = done.send(());
                break;
            }
            if self.broken {
                self.leave(&mut rx, true, "failure");
                break;
            }
            if evict && self.peers.is_empty() {
                if self.backup_due.is_some() {
                    self.backup_settings().await;
                }
                self.compact().await;
                if self.leave(&mut rx, false, "budget") {
                    break;
                }
                // Something arrived meanwhile: report afresh, so the budget
                // may choose this document again once it is idle.
                self.registry.forget_usage(self.id, self.generation);
                self.reported = None;
            }
            self.report_usage();
        }
        self.registry.forget_usage(self.id, self.generation);
        if load_error.is_none() {
            metrics::gauge!(m::DOCUMENTS_LOADED).decrement(1.0);
        }
    }

    /// Tells the memory budget this document's size and whether it is idle,
    /// when either changed noticeably since the last report.
    fn report_usage(&mut self) {
        let Some(core) = &self.core else { return };
        let bytes = crate::memory_budget::estimated_bytes(core.doc());
        let idle = self.peers.is_empty();
        let unchanged = self
            .reported
            .is_some_and(|(was, was_idle)| was_idle == idle && bytes.abs_diff(was) <= was / 64);
        if unchanged {
            return;
        }
        self.reported = Some((bytes, idle));
        self.registry
            .report_usage(self.id, self.generation, bytes, idle);
    }

    async fn load(&mut self) -> Result<(), DocumentError> {
        let started = Instant::now();
        let stored = self
            .registry
            .store
            .documents
            .load_document(self.id)
            .await
            .map_err(|e| DocumentError::Unreadable {
                id: self.id,
                reason: e.to_string(),
            })?;
        let core = match stored {
            None => DocumentCore::empty(),
            Some(stored) => {
                self.applied_through = stored.last_seq;
                self.chunks_since_snapshot = stored.chunks.len() as u64;
                self.chunk_bytes_since_snapshot =
                    stored.chunks.iter().map(|c| c.len() as u64).sum();
                self.snapshot_bytes = stored.snapshot.as_ref().map_or(0, |s| s.len() as u64);
                DocumentCore::load(stored.snapshot.as_deref(), &stored.chunks).map_err(|e| {
                    DocumentError::Corrupt {
                        id: self.id,
                        reason: e.to_string(),
                    }
                })?
            }
        };
        metrics::counter!(m::DOCUMENT_LOADS).increment(1);
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "document loaded"
        );
        self.core = Some(core);
        Ok(())
    }

    fn core(&mut self) -> &mut DocumentCore {
        self.core.as_mut().expect("document is loaded")
    }

    /// Handles a batch; returns the shutdown acknowledgement if one was in it.
    async fn handle_batch(&mut self, batch: Vec<DocCommand>) -> Option<oneshot::Sender<()>> {
        let mut shutdown = None;
        let mut oldest_sync: Option<Instant> = None;
        let heads_before = self.core().heads();
        let mut written = Vec::new();
        for cmd in batch {
            match cmd {
                DocCommand::Attach { peer, ack } => {
                    self.core().attach(peer.key);
                    self.peers.insert(peer.key, peer);
                    let _ = ack.send(Ok(()));
                }
                DocCommand::Detach { key } => {
                    self.core().detach(key);
                    self.peers.remove(&key);
                    self.registry.settings.presence.gone(self.id, key);
                }
                DocCommand::Sync {
                    key,
                    kind,
                    data,
                    received_at,
                } => {
                    oldest_sync = Some(oldest_sync.map_or(received_at, |t| t.min(received_at)));
                    self.handle_sync(key, kind, &data).await;
                }
                DocCommand::Ephemeral { key, message } => self.relay_ephemeral(key, message),
                DocCommand::StoreChanged => self.needs_catch_up = true,
                DocCommand::WriteSettings { settings, done } => {
                    match self.core().local_change(|tx| {
                        settings_model::migrate(tx)?;
                        settings_model::apply_json(tx, &settings)
                    }) {
                        Ok(()) => written.push(done),
                        Err(error) => {
                            let _ = done.send(Err(DocumentError::Settings(error)));
                        }
                    }
                }
                DocCommand::Shutdown { done } => shutdown = Some(done),
                DocCommand::Evict => {}
            }
        }
        let persisted = self.persist().await;
        for done in written {
            let _ = done.send(if persisted {
                Ok(())
            } else {
                Err(DocumentError::NotDurable)
            });
        }
        if !persisted {
            return shutdown;
        }
        if self.core().heads() != heads_before && self.settings_document().await {
            self.backup_due.get_or_insert_with(|| {
                Instant::now() + self.registry.settings.settings_backup_debounce
            });
        }
        if std::mem::take(&mut self.needs_catch_up) {
            self.catch_up().await;
        }
        if self.broken {
            return shutdown;
        }
        self.send_outgoing();
        if let Some(started) = oldest_sync {
            metrics::histogram!(m::SYNC_SECONDS).record(started.elapsed().as_secs_f64());
        }
        shutdown
    }

    async fn handle_sync(&mut self, key: PeerKey, kind: SyncKind, data: &[u8]) {
        let Some(peer) = self.peers.get(&key).cloned() else {
            return;
        };
        let exists = self.core().exists();
        if !exists && (kind == SyncKind::Request || !peer.access.create) {
            self.send(
                &peer,
                Message::DocUnavailable {
                    sender_id: self.registry.settings.server_peer_id.clone(),
                    target_id: peer.peer_id.to_string(),
                    document_id: self.id,
                },
            );
            return;
        }
        let before = self.core().heads();
        match self
            .core()
            .receive_checked(key, data, peer.access.write, peer.validation.as_ref())
        {
            Ok(received) => {
                if received.changed {
                    self.batch_writers.insert(peer.actor.clone());
                }
                if !received.rejected.is_empty() {
                    self.refuse_changes(&peer, &received).await;
                }
            }
            Err(error) => {
                tracing::warn!(peer = %peer.peer_id, %error, "refusing sync message");
                let mut entry =
                    NewAuditEntry::new(&peer.actor, "document.write_rejected", "denied")
                        .target(self.id.to_string())
                        .address(&peer.address)
                        .details(serde_json::json!({ "reason": error.to_string() }));
                entry.device = peer.device.clone();
                self.audit(entry).await;
                self.registry
                    .settings
                    .security
                    .refused_write(&self.registry.store, &peer.actor, &peer.address)
                    .await;
                metrics::counter!(m::PROTOCOL_ERRORS, "kind" => "sync_data").increment(1);
                let _ = peer.outbound.try_send(Outbound::Close(error.to_string()));
                self.core().detach(key);
                self.peers.remove(&key);
                let broken = match error {
                    // Part of the message got in: throw away everything not durable.
                    ReceiveError::Apply(_) => self.core().heads() != before,
                    // automerge panicked halfway: nothing in memory is trusted.
                    ReceiveError::Panicked(_) => true,
                    ReceiveError::Decode(_) | ReceiveError::NotAttached => false,
                };
                if broken {
                    self.reload().await;
                }
            }
        }
    }

    /// Changes that failed validation: audited, counted towards an alert,
    /// and reported to the writer: with a notice if it speaks the extension
    /// (it sets them aside and goes on), else by closing the connection.
    async fn refuse_changes(&mut self, peer: &PeerHandle, received: &crate::doc_core::Received) {
        let reason = received.reason.clone().unwrap_or_else(|| "refused".into());
        let hashes: Vec<String> = received.rejected.iter().map(|h| h.to_string()).collect();
        tracing::info!(peer = %peer.peer_id, changes = hashes.len(), %reason, "changes refused by validation");
        let mut entry = NewAuditEntry::new(&peer.actor, "document.write_rejected", "denied")
            .target(self.id.to_string())
            .address(&peer.address)
            .details(serde_json::json!({ "reason": reason, "changes": hashes }));
        entry.device = peer.device.clone();
        self.audit(entry).await;
        self.registry
            .settings
            .security
            .refused_write(&self.registry.store, &peer.actor, &peer.address)
            .await;
        metrics::counter!(m::PROTOCOL_ERRORS, "kind" => "change_rejected").increment(1);
        if peer.rejection_notices {
            self.send(
                peer,
                Message::ChangeRejected {
                    sender_id: self.registry.settings.server_peer_id.clone(),
                    target_id: peer.peer_id.to_string(),
                    document_id: self.id,
                    changes: hashes,
                    reason,
                },
            );
        } else {
            let _ = peer
                .outbound
                .try_send(Outbound::Close(format!("change refused: {reason}")));
        }
    }

    /// Drops the in-memory document and reloads it from the store; every
    /// peer restarts its sync from scratch.
    async fn reload(&mut self) {
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        match self.load().await {
            Ok(()) => {
                for key in keys {
                    self.core().attach(key);
                }
            }
            Err(error) => self.fail_all(&error),
        }
    }

    fn fail_all(&mut self, error: &dyn std::fmt::Display) {
        tracing::error!(%error, "document failed; disconnecting its peers");
        for peer in self.peers.values() {
            let _ = peer
                .outbound
                .try_send(Outbound::Close(format!("document unavailable: {error}")));
        }
        self.peers.clear();
        self.broken = true;
    }

    fn relay_ephemeral(&mut self, from: PeerKey, message: Message) {
        let Message::Ephemeral {
            sender_id,
            count,
            session_id,
            data,
            ..
        } = message
        else {
            return;
        };
        if let Some(sender) = self.peers.get(&from) {
            self.registry.settings.presence.heard(
                self.id,
                from,
                &sender.actor,
                sender.device.as_deref(),
                &data,
            );
        }
        let targets: Vec<PeerHandle> = self
            .peers
            .values()
            .filter(|p| p.key != from)
            .cloned()
            .collect();
        for peer in targets {
            self.send(
                &peer,
                Message::Ephemeral {
                    sender_id: sender_id.clone(),
                    target_id: peer.peer_id.to_string(),
                    count,
                    session_id: session_id.clone(),
                    document_id: self.id,
                    data: data.clone(),
                },
            );
        }
    }

    /// Writes new changes to the store. Returns false if the store failed (the
    /// document was then reset and its peers disconnected).
    async fn persist(&mut self) -> bool {
        let Some((chunk, heads)) = self.core().unpersisted() else {
            return true;
        };
        let changes = self.core().take_accepted();
        let chunk_bytes = chunk.len() as u64;
        let writers = std::mem::take(&mut self.batch_writers);
        // The store adds the chunk's `seq`; chunk and entry go in together.
        let entry = NewAuditEntry::new(
            writers.into_iter().collect::<Vec<_>>().join(","),
            "document.write",
            "ok",
        )
        .target(self.id.to_string())
        .details(serde_json::json!({
            "heads": heads.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
            "changes": changes,
        }));
        match self
            .registry
            .store
            .documents
            .append_chunk_audited(self.id, chunk, entry)
            .await
        {
            Ok(seq) => {
                self.chunks_since_snapshot += 1;
                self.chunk_bytes_since_snapshot += chunk_bytes;
                self.core().mark_persisted(heads);
                if seq == self.applied_through + 1 {
                    self.applied_through = seq;
                } else {
                    // Another node wrote in between: take its chunks too.
                    self.catch_up().await;
                }
                metrics::counter!(m::CHUNKS_WRITTEN).increment(1);
                if worth_compacting(
                    self.chunks_since_snapshot,
                    self.chunk_bytes_since_snapshot,
                    self.snapshot_bytes,
                    self.registry.settings.compact_after_chunks,
                ) {
                    self.compact().await;
                }
                true
            }
            Err(error) => {
                // The undurable changes are forgotten with this actor; the
                // next attach reloads from the store. Peers resend on reconnect.
                self.fail_all(&format!("store write failed: {error}"));
                false
            }
        }
    }

    /// Records an audit entry; a failure is logged, never fatal to syncing
    /// (the data itself is already durable).
    async fn audit(&self, entry: NewAuditEntry) {
        if let Err(error) = self.registry.store.audit.append_audit(entry).await {
            tracing::error!(%error, "audit log write failed");
        }
    }

    /// Applies whatever the store holds beyond `applied_through` (written by
    /// other nodes). Only called when nothing in memory is unpersisted.
    async fn catch_up(&mut self) {
        let after = self.applied_through;
        let fetched = match self
            .registry
            .store
            .documents
            .chunks_after(self.id, after)
            .await
        {
            Ok(fetched) => fetched,
            Err(error) => return self.fail_all(&format!("reading other nodes' changes: {error}")),
        };
        let core = self.core.as_mut().expect("document is loaded");
        let mut applied = 0;
        for bytes in fetched
            .snapshot
            .iter()
            .chain(fetched.chunks.iter().map(|(_, data)| data))
        {
            if let Err(error) = core.apply_stored(bytes) {
                return self.fail_all(&format!("stored change is unreadable: {error}"));
            }
            applied += 1;
        }
        let fetched_bytes: u64 = fetched.chunks.iter().map(|(_, c)| c.len() as u64).sum();
        if let Some(snapshot) = &fetched.snapshot {
            self.chunks_since_snapshot = fetched.chunks.len() as u64;
            self.chunk_bytes_since_snapshot = fetched_bytes;
            self.snapshot_bytes = snapshot.len() as u64;
        } else {
            self.chunks_since_snapshot += applied;
            self.chunk_bytes_since_snapshot += fetched_bytes;
        }
        self.applied_through = self.applied_through.max(fetched.through_seq);
    }

    /// Folds the chunks into a snapshot (whatever their size: used when the
    /// document leaves memory and by [`worth_compacting`] writes).
    async fn compact(&mut self) {
        if self.chunks_since_snapshot == 0 {
            return;
        }
        let snapshot = self.core().save();
        let snapshot_bytes = snapshot.len() as u64;
        match self
            .registry
            .store
            .documents
            .compact(self.id, snapshot, self.applied_through)
            .await
        {
            Ok(()) => {
                self.chunks_since_snapshot = 0;
                self.chunk_bytes_since_snapshot = 0;
                self.snapshot_bytes = snapshot_bytes;
                metrics::counter!(m::COMPACTIONS).increment(1);
            }
            // Chunks stay in the store, so nothing is lost; try again later.
            Err(error) => tracing::warn!(%error, "compaction failed"),
        }
    }

    /// The round for peers held back that did not answer in time.
    fn send_held(&mut self) {
        self.held_due = None;
        // Changes a failed write left unpersisted are not announced; the
        // next batch persists them and sends its round.
        if self
            .core
            .as_ref()
            .is_some_and(|core| core.unpersisted().is_none())
        {
            self.send_outgoing();
        }
    }

    fn send_outgoing(&mut self) {
        // A peer answers changes within a round trip, so the hold bounds
        // only the wait for one that does not (it had them already, or its
        // connection is stalling).
        let hold = self.registry.settings.pace_unanswered;
        let messages = if hold.is_zero() {
            self.core().outgoing()
        } else {
            let (messages, held_due) = self.core().outgoing_paced(Instant::now(), hold);
            self.held_due = held_due;
            messages
        };
        let made = self.core().take_message_counts();
        metrics::counter!(m::SYNC_MESSAGES_MADE, "how" => "generated").increment(made.generated);
        metrics::counter!(m::SYNC_MESSAGES_MADE, "how" => "shared").increment(made.shared);
        metrics::counter!(m::SYNC_MESSAGES_MADE, "how" => "from_history")
            .increment(made.from_history);
        metrics::counter!(m::SYNC_ANSWERS, "how" => "shortcut").increment(made.answers_taken);
        metrics::counter!(m::SYNC_ANSWERS, "how" => "automerge").increment(made.answers_walked);
        metrics::counter!(m::SYNC_PEERS_IN_SYNC).increment(made.in_sync);
        metrics::counter!(m::SYNC_WHOLE_DOCUMENTS, "how" => "saved")
            .increment(made.whole_document_saves);
        metrics::counter!(m::SYNC_WHOLE_DOCUMENTS, "how" => "reused")
            .increment(made.whole_documents - made.whole_document_saves);
        let mut lagging = Vec::new();
        for crate::doc_core::Outgoing { data, peers } in messages {
            // Encoded once for all its peers; each connection's writer adds
            // its own target id.
            let message = Arc::new(sync_protocol::SharedSync::new(
                &self.registry.settings.server_peer_id,
                self.id,
                &data,
            ));
            for key in peers {
                let Some(peer) = self.peers.get(&key) else {
                    continue;
                };
                let queued = peer.outbound.try_send(Outbound::Sync {
                    message: message.clone(),
                    target: peer.peer_id.clone(),
                });
                if queued.is_err() {
                    lagging.push(key);
                }
            }
        }
        for key in lagging {
            if let Some(peer) = self.peers.get(&key).cloned() {
                self.drop_lagging(&peer);
            }
        }
    }

    /// Queues a message to a peer. A peer whose queue is full has fallen too far
    /// behind: it is dropped and its connection closed (it resyncs on reconnect).
    fn send(&mut self, peer: &PeerHandle, message: Message) {
        if peer.outbound.try_send(Outbound::Message(message)).is_err() {
            self.drop_lagging(peer);
        }
    }

    fn drop_lagging(&mut self, peer: &PeerHandle) {
        tracing::warn!(peer = %peer.peer_id, "peer is not keeping up; disconnecting it");
        peer.kill.notify_one();
        if let Some(core) = self.core.as_mut() {
            core.detach(peer.key);
        }
        self.peers.remove(&peer.key);
    }

    /// Leaves memory: if nothing is waiting, or regardless when `force`d.
    /// Returns true when gone.
    fn leave(
        &mut self,
        rx: &mut mpsc::Receiver<DocCommand>,
        force: bool,
        reason: &'static str,
    ) -> bool {
        {
            let mut docs = self.registry.docs.lock().expect("registry mutex poisoned");
            if !force && !rx.is_empty() {
                return false;
            }
            if docs
                .get(&self.id)
                .is_some_and(|e| e.generation == self.generation)
            {
                docs.remove(&self.id);
            }
        }
        // Anyone who got our mailbox before the removal gets a dropped ack and
        // retries with a fresh actor. Other queued commands come from peers
        // that were told to close (forced) or cannot exist (no peers).
        rx.close();
        while let Ok(cmd) = rx.try_recv() {
            drop(cmd);
        }
        metrics::counter!(m::DOCUMENT_EVICTIONS, "reason" => reason).increment(1);
        tracing::debug!(reason, "document evicted");
        true
    }

    async fn finish(&mut self) {
        // Everything accepted is already durable (persist runs before replies);
        // fold the chunks so the next start loads one snapshot.
        if self.core.is_some() && !self.broken {
            if self.backup_due.is_some() {
                self.backup_settings().await;
            }
            self.compact().await;
        }
    }

    /// Whether this is a member's settings document (asked of the store once).
    async fn settings_document(&mut self) -> bool {
        if let Some(known) = self.is_settings {
            return known;
        }
        let known = match self.registry.store.documents.document_scope(self.id).await {
            Ok(scope) => {
                scope.is_some_and(|s| s.kind == crate::store::records::DocumentKind::Settings)
            }
            Err(error) => {
                tracing::warn!(%error, "document scope unreadable");
                return false;
            }
        };
        self.is_settings = Some(known);
        known
    }

    /// Takes the settings backup that is owed.
    async fn backup_settings(&mut self) {
        self.backup_due = None;
        let Some(core) = &self.core else { return };
        if let Err(error) = crate::settings_backup::take(
            &self.registry.store,
            self.id,
            core.doc(),
            self.registry.settings.settings_retention,
        )
        .await
        {
            tracing::error!(%error, "settings backup failed");
        }
    }
}

/// Hands freed heap pages back to the system. glibc keeps what a large
/// document freed (measured here: 300-450 MiB resident with no document
/// loaded and 4 MB in use), so memory would not come back when documents go
/// idle. Other allocators return pages by themselves.
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory at the top of the heaps
    // and in free chunks; it touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Whether a live document's chunks are worth folding into a snapshot now.
/// A fold saves the whole document inside its actor, which meanwhile answers
/// no peer (an event of 30,000 attendees and 20,000 scans: ~100 ms), and it
/// came every 64 writes whatever the document's size.
/// So after `at_least` chunks it waits until they add up to a quarter of the
/// snapshot, which keeps the cost in proportion to what arrived, or until
/// there are 16 times `at_least`, which bounds what a load replays.
fn worth_compacting(chunks: u64, chunk_bytes: u64, snapshot_bytes: u64, at_least: u64) -> bool {
    chunks >= at_least
        && (chunk_bytes.saturating_mul(4) >= snapshot_bytes
            || chunks >= at_least.saturating_mul(16))
}

#[cfg(test)]
mod tests {
    use super::worth_compacting;

    #[test]
    fn compaction_waits_for_chunks_worth_a_quarter_of_the_snapshot_or_a_bounded_count() {
        // Never before `at_least`, however large the chunks.
        assert!(!worth_compacting(63, 10_000_000, 100, 64));
        // Small document: the first 64 chunks are worth it.
        assert!(worth_compacting(64, 6_400, 1_000, 64));
        // A 4 MB event: 64 scans of 200 bytes are not; a quarter of it is.
        assert!(!worth_compacting(64, 12_800, 4_000_000, 64));
        assert!(worth_compacting(500, 1_000_000, 4_000_000, 64));
        // However small the chunks, 16 x 64 of them are folded.
        assert!(!worth_compacting(1_023, 204_600, 4_000_000, 64));
        assert!(worth_compacting(1_024, 204_800, 4_000_000, 64));
    }
}
