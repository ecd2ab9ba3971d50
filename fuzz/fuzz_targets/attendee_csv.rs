//! The attendee CSV import's reader (`client_core::attendee_csv::read`): any
//! bytes. No panic; every data row is either an attendee or refused with its
//! line; no two attendees share a ticket code or an id (a second one would
//! overwrite the first in the event document: an attendee lost); no code
//! is empty.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(Some(read)) = client_core::attendee_csv::read(data, |_| true) else {
        return;
    };
    assert_eq!(
        read.attendees.len() + read.rejected.len(),
        read.rows as usize,
        "a row was neither imported nor refused"
    );
    let mut codes = HashSet::new();
    let mut ids = HashSet::new();
    for attendee in &read.attendees {
        assert!(!attendee.ticket_code.is_empty(), "empty ticket code");
        assert!(codes.insert(&attendee.ticket_code), "ticket code twice");
        assert!(
            ids.insert(&attendee.id),
            "attendee id twice: {:?}",
            attendee.id
        );
    }
    for refused in &read.rejected {
        assert!(refused.line >= 2, "refused row on line {}", refused.line);
    }
});
