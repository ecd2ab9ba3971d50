//! The commonest message on the wire, decoded without a CBOR value tree:
//! a `sync` or `request` whose map holds exactly the five fields
//! automerge-repo writes (`type`, `senderId`, `targetId`, `documentId` as
//! text, `data`) as definite-length text and bytes. Each listener's answer
//! to a fan-out is one of these; building a `ciborium::Value` for it was
//! most of a server's decoding work. Anything else (tags, other fields,
//! indefinite lengths, a document id as bytes, a bad id) is left to the
//! generic decoder, so leniency and error messages are exactly its own.
//!
//! Hand-written because only CBOR's length headers are read here, straight
//! from the slice: ciborium-ll's decoder copies every item through a buffer.

use crate::{DocumentId, Message};

/// CBOR major types read here.
const BYTES: u8 = 2;
const TEXT: u8 = 3;
const MAP: u8 = 5;

/// The message, if `bytes` is a plain `sync` or `request` (see the module).
pub(crate) fn decode(bytes: &[u8]) -> Option<Message> {
    let mut input = bytes;
    if header(&mut input, MAP)? != 5 {
        return None;
    }
    let (mut kind, mut sender, mut target, mut document, mut data) = (None, None, None, None, None);
    for _ in 0..5 {
        let key = text(&mut input)?;
        let slot = match key {
            "type" => &mut kind,
            "senderId" => &mut sender,
            "targetId" => &mut target,
            "documentId" => &mut document,
            "data" => {
                if data.replace(item(&mut input, BYTES)?).is_some() {
                    return None;
                }
                continue;
            }
            _ => return None,
        };
        if slot.replace(text(&mut input)?).is_some() {
            return None;
        }
    }
    let sender_id = sender?.to_owned();
    let target_id = target?.to_owned();
    let document_id = DocumentId::parse(document?).ok()?;
    let data = data?.to_vec();
    match kind? {
        "sync" => Some(Message::Sync {
            sender_id,
            target_id,
            document_id,
            data,
        }),
        "request" => Some(Message::Request {
            sender_id,
            target_id,
            document_id,
            data,
        }),
        _ => None,
    }
}

fn text<'a>(input: &mut &'a [u8]) -> Option<&'a str> {
    std::str::from_utf8(item(input, TEXT)?).ok()
}

/// A definite-length text or byte string of `major` type.
fn item<'a>(input: &mut &'a [u8], major: u8) -> Option<&'a [u8]> {
    let len = usize::try_from(header(input, major)?).ok()?;
    let (item, rest) = input.split_at_checked(len)?;
    *input = rest;
    Some(item)
}

/// The length or count in a header of `major` type (definite lengths only).
fn header(input: &mut &[u8], major: u8) -> Option<u64> {
    let (&first, rest) = input.split_first()?;
    if first >> 5 != major {
        return None;
    }
    let (len, rest) = match first & 0x1f {
        n @ 0..=23 => (u64::from(n), rest),
        24 => (u64::from(*rest.first()?), &rest[1..]),
        25 => {
            let (n, rest) = rest.split_first_chunk::<2>()?;
            (u64::from(u16::from_be_bytes(*n)), rest)
        }
        26 => {
            let (n, rest) = rest.split_first_chunk::<4>()?;
            (u64::from(u32::from_be_bytes(*n)), rest)
        }
        27 => {
            let (n, rest) = rest.split_first_chunk::<8>()?;
            (u64::from_be_bytes(*n), rest)
        }
        _ => return None,
    };
    *input = rest;
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sync(kind: u8, sender: String, target: String, data: Vec<u8>) -> Message {
        let document_id = DocumentId::from_bytes([9; 16]);
        let (sender_id, target_id) = (sender, target);
        if kind == 0 {
            Message::Sync {
                sender_id,
                target_id,
                document_id,
                data,
            }
        } else {
            Message::Request {
                sender_id,
                target_id,
                document_id,
                data,
            }
        }
    }

    #[test]
    fn what_the_server_and_stock_peers_write_is_read_here() {
        for len in [0, 23, 24, 300, 70_000] {
            let message = sync(0, "peer-a".into(), "server".into(), vec![7; len]);
            assert_eq!(decode(&message.encode()), Some(message));
        }
        let request = sync(1, "a".into(), "b".into(), vec![]);
        assert_eq!(decode(&request.encode()), Some(request));
    }

    #[test]
    fn other_messages_are_left_to_the_generic_decoder() {
        let leave = Message::Leave {
            sender_id: "a".into(),
        }
        .encode();
        assert_eq!(decode(&leave), None);
        // A sixth, unknown field: the generic decoder ignores it.
        let mut extra = sync(0, "a".into(), "b".into(), vec![1]).encode();
        extra[0] = 0xa6;
        extra.extend([0x61, b'x', 0x61, b'y']);
        assert_eq!(decode(&extra), None);
        assert!(Message::decode(&extra).is_ok());
    }

    proptest! {
        /// Whatever this reads, the generic decoder reads the same; every
        /// well-formed sync and request is read here; a truncated, altered
        /// or extended one never reads as something else.
        #[test]
        fn agrees_with_the_generic_decoder(
            kind in 0u8..2,
            sender in ".{0,30}",
            target in ".{0,30}",
            data in proptest::collection::vec(any::<u8>(), 0..400),
            cut in any::<prop::sample::Index>(),
            flip in any::<(prop::sample::Index, u8)>(),
            trailing in proptest::collection::vec(any::<u8>(), 1..8),
        ) {
            let message = sync(kind, sender, target, data);
            let bytes = message.encode();
            prop_assert_eq!(decode(&bytes), Some(message));
            let mut altered = bytes.clone();
            let at = flip.0.index(altered.len());
            altered[at] ^= flip.1;
            let longer = [&bytes[..], &trailing[..]].concat();
            for input in [&bytes[..cut.index(bytes.len())], &altered[..], &longer[..]] {
                if let Some(read) = decode(input) {
                    prop_assert_eq!(Message::decode_generic(input), Ok(read));
                }
            }
        }
    }
}
