//! One document's sync state, without IO: the automerge document, one
//! `automerge::sync::State` per attached peer, and which heads are already
//! durable. The async shell (`doc_actor`) feeds it messages, persists what
//! [`DocumentCore::unpersisted`] hands out, and only then sends what
//! [`DocumentCore::outgoing`] produces, so no peer ever hears of a change the
//! store does not have.

use std::collections::{HashMap, HashSet};

use automerge::sync::{self, SyncDoc};
use automerge::{Automerge, ChangeHash};
use event_model::validate::EventWriter;

/// Identifies one connection attached to the document.
pub type PeerKey = u64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReceiveError {
    #[error("sync message is not valid automerge sync data: {0}")]
    Decode(String),
    #[error("sync message could not be applied: {0}")]
    Apply(String),
    #[error("peer is not attached to the document")]
    NotAttached,
}

#[derive(Debug, thiserror::Error)]
#[error("stored document is unreadable: {0}")]
pub struct LoadError(String);

/// How incoming changes are checked before they are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteCheck {
    /// Event documents, by who writes (`event_model::validate`).
    Event(EventWriter),
    /// Members' settings documents (`settings_model::check_change`).
    Settings,
    /// The organisation configuration (`settings_model::org::check_change`).
    OrgConfig,
    /// A reader without write rights: every new change is refused.
    ReadOnly,
}

impl WriteCheck {
    fn check(&self, doc: &Automerge, change: &automerge::ExpandedChange) -> Result<(), String> {
        match self {
            WriteCheck::Event(writer) => {
                event_model::validate::check_event_change(doc, change, writer)
            }
            WriteCheck::Settings => settings_model::check_change(doc, change),
            WriteCheck::OrgConfig => settings_model::org::check_change(doc, change),
            WriteCheck::ReadOnly => Err(READ_ONLY.into()),
        }
    }
}

/// Why a reader's change is refused.
pub const READ_ONLY: &str = "you may read this document but not change it";

/// What [`DocumentCore::receive_checked`] did with a message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Received {
    pub changed: bool,
    /// Changes refused by validation (and those depending on them).
    pub rejected: Vec<ChangeHash>,
    /// Why the first one was refused.
    pub reason: Option<String>,
}

pub struct DocumentCore {
    doc: Automerge,
    peers: HashMap<PeerKey, sync::State>,
    persisted_heads: Vec<ChangeHash>,
    /// Peers whose changes were accepted since the last `outgoing`: they get
    /// a reply carrying our new heads even when automerge would stay silent,
    /// because that reply is how a client learns its changes are durable.
    owed_ack: HashSet<PeerKey>,
    /// Peers that sent something or attached since the last `outgoing`.
    /// Asking automerge for a message is not free (it builds a bloom filter
    /// per call), so when the heads did not move only these peers are asked.
    touched: HashSet<PeerKey>,
    heads_at_last_outgoing: Vec<ChangeHash>,
    /// Change chunks accepted since `take_accepted` (for the audit log).
    accepted_chunks: usize,
}

impl DocumentCore {
    /// A document from its stored snapshot and the chunks appended after it.
    pub fn load(snapshot: Option<&[u8]>, chunks: &[Vec<u8>]) -> Result<Self, LoadError> {
        let mut doc = match snapshot {
            Some(bytes) => Automerge::load(bytes).map_err(|e| LoadError(e.to_string()))?,
            None => Automerge::new(),
        };
        for chunk in chunks {
            doc.load_incremental(chunk)
                .map_err(|e| LoadError(e.to_string()))?;
        }
        let persisted_heads = doc.get_heads();
        Ok(Self {
            doc,
            peers: HashMap::new(),
            persisted_heads: persisted_heads.clone(),
            owed_ack: HashSet::new(),
            touched: HashSet::new(),
            heads_at_last_outgoing: persisted_heads,
            accepted_chunks: 0,
        })
    }

    pub fn empty() -> Self {
        Self {
            doc: Automerge::new(),
            peers: HashMap::new(),
            persisted_heads: Vec::new(),
            owed_ack: HashSet::new(),
            touched: HashSet::new(),
            heads_at_last_outgoing: Vec::new(),
            accepted_chunks: 0,
        }
    }

    /// The document (read-only).
    pub fn doc(&self) -> &Automerge {
        &self.doc
    }

