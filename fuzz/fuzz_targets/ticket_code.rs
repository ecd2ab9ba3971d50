//! A scanned ticket code (`event_model::tickets::verify`), as a QR scanner or
//! a person hands it over: any text, and any bytes as the record inside a
//! well-formed code. No panic; a code that verifies is exactly the code its
//! claims issue again (Ed25519 signatures are deterministic), up to case and
//! surrounding space, so no second spelling of a code passes; a public key
//! that parses prints back to itself.
#![no_main]

use event_model::tickets::{self, CODE_PREFIX};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let key = sync_fuzz::ticket_signing_key();
    let text = if pick % 2 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        // The bytes as the record and signature of a code, past the base32.
        format!("{CODE_PREFIX}{}", data_encoding::BASE32_NOPAD.encode(rest))
    };
    if let Ok(claims) = tickets::verify(&key.verifying_key(), sync_fuzz::TICKET_EVENT, &text) {
        let again = tickets::issue(&key, sync_fuzz::TICKET_EVENT, &claims)
            .expect("claims read from a code can be issued again");
        assert_eq!(
            again,
            text.trim().to_ascii_uppercase(),
            "a second spelling verified"
        );
    }
    if let Ok(public) = tickets::parse_key(&text) {
        assert_eq!(
            tickets::parse_key(&tickets::key_text(&public)).ok(),
            Some(public)
        );
    }
});
