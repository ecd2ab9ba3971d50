//! The automerge-repo websocket protocol, version "1": one CBOR map per binary
//! websocket message, told apart by its `type` field.
//!
//! Written against a generic CBOR value rather than serde derives because stock
//! peers are lenient in what they send (document ids as text or bytes, counts as
//! floats from JavaScript, `undefined` optional fields, unknown extra fields),
//! and every deviation must become a clear [`ProtocolError`], never a panic.

use ciborium::Value;

use crate::{DocumentId, ProtocolError};

/// The only protocol version this implementation speaks.
pub const PROTOCOL_VERSION: &str = "1";

/// The metadata peers exchange in `join` and `peer`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerMetadata {
    pub storage_id: Option<String>,
    pub is_ephemeral: bool,
    /// Protocol extensions this peer speaks (e.g. [`EXT_CHANGE_REJECTED`]).
    /// Stock peers send none and ignore the field; a server uses an
    /// extension with a peer only when both listed it.
    pub extensions: Vec<String>,
}

/// Extension: the server answers a refused change with
/// [`Message::ChangeRejected`] instead of closing the connection.
pub const EXT_CHANGE_REJECTED: &str = "change-rejected/1";

/// Heads of a document as stored under one storage id (`remote-heads-changed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadsInfo {
    pub heads: Vec<String>,
    pub timestamp: u64,
}

/// One protocol message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Join {
        sender_id: String,
        supported_protocol_versions: Vec<String>,
        peer_metadata: Option<PeerMetadata>,
    },
    Peer {
        sender_id: String,
        target_id: String,
        selected_protocol_version: String,
        peer_metadata: Option<PeerMetadata>,
    },
    Leave {
        sender_id: String,
    },
    /// The sender wants the document and may have nothing of it yet.
    Request {
        sender_id: String,
        target_id: String,
        document_id: DocumentId,
        data: Vec<u8>,
    },
    Sync {
        sender_id: String,
        target_id: String,
        document_id: DocumentId,
        data: Vec<u8>,
    },
    DocUnavailable {
        sender_id: String,
        target_id: String,
        document_id: DocumentId,
    },
    Ephemeral {
        sender_id: String,
        target_id: String,
        count: u64,
        session_id: String,
        document_id: DocumentId,
        data: Vec<u8>,
    },
    Error {
        message: String,
    },
    /// (Extension `change-rejected/1`.) Changes the server refused: they
    /// are neither stored nor forwarded, and the peer should set them aside.
    ChangeRejected {
        sender_id: String,
        target_id: String,
        document_id: DocumentId,
        /// Hex change hashes.
        changes: Vec<String>,
        reason: String,
    },
    RemoteSubscriptionChange {
        sender_id: String,
        target_id: String,
        add: Vec<String>,
        remove: Vec<String>,
    },
    RemoteHeadsChanged {
        sender_id: String,
        target_id: String,
        document_id: DocumentId,
        new_heads: Vec<(String, HeadsInfo)>,
    },
}