    /// Makes a change on the server's own behalf (a restored backup). It is
    /// unpersisted until the shell persists it, like a peer's change.
    pub fn local_change<E: std::fmt::Display>(
        &mut self,
        f: impl FnOnce(&mut automerge::transaction::Transaction<'_>) -> Result<(), E>,
    ) -> Result<(), String> {
        let mut tx = self.doc.transaction();
        match f(&mut tx) {
            Ok(()) => {
                tx.commit();
                Ok(())
            }
            Err(error) => {
                tx.rollback();
                Err(error.to_string())
            }
        }
    }

    /// A document exists once it holds at least one change.
    pub fn exists(&self) -> bool {
        !self.doc.get_heads().is_empty()
    }

    pub fn heads(&self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    pub fn attach(&mut self, peer: PeerKey) {
        self.peers.entry(peer).or_default();
        self.touched.insert(peer);
    }

    pub fn detach(&mut self, peer: PeerKey) {
        self.peers.remove(&peer);
        self.owed_ack.remove(&peer);
        self.touched.remove(&peer);
    }

    /// Applies one sync message from `peer`. `may_write` false refuses any
    /// message that carries changes. On `Apply` the in-memory document may hold
    /// part of the message: the shell must reload it from the store.
    /// Returns whether the document changed.
    pub fn receive(
        &mut self,
        peer: PeerKey,
        data: &[u8],
        may_write: bool,
    ) -> Result<bool, ReceiveError> {
        self.receive_checked(peer, data, may_write, None)
            .map(|received| received.changed)
    }

    /// Like [`DocumentCore::receive`], checking every new change of an event
    /// document against `validation` first. Refused changes, and the ones
    /// that depend on them, are left out (never applied, so never stored or
    /// forwarded); the others are applied. The refused ones are reported.
    /// A peer that may not write has every new change refused (its other
    /// sync state still counts: it goes on reading).
    pub fn receive_checked(
        &mut self,
        peer: PeerKey,
        data: &[u8],
        may_write: bool,
        validation: Option<&WriteCheck>,
    ) -> Result<Received, ReceiveError> {
        let mut message =
            sync::Message::decode(data).map_err(|e| ReceiveError::Decode(e.to_string()))?;
        let validation = if may_write {
            validation
        } else {
            Some(&WriteCheck::ReadOnly)
        };
        if !self.peers.contains_key(&peer) {
            return Err(ReceiveError::NotAttached);
        }
        let before = self.doc.get_heads();
        let mut rejected = Vec::new();
        let mut reason = None;
        let mut chunks = message.changes.len();
        let checked = validation.filter(|_| !message.changes.is_empty());
        if checked.is_none() {
            validate_chunks(&message)?;
        }
        if let Some(rules) = checked {
            // One change at a time, each checked against the document with the
            // accepted ones before it applied (a message may create a map and
            // fill it); refused ones and those built on them are left out.
            // Opening the chunks checks them too (one load of a document
            // chunk, not two).
            let changes = expand_changes(&message)?;
            let mut refused: HashSet<ChangeHash> = HashSet::new();
            chunks = 0;
            for change in changes {
                if self.doc.get_change_meta_by_hash(&change.hash()).is_some() {
                    continue;
                }
                let verdict = if change.deps().iter().any(|d| refused.contains(d)) {
                    Err("depends on a refused change".to_owned())
                } else {
                    rules.check(&self.doc, &change.decode())
                };
                match verdict {
                    Ok(()) => {
                        if let Err(e) = self.doc.apply_changes([change]) {
                            return Err(ReceiveError::Apply(e.to_string()));
                        }
                        chunks += 1;
                    }
                    Err(why) => {
                        refused.insert(change.hash());
                        rejected.push(change.hash());
                        reason.get_or_insert(why);
                    }
                }
            }
            // Applied above: the sync message itself now only updates the
            // peer's sync state.
            message.changes = Vec::<Vec<u8>>::new().into();
        }
        let state = self.peers.get_mut(&peer).ok_or(ReceiveError::NotAttached)?;
        self.touched.insert(peer);
        self.doc
            .receive_sync_message(state, message)
            .map_err(|e| ReceiveError::Apply(e.to_string()))?;
        let changed = self.doc.get_heads() != before;
        if changed {
            self.owed_ack.insert(peer);
            self.accepted_chunks += chunks;
        }
        Ok(Received {
            changed,
            rejected,
            reason,
        })
    }

    /// Change chunks accepted since the last call.
    pub fn take_accepted(&mut self) -> usize {
        std::mem::take(&mut self.accepted_chunks)
    }

    /// Applies changes read from the store (written by another node). They
    /// are durable by definition; call only when nothing is unpersisted.
    pub fn apply_stored(&mut self, bytes: &[u8]) -> Result<(), LoadError> {
        debug_assert!(
            self.unpersisted().is_none(),
            "would mark undurable changes as durable"
        );
        self.doc
            .load_incremental(bytes)
            .map_err(|e| LoadError(e.to_string()))?;
        self.persisted_heads = self.doc.get_heads();
        Ok(())
    }

    /// Changes not yet durable, as one chunk, with the heads that chunk reaches.
    pub fn unpersisted(&self) -> Option<(Vec<u8>, Vec<ChangeHash>)> {
        let heads = self.doc.get_heads();
        if heads == self.persisted_heads {
            return None;
        }
        Some((self.doc.save_after(&self.persisted_heads), heads))
    }

    /// Records that everything up to `heads` is durable.
    pub fn mark_persisted(&mut self, heads: Vec<ChangeHash>) {
        self.persisted_heads = heads;
    }

    /// The sync messages due to each peer now. Call only after `unpersisted`
    /// is empty, so nothing undurable is announced.
    pub fn outgoing(&mut self) -> Vec<(PeerKey, Vec<u8>)> {
        debug_assert!(
            self.unpersisted().is_none(),
            "announcing changes that are not durable"
        );
        let doc = &self.doc;
        let exists = self.exists();
        let heads = doc.get_heads();
        let heads_moved = heads != self.heads_at_last_outgoing;
        self.heads_at_last_outgoing = heads;
        let touched = std::mem::take(&mut self.touched);
        for peer in self.owed_ack.drain() {
            if let Some(state) = self.peers.get_mut(&peer) {
                // automerge answers when it has not yet responded; this makes
                // it send our heads even if it thinks the peer knows them.
                state.have_responded = false;
            }
        }
        self.peers
            .iter_mut()
            // Offering an empty document unprompted would tell a peer it
            // exists; until it does, only answer peers that have spoken.
            .filter(|(_, state)| exists || state.their_heads.is_some())
            .filter(|(peer, _)| heads_moved || touched.contains(peer))
            .filter_map(|(peer, state)| {
                doc.generate_sync_message(state)
                    .map(|message| (*peer, message.encode()))
            })
            .collect()
    }

    /// A full snapshot for compaction.
    pub fn save(&self) -> Vec<u8> {
        self.doc.save()
    }
}

/// automerge skips chunks it cannot parse when applying a sync message
/// ("partial load"), which would let a corrupt message look accepted. Every
/// storage chunk in the message is checked first, so a corrupt one refuses the
/// whole message.
fn validate_chunks(message: &sync::Message) -> Result<(), ReceiveError> {
    for blob in message.changes.iter() {
        for chunk in split_chunks(blob)? {
            match chunk[8] {
                CHUNK_DOCUMENT => {
                    Automerge::load(chunk)
                        .map_err(|e| ReceiveError::Apply(format!("corrupt document chunk: {e}")))?;
                }
                CHUNK_CHANGE | CHUNK_COMPRESSED_CHANGE => {
                    checked_change(chunk)?;
                }
                other => return Err(ReceiveError::Apply(format!("unknown chunk type {other}"))),
            }
        }
    }
    Ok(())
}

/// The hashes of the changes a sync message carries (empty if it carries
/// none or cannot be read).
pub fn carried_changes(data: &[u8]) -> Vec<ChangeHash> {
    sync::Message::decode(data)
        .ok()
        .filter(|m| !m.changes.is_empty())
        .and_then(|m| expand_changes(&m).ok())
        .map(|changes| changes.iter().map(|c| c.hash()).collect())
        .unwrap_or_default()
}

/// Every change a message carries, in order (a whole-document chunk is
/// opened into its changes), refusing corrupt chunks as
/// [`validate_chunks`] does.
fn expand_changes(message: &sync::Message) -> Result<Vec<automerge::Change>, ReceiveError> {
    let mut out = Vec::new();
    for blob in message.changes.iter() {
        for chunk in split_chunks(blob)? {
            match chunk[8] {
                CHUNK_DOCUMENT => {
                    let doc = Automerge::load(chunk)
                        .map_err(|e| ReceiveError::Apply(format!("corrupt document chunk: {e}")))?;
                    out.extend(doc.get_changes(&[]));
                }
                CHUNK_CHANGE | CHUNK_COMPRESSED_CHANGE => out.push(checked_change(chunk)?),
                other => return Err(ReceiveError::Apply(format!("unknown chunk type {other}"))),
            }
        }
    }
    Ok(out)
}

/// A change chunk, refused if corrupt.
fn checked_change(chunk: &[u8]) -> Result<automerge::Change, ReceiveError> {
    let change = automerge::Change::try_from(chunk)
        .map_err(|e| ReceiveError::Apply(format!("corrupt change: {e}")))?;
    // The header checksum is the start of the change hash; `try_from` does
    // not compare them.
    if change.hash().0[..4] != chunk[4..8] {
        return Err(ReceiveError::Apply(
            "corrupt change: checksum mismatch".into(),
        ));
    }
    Ok(change)
}

const CHUNK_MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
const CHUNK_DOCUMENT: u8 = 0;
const CHUNK_CHANGE: u8 = 1;
const CHUNK_COMPRESSED_CHANGE: u8 = 2;

/// Splits concatenated automerge storage chunks (magic, 4-byte checksum,
/// type byte, ULEB128 length, body). Written here because automerge does not
/// expose its chunk parser; the checksum itself is checked by automerge.
fn split_chunks(mut bytes: &[u8]) -> Result<Vec<&[u8]>, ReceiveError> {
    let corrupt = |what: &str| ReceiveError::Apply(format!("corrupt change data: {what}"));
    let mut chunks = Vec::new();
    while !bytes.is_empty() {
        if bytes.len() < 10 || bytes[..4] != CHUNK_MAGIC {
            return Err(corrupt("bad chunk header"));
        }
        let mut len: u64 = 0;
        let mut pos = 9;
        let mut shift = 0;
        loop {
            let byte = *bytes.get(pos).ok_or_else(|| corrupt("truncated length"))?;
            if shift > 56 {
                return Err(corrupt("length overflows"));
            }
            len |= u64::from(byte & 0x7f) << shift;
            pos += 1;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| pos.checked_add(l))
            .filter(|end| *end <= bytes.len())
            .ok_or_else(|| corrupt("chunk longer than the message"))?;
        chunks.push(&bytes[..end]);
        bytes = &bytes[end..];
    }
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{ROOT, ReadDoc};

    /// A client-side automerge document syncing with the core as peer `key`.
    struct Client {
        doc: Automerge,
        state: sync::State,
    }

    impl Client {
        fn new() -> Self {
            Self {
                doc: Automerge::new(),
                state: sync::State::new(),
            }
        }
        fn put(&mut self, key: &str, value: i64) {
            let mut tx = self.doc.transaction();
            tx.put(ROOT, key, value).unwrap();
            tx.commit();
        }
        fn message(&mut self) -> Option<Vec<u8>> {
            self.doc
                .generate_sync_message(&mut self.state)
                .map(|m| m.encode())
        }
        fn receive(&mut self, data: &[u8]) {
            self.doc
                .receive_sync_message(&mut self.state, sync::Message::decode(data).unwrap())
                .unwrap();
        }
    }

    /// Runs the exchange to quiescence, persisting before every send the way
    /// the shell does; returns the chunks "written to the store".
    fn converge(core: &mut DocumentCore, clients: &mut [(PeerKey, &mut Client)]) -> Vec<Vec<u8>> {
        let mut stored = Vec::new();
        for _ in 0..50 {
            let mut quiet = true;
            for (key, client) in clients.iter_mut() {
                if let Some(msg) = client.message() {
                    quiet = false;
                    let _changed = core.receive(*key, &msg, true).unwrap();
                }
            }
            if let Some((chunk, heads)) = core.unpersisted() {
                stored.push(chunk);
                core.mark_persisted(heads);
            }
            for (key, msg) in core.outgoing() {
                quiet = false;
                let (_, client) = clients.iter_mut().find(|(k, _)| *k == key).unwrap();
                client.receive(&msg);
            }
            if quiet {
                return stored;
            }
        }
        panic!("did not converge");
    }

    #[test]
    fn a_change_from_one_peer_reaches_the_other_and_is_persisted_first() {
        let mut core = DocumentCore::empty();
        let (mut a, mut b) = (Client::new(), Client::new());
        core.attach(1);
        core.attach(2);
        a.put("x", 1);
        let stored = converge(&mut core, &mut [(1, &mut a), (2, &mut b)]);
        assert_eq!(b.doc.get(ROOT, "x").unwrap().unwrap().0.as_i64(), Some(1));
        assert_eq!(b.doc.get_heads(), a.doc.get_heads());

        // What was persisted reproduces the document.
        let reloaded = DocumentCore::load(None, &stored).unwrap();
        assert_eq!(reloaded.heads(), a.doc.get_heads());
        assert!(reloaded.exists());
    }

    #[test]
    fn a_reader_without_write_rights_cannot_push_changes() {
        let mut core = DocumentCore::empty();
        core.attach(1);
        let mut a = Client::new();
        a.put("x", 1);
        // First message only announces heads; keep going until changes flow.
        let first = a.message().unwrap();
        assert_eq!(core.receive(1, &first, false), Ok(false));
        for (_, msg) in core.outgoing() {
            a.receive(&msg);
        }
        let with_changes = a.message().unwrap();
        let received = core.receive_checked(1, &with_changes, false, None).unwrap();
        assert_eq!(received.rejected.len(), 1);
        assert_eq!(received.reason.as_deref(), Some(READ_ONLY));
        assert!(!received.changed);
        assert_eq!(core.take_accepted(), 0);
        assert!(!core.exists());
        assert!(core.unpersisted().is_none());
    }

    #[test]
    fn corrupt_sync_data_is_refused_without_touching_the_document() {
        let mut core = DocumentCore::empty();
        core.attach(1);
        assert!(matches!(
            core.receive(1, b"\x42garbage", true),
            Err(ReceiveError::Decode(_))
        ));
        assert!(matches!(
            core.receive(1, &[0x99, 1, 2, 3], true),
            Err(ReceiveError::Decode(_))
        ));
        assert!(matches!(
            core.receive(9, &Client::new().message().unwrap(), true),
            Err(ReceiveError::NotAttached)
        ));
        assert!(core.unpersisted().is_none());
    }

    #[test]
    fn several_changes_in_one_chunk_are_accepted_and_a_flipped_byte_is_not() {
        let mut a = Client::new();
        a.put("x", 1);
        a.put("y", 2);
        let both = a.doc.save_after(&[]);
        let message = |changes: Vec<u8>| {
            let mut state = sync::State::new();
            let mut m = a.doc.generate_sync_message(&mut state).unwrap();
            m.changes = vec![changes].into();
            m
        };
        assert_eq!(validate_chunks(&message(both.clone())), Ok(()));
        let mut core = DocumentCore::empty();
        core.attach(1);
        assert_eq!(
            core.receive(1, &message(both.clone()).encode(), true),
            Ok(true)
        );
        assert_eq!(core.take_accepted(), 1);
        assert_eq!(core.take_accepted(), 0);
        let mut changes = Vec::new();
        for change in a.doc.get_changes(&[]) {
            changes.extend_from_slice(change.raw_bytes());
        }
        assert_eq!(validate_chunks(&message(changes.clone())), Ok(()));
        let middle = changes.len() / 2;
        changes[middle] ^= 0xff;
        assert!(validate_chunks(&message(changes)).is_err());
        let mut truncated = both;
        truncated.pop();
        assert!(validate_chunks(&message(truncated)).is_err());
    }

    #[test]
    fn snapshot_plus_chunks_reload_to_the_same_heads() {
        let mut core = DocumentCore::empty();
        core.attach(1);
        let mut a = Client::new();
        a.put("x", 1);
        let mut stored = converge(&mut core, &mut [(1, &mut a)]);
        let snapshot = core.save();
        stored.clear();
        a.put("y", 2);
        stored.extend(converge(&mut core, &mut [(1, &mut a)]));
        let reloaded = DocumentCore::load(Some(&snapshot), &stored).unwrap();
        assert_eq!(reloaded.heads(), a.doc.get_heads());
        assert!(DocumentCore::load(Some(b"junk"), &[]).is_err());
    }
}
