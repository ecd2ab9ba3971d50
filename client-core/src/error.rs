//! The error every replica operation returns.

use automerge::AutomergeError;
use sync_protocol::DocumentId;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("local database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("local schema: {0}")]
    Migration(#[from] migrations::MigrationError),
    #[error("document error: {0}")]
    Automerge(#[from] AutomergeError),
    #[error("no document {0} in the local store")]
    NotFound(DocumentId),
    #[error("local data is corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("event data: {0}")]
    Model(Box<event_model::ModelError>),
    #[error("import: {0}")]
    Import(String),
    #[error("settings: {0}")]
    Settings(String),
    #[error("signed tickets: {0}")]
    TicketCode(#[from] event_model::tickets::TicketCodeError),
    #[error("event: {0}")]
    TimeZone(#[from] event_model::calendar::UnknownTimeZone),
}

impl From<event_model::ModelError> for ClientError {
    fn from(error: event_model::ModelError) -> Self {
        ClientError::Model(Box::new(error))
    }
}
