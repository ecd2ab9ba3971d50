//! Signed ticket codes through the server, which holds each event's signing
//! key: the public key fetched for a tablet (kept before the event's
//! document arrives) or put into the event by an administrator, and codes
//! issued. Checking a code at the door needs none of this: it is local
//! (`ClientCore::check_in`), offline too.

use api_types::{IssueTicketRequest, IssuedTicket, TicketKey};
use sync_protocol::DocumentId;

use crate::account::parse;
use crate::{Account, AccountError};

impl Account {
    /// The public key of `event`'s signed codes, as the server derives it.
    pub async fn ticket_key(&self, event: DocumentId) -> Result<TicketKey, AccountError> {
        parse(
            self.request(
                reqwest::Method::GET,
                &format!("/api/events/{event}/ticket-key"),
                None,
            )
            .await?,
        )
    }

    /// Fetches `event`'s ticket key and keeps it in this replica, so it
    /// admits the event's signed codes before (or without) the event's
    /// document (a tablet, when it is given an event).
    pub async fn learn_ticket_key(&self, event: DocumentId) -> Result<(), AccountError> {
        let key = self.ticket_key(event).await?;
        self.core().learn_ticket_key(event, &key.public_key)?;
        Ok(())
    }

    /// Puts the server's key for `event` into the event document, so every
    /// replica of the event checks its signed codes (administrators; done
    /// once, before the first code is handed out). Returns the key.
    pub async fn enable_signed_tickets(&self, event: DocumentId) -> Result<String, AccountError> {
        let key = self.ticket_key(event).await?;
        self.core().set_ticket_key(event, &key.public_key)?;
        Ok(key.public_key)
    }

    /// A signed code for one attendee (administrators), with its QR image.
    pub async fn issue_ticket(
        &self,
        event: DocumentId,
        request: &IssueTicketRequest,
    ) -> Result<IssuedTicket, AccountError> {
        parse(
            self.request(
                reqwest::Method::POST,
                &format!("/api/events/{event}/tickets"),
                Some(
                    serde_json::to_value(request)
                        .map_err(|e| AccountError::Protocol(e.to_string()))?,
                ),
            )
            .await?,
        )
    }
}
