//! Event check-in, shared by client and server: how an event document is
//! laid out (`document`), hybrid logical clocks (`hlc`), and the check-in
//! rules as pure functions of the records (`rules`), so every replica and
//! the server reach the same answers without talking to each other.

pub mod calendar;
pub mod document;
pub mod hlc;
pub mod presence;
pub mod rules;
pub mod tickets;
pub mod validate;

pub use document::{Attendee, CheckinList, EventData, EventInfo, ModelError};
pub use hlc::{Hlc, HlcClock};
pub use rules::{
    Annulment, Answer, Counts, Direction, Duplicate, Evaluation, ListRules, Presence, Scan,
    ScanOutcome, Ticket,
};
