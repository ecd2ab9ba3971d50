//! The wire contract shared by `client-core` and `sync-server`: the
//! automerge-repo websocket protocol v1 and automerge-repo document ids.

pub mod doc_layout;
mod document_id;
mod message;
mod plain_sync;
mod shared_sync;
pub mod sync_data;

pub use document_id::{DocumentId, URL_PREFIX};
pub use message::{EXT_CHANGE_REJECTED, HeadsInfo, Message, PROTOCOL_VERSION, PeerMetadata};
pub use shared_sync::SharedSync;

/// The `error` message a server sends, before closing, to a connection
/// whose access token has expired: the client refreshes and reconnects.
pub const ACCESS_TOKEN_EXPIRED: &str = "access token expired";

/// Default largest websocket message either side accepts (16 MiB).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// What can be wrong with a message from the wire.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("message is not valid CBOR: {0}")]
    Cbor(String),
    #[error("message is not a CBOR map")]
    NotAMap,
    #[error("message has no `{0}` field")]
    MissingField(&'static str),
    #[error("field `{0}` has the wrong type")]
    WrongType(&'static str),
    #[error("unknown message type `{0}`")]
    UnknownType(String),
    #[error("invalid document id `{0}`")]
    InvalidDocumentId(String),
    #[error("message of {size} bytes is over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
}