impl Message {
    /// The `type` field of this message.
    pub fn type_name(&self) -> &'static str {
        match self {
            Message::Join { .. } => "join",
            Message::Peer { .. } => "peer",
            Message::Leave { .. } => "leave",
            Message::Request { .. } => "request",
            Message::Sync { .. } => "sync",
            Message::DocUnavailable { .. } => "doc-unavailable",
            Message::Ephemeral { .. } => "ephemeral",
            Message::Error { .. } => "error",
            Message::ChangeRejected { .. } => "x-change-rejected",
            Message::RemoteSubscriptionChange { .. } => "remote-subscription-change",
            Message::RemoteHeadsChanged { .. } => "remote-heads-changed",
        }
    }

    /// The document this message is about, if any.
    pub fn document_id(&self) -> Option<DocumentId> {
        match self {
            Message::Request { document_id, .. }
            | Message::Sync { document_id, .. }
            | Message::DocUnavailable { document_id, .. }
            | Message::Ephemeral { document_id, .. }
            | Message::ChangeRejected { document_id, .. }
            | Message::RemoteHeadsChanged { document_id, .. } => Some(*document_id),
            _ => None,
        }
    }

    /// Decodes one websocket message, refusing anything over `max_len` bytes
    /// before looking inside it.
    pub fn decode_limited(bytes: &[u8], max_len: usize) -> Result<Self, ProtocolError> {
        if bytes.len() > max_len {
            return Err(ProtocolError::TooLarge {
                size: bytes.len(),
                limit: max_len,
            });
        }
        Self::decode(bytes)
    }

    /// Decodes one websocket message.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        match crate::plain_sync::decode(bytes) {
            Some(message) => Ok(message),
            None => Self::decode_generic(bytes),
        }
    }

    /// Decodes any message through a CBOR value (see the module's comment),
    /// without [`Message::decode`]'s fast path for plain `sync` messages.
    /// Public so the fuzz targets can hold the two to the same answers.
    pub fn decode_generic(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let value: Value =
            ciborium::de::from_reader(bytes).map_err(|e| ProtocolError::Cbor(e.to_string()))?;
        let fields = Fields::new(value)?;
        let kind = fields.text("type")?;
        let message = match kind.as_str() {
            "join" => Message::Join {
                sender_id: fields.text("senderId")?,
                supported_protocol_versions: fields.text_list("supportedProtocolVersions")?,
                peer_metadata: fields.metadata()?,
            },
            "peer" => Message::Peer {
                sender_id: fields.text("senderId")?,
                target_id: fields.text("targetId")?,
                selected_protocol_version: fields.text("selectedProtocolVersion")?,
                peer_metadata: fields.metadata()?,
            },
            "leave" => Message::Leave {
                sender_id: fields.text("senderId")?,
            },
            "request" => Message::Request {
                sender_id: fields.text("senderId")?,
                target_id: fields.text("targetId")?,
                document_id: fields.document_id()?,
                data: fields.bytes("data")?,
            },
            "sync" => Message::Sync {
                sender_id: fields.text("senderId")?,
                target_id: fields.text("targetId")?,
                document_id: fields.document_id()?,
                data: fields.bytes("data")?,
            },
            "doc-unavailable" => Message::DocUnavailable {
                sender_id: fields.text("senderId")?,
                target_id: fields.text("targetId")?,
                document_id: fields.document_id()?,
            },
            "ephemeral" => Message::Ephemeral {
                sender_id: fields.text("senderId")?,
                target_id: fields.text("targetId")?,
                count: fields.unsigned("count")?,
                session_id: fields.text("sessionId")?,
                document_id: fields.document_id()?,
                data: fields.bytes("data")?,
            },
            "error" => Message::Error {
                message: fields.text("message")?,
            },
            "x-change-rejected" => Message::ChangeRejected {
                sender_id: fields.text("senderId")?,
                target_id: fields.text("targetId")?,
                document_id: fields.document_id()?,
                changes: fields.optional_text_list("changes")?,
                reason: fields.text("reason")?,
            },
            "remote-subscription-change" => Message::RemoteSubscriptionChange {
                sender_id: fields.text("senderId")?,
                target_id: fields.text("targetId")?,
                add: fields.optional_text_list("add")?,
                remove: fields.optional_text_list("remove")?,
            },
            "remote-heads-changed" => Message::RemoteHeadsChanged {
                sender_id: fields.text("senderId")?,
                target_id: fields.text("targetId")?,
                document_id: fields.document_id()?,
                new_heads: fields.new_heads()?,
            },
            other => return Err(ProtocolError::UnknownType(other.to_owned())),
        };
        Ok(message)
    }

    /// Encodes this message as automerge-repo peers expect it.
    pub fn encode(&self) -> Vec<u8> {
        let mut map: Vec<(Value, Value)> = vec![entry("type", text(self.type_name()))];
        match self {
            Message::Join {
                sender_id,
                supported_protocol_versions,
                peer_metadata,
            } => {
                map.push(entry("senderId", text(sender_id)));
                map.push(entry(
                    "supportedProtocolVersions",
                    Value::Array(supported_protocol_versions.iter().map(text).collect()),
                ));
                if let Some(meta) = peer_metadata {
                    map.push(entry("peerMetadata", encode_metadata(meta)));
                }
            }
            Message::Peer {
                sender_id,
                target_id,
                selected_protocol_version,
                peer_metadata,
            } => {
                map.push(entry("senderId", text(sender_id)));
                map.push(entry("targetId", text(target_id)));
                map.push(entry(
                    "selectedProtocolVersion",
                    text(selected_protocol_version),
                ));
                if let Some(meta) = peer_metadata {
                    map.push(entry("peerMetadata", encode_metadata(meta)));
                }
            }
            Message::Leave { sender_id } => map.push(entry("senderId", text(sender_id))),
            Message::Request {
                sender_id,
                target_id,
                document_id,
                data,
            }
            | Message::Sync {
                sender_id,
                target_id,
                document_id,
                data,
            } => {
                map.push(entry("senderId", text(sender_id)));
                map.push(entry("targetId", text(target_id)));
                map.push(entry("documentId", text(document_id.to_string())));
                map.push(entry("data", Value::Bytes(data.clone())));
            }
            Message::DocUnavailable {
                sender_id,
                target_id,
                document_id,
            } => {
                map.push(entry("senderId", text(sender_id)));
                map.push(entry("targetId", text(target_id)));
                map.push(entry("documentId", text(document_id.to_string())));
            }
            Message::Ephemeral {
                sender_id,
                target_id,
                count,
                session_id,
                document_id,
                data,
            } => {
                map.push(entry("senderId", text(sender_id)));
                map.push(entry("targetId", text(target_id)));
                map.push(entry("count", Value::Integer((*count).into())));
                map.push(entry("sessionId", text(session_id)));
                map.push(entry("documentId", text(document_id.to_string())));
                map.push(entry("data", Value::Bytes(data.clone())));
            }
            Message::Error { message } => map.push(entry("message", text(message))),
            Message::ChangeRejected {
                sender_id,
                target_id,
                document_id,
                changes,
                reason,
            } => {
                map.push(entry("senderId", text(sender_id)));
                map.push(entry("targetId", text(target_id)));
                map.push(entry("documentId", text(document_id.to_string())));
                map.push(entry(
                    "changes",
                    Value::Array(changes.iter().map(text).collect()),
                ));
                map.push(entry("reason", text(reason)));
            }
            Message::RemoteSubscriptionChange {
                sender_id,
                target_id,
                add,
                remove,
            } => {
                map.push(entry("senderId", text(sender_id)));
                map.push(entry("targetId", text(target_id)));
                map.push(entry("add", Value::Array(add.iter().map(text).collect())));
                map.push(entry(
                    "remove",
                    Value::Array(remove.iter().map(text).collect()),
                ));
            }
            Message::RemoteHeadsChanged {
                sender_id,
                target_id,
                document_id,
                new_heads,
            } => {
                map.push(entry("senderId", text(sender_id)));
                map.push(entry("targetId", text(target_id)));
                map.push(entry("documentId", text(document_id.to_string())));
                let heads = new_heads
                    .iter()
                    .map(|(storage, info)| {
                        (
                            text(storage),
                            Value::Map(vec![
                                entry("heads", Value::Array(info.heads.iter().map(text).collect())),
                                entry("timestamp", Value::Integer(info.timestamp.into())),
                            ]),
                        )
                    })
                    .collect();
                map.push(entry("newHeads", Value::Map(heads)));
            }
        }
        let mut out = Vec::new();
        ciborium::ser::into_writer(&Value::Map(map), &mut out)
            .expect("writing CBOR into a Vec cannot fail");
        out
    }
}

