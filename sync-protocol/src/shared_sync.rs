//! One `sync` message sent to many peers: a server's fan-out sends the same
//! automerge bytes about the same document from the same sender to every
//! listener, and only `targetId` differs. Encoding the whole message per
//! peer (a CBOR value tree, a base58 document id, a copy of the data) was a
//! tenth of the server's work at 500 listeners; here everything but the
//! target is encoded once and each peer's message is three copies.

use ciborium_ll::{Encoder, Header};

use crate::DocumentId;

/// A `sync` message with everything but `targetId` encoded. What
/// [`SharedSync::encode_for`] returns is byte for byte what
/// [`crate::Message::Sync`] encodes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedSync {
    /// The map header, `type`, `senderId`, and the `targetId` key.
    before_target: Vec<u8>,
    /// `documentId` and `data`.
    after_target: Vec<u8>,
}

impl SharedSync {
    pub fn new(sender_id: &str, document_id: DocumentId, data: &[u8]) -> Self {
        // Writing into a Vec cannot fail (its error type is `Infallible`).
        let mut before_target = Vec::with_capacity(32 + sender_id.len());
        let mut cbor = Encoder::from(&mut before_target);
        let _ = cbor.push(Header::Map(Some(5)));
        for text in ["type", "sync", "senderId", sender_id, "targetId"] {
            let _ = cbor.text(text, None);
        }
        let document_id = document_id.to_string();
        let mut after_target = Vec::with_capacity(24 + document_id.len() + data.len());
        let mut cbor = Encoder::from(&mut after_target);
        let _ = cbor.text("documentId", None);
        let _ = cbor.text(&document_id, None);
        let _ = cbor.text("data", None);
        let _ = cbor.bytes(data, None);
        Self {
            before_target,
            after_target,
        }
    }

    /// The message as it goes to `target_id`.
    pub fn encode_for(&self, target_id: &str) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(
            self.before_target.len() + 9 + target_id.len() + self.after_target.len(),
        );
        bytes.extend_from_slice(&self.before_target);
        let _ = Encoder::from(&mut bytes).text(target_id, None);
        bytes.extend_from_slice(&self.after_target);
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;

    fn as_message(sender: &str, target: &str, document_id: DocumentId, data: &[u8]) -> Vec<u8> {
        Message::Sync {
            sender_id: sender.to_owned(),
            target_id: target.to_owned(),
            document_id,
            data: data.to_vec(),
        }
        .encode()
    }

    #[test]
    fn each_peer_gets_what_the_whole_message_encodes_to() {
        let document_id = DocumentId::random();
        // Lengths on both sides of CBOR's 1-, 2- and 4-byte length headers.
        for len in [0, 23, 24, 255, 256, 65_535, 65_536, 100_000] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let shared = SharedSync::new("server-1", document_id, &data);
            for target in ["", "t", "a-peer-with-a-rather-long-id-0123456789abcdef"] {
                assert_eq!(
                    shared.encode_for(target),
                    as_message("server-1", target, document_id, &data),
                    "data of {len} bytes to `{target}`"
                );
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn any_ids_and_data_encode_as_the_message_does(
            sender in ".{0,40}",
            target in ".{0,300}",
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
        ) {
            let document_id = DocumentId::random();
            let bytes = SharedSync::new(&sender, document_id, &data).encode_for(&target);
            proptest::prop_assert_eq!(&bytes, &as_message(&sender, &target, document_id, &data));
            proptest::prop_assert_eq!(
                Message::decode(&bytes).unwrap(),
                Message::Sync { sender_id: sender, target_id: target, document_id, data }
            );
        }
    }
}
