//! Test helper for the mobile binding tests (Python, Kotlin), which drive a
//! real `sync-server` process and need an event to scan and a way to see
//! what the server holds. An admin's client-core replica, with an admin API
//! token, does both; every answer is one JSON line on stdout.
//!
//!   event-fixture seed    URL TOKEN EVENT_ID ATTENDEES STORE_PATH
//!       creates the event (lists `main`, `vip` and `later`, a door that
//!       opens in six hours; tickets T-0000..., T-0999 unpaid; ticket type
//!       `day` with a note for staff),
//!       registers it, uploads it: {"document_id": "..."}
//!   event-fixture inspect URL TOKEN DOCUMENT_ID STORE_PATH
//!       downloads the event from the server into a fresh replica:
//!       {"counts": {...}, "main": {...}, "scans": N, "duplicates": [...]}
//!
//! With `wss://` URLs, `SYNC_CA_FILE` names the PEM of the CA to trust.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use client_core::{ClientCore, DocumentId, ServerTrust, SyncConfig};
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(60);

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > LIMIT {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The CA of `SYNC_CA_FILE`, for the API client and for sync.
fn trust() -> anyhow::Result<(reqwest::Client, ServerTrust)> {
    let Some(path) = std::env::var_os("SYNC_CA_FILE") else {
        return Ok((sync_tests::http_client(None), ServerTrust::default()));
    };
    let pem = std::fs::read_to_string(&path).context("SYNC_CA_FILE")?;
    let http = sync_tests::http_client(Some(&pem));
    Ok((http, ServerTrust::default().with_extra_ca_pem(&pem)?))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (http, trust) = trust()?;
    let usage = "usage: event-fixture seed URL TOKEN EVENT_ID ATTENDEES STORE | inspect URL TOKEN DOCUMENT STORE";
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["seed", url, token, event_id, attendees, store] => {
            let attendees: usize = attendees.parse().context("ATTENDEES")?;
            let admin = ClientCore::open(store)?;
            let event = sync_tests::seed_event(
                &admin,
                event_id,
                "Tablet day",
                &[("main", "Main entrance"), ("vip", "VIP door")],
                attendees,
            );
            sync_tests::add_later_door(&admin, event);
            // Attention at the door: the signed codes' ticket type `day`
            // carries a note; T-0999 has not paid.
            admin.put_ticket_type(
                event,
                &client_core::event_model::rules::TicketType {
                    name: "day".into(),
                    attention: Some("Day ticket: stamp the hand".into()),
                    ..Default::default()
                },
            )?;
            admin.put_attendee(
                event,
                &client_core::event_model::Attendee {
                    id: "T-0999".into(),
                    ticket_code: "T-0999".into(),
                    name: "Guest 999".into(),
                    email: "guest999@example.org".into(),
                    unpaid: true,
                    ..Default::default()
                },
            )?;
            let api = url
                .replacen("wss://", "https://", 1)
                .replacen("ws://", "http://", 1)
                .replace("/sync", "");
            let answer = http
                .post(format!("{api}/api/documents"))
                .bearer_auth(token)
                .json(&json!({ "document_id": event.to_string(), "kind": "event", "scope": event_id }))
                .send()
                .await?;
            if !answer.status().is_success() {
                bail!("registering the event: {}", answer.text().await?);
            }
            let sync = admin.start_sync(SyncConfig::new(url, token).with_trust(trust.clone()));
            wait_for("the event to reach the server", || {
                let status = admin.sync_status();
                status.connected && status.pending_changes == 0
            })
            .await?;
            sync.stop().await;
            println!("{}", json!({ "document_id": event.to_string() }));
        }
        ["inspect", url, token, document, store] => {
            let event = DocumentId::parse(document)?;
            let replica = ClientCore::open(store)?;
            let sync = replica.start_sync(SyncConfig::new(url, token).with_trust(trust.clone()));
            replica.find(event)?;
            // Downloaded once connected and nothing has changed for a second.
            let mut last = None;
            let mut stable_since = Instant::now();
            wait_for("the event to download", || {
                let now = replica
                    .counts(event, None)
                    .ok()
                    .filter(|c| c.expected > 0)
                    .map(|c| {
                        (
                            c,
                            replica.recent_scans(event, 1_000_000).map(|s| s.len()).ok(),
                        )
                    });
                if now != last {
                    last = now;
                    stable_since = Instant::now();
                }
                replica.sync_status().connected
                    && last.is_some()
                    && stable_since.elapsed() > Duration::from_secs(1)
            })
            .await?;
            sync.stop().await;
            let counts = replica.counts(event, None)?;
            let main = replica.counts(event, Some("main"))?;
            let duplicates: Vec<_> = replica
                .duplicates(event)?
                .into_iter()
                .map(|d| {
                    json!({
                        "ticket_code": d.ticket_code,
                        "device_id": d.scan.device_id,
                        "original_device_id": d.original.map(|o| o.device_id),
                    })
                })
                .collect();
            let scans = replica.recent_scans(event, 1_000_000)?.len();
            println!(
                "{}",
                json!({
                    "counts": counts, "main": main, "scans": scans, "duplicates": duplicates,
                })
            );
        }
        _ => bail!("{usage}"),
    }
    Ok(())
}