fn text(s: impl AsRef<str>) -> Value {
    Value::Text(s.as_ref().to_owned())
}

fn entry(key: &str, value: Value) -> (Value, Value) {
    (text(key), value)
}

fn encode_metadata(meta: &PeerMetadata) -> Value {
    let mut map = vec![entry("isEphemeral", Value::Bool(meta.is_ephemeral))];
    if let Some(storage) = &meta.storage_id {
        map.push(entry("storageId", text(storage)));
    }
    if !meta.extensions.is_empty() {
        map.push(entry(
            "extensions",
            Value::Array(meta.extensions.iter().map(text).collect()),
        ));
    }
    Value::Map(map)
}

/// Strips CBOR tags (cbor-x may tag typed arrays) so the value underneath is seen.
fn untag(value: &Value) -> &Value {
    match value {
        Value::Tag(_, inner) => untag(inner),
        other => other,
    }
}

/// The top-level map of a message, looked up by field name.
struct Fields(Vec<(String, Value)>);

impl Fields {
    fn new(value: Value) -> Result<Self, ProtocolError> {
        let Value::Map(entries) = value else {
            return Err(ProtocolError::NotAMap);
        };
        let mut fields = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            // Non-text keys are no field of the protocol; ignore them like unknown fields.
            if let Value::Text(key) = key {
                fields.push((key, value));
            }
        }
        Ok(Self(fields))
    }

    fn get(&self, name: &'static str) -> Option<&Value> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| untag(value))
            .filter(|value| !matches!(value, Value::Null))
    }

    fn require(&self, name: &'static str) -> Result<&Value, ProtocolError> {
        self.get(name).ok_or(ProtocolError::MissingField(name))
    }

    fn text(&self, name: &'static str) -> Result<String, ProtocolError> {
        match self.require(name)? {
            Value::Text(s) => Ok(s.clone()),
            _ => Err(ProtocolError::WrongType(name)),
        }
    }

    fn bytes(&self, name: &'static str) -> Result<Vec<u8>, ProtocolError> {
        match self.require(name)? {
            Value::Bytes(b) => Ok(b.clone()),
            _ => Err(ProtocolError::WrongType(name)),
        }
    }

    fn unsigned(&self, name: &'static str) -> Result<u64, ProtocolError> {
        match self.require(name)? {
            Value::Integer(i) => u64::try_from(*i).map_err(|_| ProtocolError::WrongType(name)),
            // JavaScript numbers may arrive as floats.
            Value::Float(f) if f.is_finite() && *f >= 0.0 && f.fract() == 0.0 => Ok(*f as u64),
            _ => Err(ProtocolError::WrongType(name)),
        }
    }

    fn text_list(&self, name: &'static str) -> Result<Vec<String>, ProtocolError> {
        match self.require(name)? {
            Value::Array(items) => items
                .iter()
                .map(|item| match untag(item) {
                    Value::Text(s) => Ok(s.clone()),
                    _ => Err(ProtocolError::WrongType(name)),
                })
                .collect(),
            _ => Err(ProtocolError::WrongType(name)),
        }
    }

    fn optional_text_list(&self, name: &'static str) -> Result<Vec<String>, ProtocolError> {
        if self.get(name).is_none() {
            return Ok(Vec::new());
        }
        self.text_list(name)
    }

    fn document_id(&self) -> Result<DocumentId, ProtocolError> {
        match self.require("documentId")? {
            Value::Text(s) => DocumentId::parse(s),
            Value::Bytes(b) => {
                let array: [u8; 16] = b
                    .as_slice()
                    .try_into()
                    .map_err(|_| ProtocolError::InvalidDocumentId(format!("{} bytes", b.len())))?;
                Ok(DocumentId::from_bytes(array))
            }
            _ => Err(ProtocolError::WrongType("documentId")),
        }
    }

    fn metadata(&self) -> Result<Option<PeerMetadata>, ProtocolError> {
        let Some(value) = self.get("peerMetadata").or_else(|| self.get("metadata")) else {
            return Ok(None);
        };
        let Value::Map(entries) = value else {
            return Err(ProtocolError::WrongType("peerMetadata"));
        };
        let mut meta = PeerMetadata::default();
        for (key, value) in entries {
            match (untag(key), untag(value)) {
                (Value::Text(k), Value::Text(v)) if k == "storageId" => {
                    meta.storage_id = Some(v.clone())
                }
                (Value::Text(k), Value::Bool(v)) if k == "isEphemeral" => meta.is_ephemeral = *v,
                (Value::Text(k), Value::Array(items)) if k == "extensions" => {
                    meta.extensions = items
                        .iter()
                        .filter_map(|item| match untag(item) {
                            Value::Text(name) => Some(name.clone()),
                            _ => None,
                        })
                        .collect();
                }
                _ => {}
            }
        }
        Ok(Some(meta))
    }

    fn new_heads(&self) -> Result<Vec<(String, HeadsInfo)>, ProtocolError> {
        let Value::Map(entries) = self.require("newHeads")? else {
            return Err(ProtocolError::WrongType("newHeads"));
        };
        let mut out = Vec::with_capacity(entries.len());
        for (storage, info) in entries {
            let (Value::Text(storage), Value::Map(info)) = (untag(storage), untag(info)) else {
                return Err(ProtocolError::WrongType("newHeads"));
            };
            let inner = Fields(
                info.iter()
                    .filter_map(|(k, v)| match k {
                        Value::Text(k) => Some((k.clone(), v.clone())),
                        _ => None,
                    })
                    .collect(),
            );
            out.push((
                storage.clone(),
                HeadsInfo {
                    heads: inner.text_list("heads")?,
                    timestamp: inner.unsigned("timestamp")?,
                },
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn doc() -> DocumentId {
        DocumentId::from_bytes([7; 16])
    }

    fn samples() -> Vec<Message> {
        vec![
            Message::Join {
                sender_id: "a".into(),
                supported_protocol_versions: vec!["1".into()],
                peer_metadata: Some(PeerMetadata {
                    storage_id: Some("s".into()),
                    is_ephemeral: false,
                    extensions: vec![EXT_CHANGE_REJECTED.into()],
                }),
            },
            Message::Peer {
                sender_id: "b".into(),
                target_id: "a".into(),
                selected_protocol_version: "1".into(),
                peer_metadata: None,
            },
            Message::Leave {
                sender_id: "a".into(),
            },
            Message::Request {
                sender_id: "a".into(),
                target_id: "b".into(),
                document_id: doc(),
                data: vec![1, 2, 3],
            },
            Message::Sync {
                sender_id: "a".into(),
                target_id: "b".into(),
                document_id: doc(),
                data: vec![],
            },
            Message::DocUnavailable {
                sender_id: "b".into(),
                target_id: "a".into(),
                document_id: doc(),
            },
            Message::Ephemeral {
                sender_id: "a".into(),
                target_id: "b".into(),
                count: 3,
                session_id: "x".into(),
                document_id: doc(),
                data: vec![9],
            },
            Message::Error {
                message: "bad".into(),
            },
            Message::ChangeRejected {
                sender_id: "s".into(),
                target_id: "c".into(),
                document_id: DocumentId::random(),
                changes: vec!["ab".into(), "cd".into()],
                reason: "staff may only add scans".into(),
            },
            Message::RemoteSubscriptionChange {
                sender_id: "a".into(),
                target_id: "b".into(),
                add: vec!["s1".into()],
                remove: vec![],
            },
            Message::RemoteHeadsChanged {
                sender_id: "a".into(),
                target_id: "b".into(),
                document_id: doc(),
                new_heads: vec![(
                    "s1".into(),
                    HeadsInfo {
                        heads: vec!["h".into()],
                        timestamp: 12,
                    },
                )],
            },
        ]
    }

    #[test]
    fn every_message_type_round_trips() {
        for message in samples() {
            let decoded = Message::decode(&message.encode()).unwrap();
            assert_eq!(decoded, message);
        }
    }

    fn encode_value(value: Value) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::ser::into_writer(&value, &mut out).unwrap();
        out
    }

    #[test]
    fn accepts_what_javascript_peers_send() {
        // A float count, a tagged byte string, a null optional field and an extra field.
        let bytes = encode_value(Value::Map(vec![
            entry("type", text("ephemeral")),
            entry("senderId", text("js")),
            entry("targetId", text("srv")),
            entry("count", Value::Float(4.0)),
            entry("sessionId", text("sess")),
            entry("documentId", text(doc().to_string())),
            entry("data", Value::Tag(64, Box::new(Value::Bytes(vec![1])))),
            entry("extra", Value::Bool(true)),
        ]));
        match Message::decode(&bytes).unwrap() {
            Message::Ephemeral { count, data, .. } => {
                assert_eq!(count, 4);
                assert_eq!(data, vec![1]);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn reports_what_is_wrong() {
        assert!(matches!(
            Message::decode(&[0xff, 0x00]),
            Err(ProtocolError::Cbor(_))
        ));
        assert!(matches!(
            Message::decode(&encode_value(Value::Array(vec![]))),
            Err(ProtocolError::NotAMap)
        ));
        assert!(matches!(
            Message::decode(&encode_value(Value::Map(vec![entry("type", text("gossip"))]))),
            Err(ProtocolError::UnknownType(t)) if t == "gossip"
        ));
        assert!(matches!(
            Message::decode(&encode_value(Value::Map(vec![
                entry("type", text("sync")),
                entry("senderId", text("a")),
                entry("targetId", text("b")),
                entry("documentId", text("not-an-id")),
                entry("data", Value::Bytes(vec![])),
            ]))),
            Err(ProtocolError::InvalidDocumentId(_))
        ));
        assert!(matches!(
            Message::decode(&encode_value(Value::Map(vec![entry("type", text("join"))]))),
            Err(ProtocolError::MissingField("senderId"))
        ));
        assert!(matches!(
            Message::decode_limited(&[0u8; 10], 9),
            Err(ProtocolError::TooLarge { size: 10, limit: 9 })
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Message::decode(&bytes);
        }
    }
}
