//! The websocket message decoder (`sync-protocol`): any bytes. No panic; the
//! fast path for plain `sync` messages answers exactly as the generic
//! decoder does; whatever decodes encodes back to itself; a shared `sync`
//! envelope encodes to the same bytes as the message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sync_protocol::{Message, SharedSync};

fuzz_target!(|data: &[u8]| {
    let decoded = Message::decode(data);
    assert_eq!(
        decoded,
        Message::decode_generic(data),
        "fast path disagrees"
    );
    let Ok(message) = decoded else {
        return;
    };
    let encoded = message.encode();
    assert_eq!(
        Message::decode(&encoded).as_ref(),
        Ok(&message),
        "does not survive encoding"
    );
    if let Message::Sync {
        sender_id,
        target_id,
        document_id,
        data,
    } = &message
    {
        let shared = SharedSync::new(sender_id, *document_id, data);
        assert_eq!(
            shared.encode_for(target_id),
            encoded,
            "shared envelope differs"
        );
    }
});
