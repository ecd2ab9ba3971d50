//! The key pairs that sign each event's ticket codes. One per event
//! document, derived from a secret the server keeps sealed in its store
//! (shared by every node, like the refresh-derivation secret), so no
//! private key is ever stored, sent or lost: the same event always gets the
//! same key, on every node, after every restart.

use ed25519_dalek::SigningKey;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sync_protocol::DocumentId;

/// The name of the shared secret in the store.
pub const SECRET_NAME: &str = "ticket_signing_key";
/// Binds the derivation to its purpose and version.
const CONTEXT: &[u8] = b"event-ticket-key/v1\0";

/// Derives events' ticket signing keys from the server's secret.
#[derive(Clone)]
pub struct TicketKeys {
    secret: std::sync::Arc<Vec<u8>>,
}

impl std::fmt::Debug for TicketKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TicketKeys(..)")
    }
}

impl TicketKeys {
    pub fn new(secret: Vec<u8>) -> Self {
        Self {
            secret: std::sync::Arc::new(secret),
        }
    }

    /// The signing key of the event whose document is `event`: its seed is
    /// HMAC-SHA256(secret, context || document id).
    pub fn signing_key(&self, event: DocumentId) -> SigningKey {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .expect("HMAC accepts keys of every length");
        mac.update(CONTEXT);
        mac.update(event.to_string().as_bytes());
        let seed: [u8; 32] = mac.finalize().into_bytes().into();
        SigningKey::from_bytes(&seed)
    }

    /// The public key of `event`, in the text form documents carry.
    pub fn public_key_text(&self, event: DocumentId) -> String {
        event_model::tickets::key_text(&self.signing_key(event).verifying_key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_has_its_own_key_and_the_same_one_every_time() {
        let keys = TicketKeys::new(vec![1; 32]);
        let (a, b) = (DocumentId::random(), DocumentId::random());
        assert_eq!(keys.public_key_text(a), keys.public_key_text(a));
        assert_ne!(keys.public_key_text(a), keys.public_key_text(b));
        let other_server = TicketKeys::new(vec![2; 32]);
        assert_ne!(keys.public_key_text(a), other_server.public_key_text(a));
        assert!(event_model::tickets::parse_key(&keys.public_key_text(a)).is_ok());
    }
}
