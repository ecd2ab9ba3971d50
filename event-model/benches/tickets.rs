//! A signed ticket code checked at the door: the signature verified under
//! the event's key and the code's claims read, one code at a time, as
//! percentiles (the goal: p99 <= 0.5 ms per scan).
//!
//! `cargo bench -p event-model --bench tickets -- [CODES]` (default 20000).

#![allow(clippy::unwrap_used)] // a bench: any failure should stop it loudly

use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use event_model::tickets::{self, TicketClaims};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn main() {
    let codes: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);
    let key = SigningKey::from_bytes(&[7; 32]);
    let public = key.verifying_key();
    let event = "2Jj6VQh9Tdb3ZfZ8Dmbiw2KSqdCw";
    let made: Vec<String> = (0..codes)
        .map(|n| {
            let claims = TicketClaims {
                attendee_id: uuid::Uuid::from_u128(n as u128).hyphenated().to_string(),
                ticket_type: "day".into(),
                issued_at_ms: 1_780_000_000_000,
                valid_from_ms: Some(1_780_100_000_000),
                valid_until_ms: Some(1_780_200_000_000),
            };
            tickets::issue(&key, event, &claims).unwrap()
        })
        .collect();
    let mut times = Vec::with_capacity(codes);
    for code in &made {
        let started = Instant::now();
        let claims = tickets::verify(&public, event, code).unwrap();
        times.push(started.elapsed());
        std::hint::black_box(claims);
    }
    times.sort();
    println!(
        "{{\"codes\": {codes}, \"code_chars\": {}, \"verify_p50_us\": {:.1}, \"verify_p99_us\": {:.1}, \"verify_max_us\": {:.1}}}",
        made[0].len(),
        percentile(&times, 0.5).as_secs_f64() * 1e6,
        percentile(&times, 0.99).as_secs_f64() * 1e6,
        times[times.len() - 1].as_secs_f64() * 1e6,
    );
}
