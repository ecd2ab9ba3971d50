//! Signed ticket codes: the event's public key, and codes issued by the
//! server, which holds the private key (`event_model::tickets` says what a
//! code carries).

use serde::{Deserialize, Serialize};

/// `GET /api/events/{document_id}/ticket-key`: the key an event's signed
/// codes are checked with, for a tablet to keep before the event's document
/// has reached it (the document carries the same key once an administrator
/// has put it there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TicketKey {
    pub document_id: String,
    /// `ed25519:` and the 32-byte public key in base32.
    pub public_key: String,
}

/// `POST /api/events/{document_id}/tickets` (administrators).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IssueTicketRequest {
    /// At most 64 bytes (a UUID in its usual form takes 16 in the code).
    pub attendee_id: String,
    /// At most 64 bytes.
    #[serde(default)]
    pub ticket_type: String,
    /// Unix ms; the code carries seconds (rounded down).
    #[serde(default)]
    pub valid_from_ms: Option<i64>,
    /// Unix ms, the first moment it is no longer valid (rounded up to a second).
    #[serde(default)]
    pub valid_until_ms: Option<i64>,
}

/// A code the server signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IssuedTicket {
    /// `TK1:` and base32: what the QR code holds.
    pub code: String,
    /// The key that checks it (the event's).
    pub public_key: String,
    /// When it was issued (Unix ms, to the second): revoking the attendee
    /// later refuses it; a code issued after a revocation is good.
    pub issued_at_ms: i64,
    /// The code as a QR code, PNG, base64, for printing.
    pub qr_png_base64: String,
}
