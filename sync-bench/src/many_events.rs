//! `many-events`: a server holding many events' documents, a few of them in
//! use at once, measuring its memory while they are in use and after every
//! one has gone idle.
//!
//! `--events` event documents of `--attendees` attendees each are put on the
//! server (each a fork of one generated event with a change of its own, so
//! the bench need not build 1,000 events from scratch; the server holds and
//! loads each as a document of its own). Then `--active` of them are opened
//! at once by a reader each that downloads the whole event and writes one
//! change, and stays connected; then all close and the bench samples the
//! server's memory for `--hold-secs` (start the server with a short
//! `SYNC_EVICT_AFTER_SECS` to see idle documents leave).

use std::time::{Duration, Instant};

use anyhow::Context;
use automerge::Automerge;
use client_core::DocumentId;
use client_core::event_model::document::{self, Attendee, CheckinList, EventInfo};
use client_core::event_model::rules::ListRules;
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};

use crate::{Args, Client, join_document, seed_document, server_rss_mib};

/// Seeds and readers in flight at once (the server and the bench share the
/// machine's cores; more only queues).
const IN_FLIGHT: usize = 4;

/// One event of `attendees`, as an admin would have imported it.
fn template_event(attendees: usize) -> anyhow::Result<Automerge> {
    let mut doc = Automerge::new();
    let mut tx = doc.transaction();
    document::init(&mut tx, &EventInfo::new("template", "Template event"))?;
    document::put_list(
        &mut tx,
        &CheckinList {
            id: "main".into(),
            name: "Main".into(),
            rules: ListRules::default(),
        },
    )?;
    for i in 0..attendees {
        document::put_attendee(
            &mut tx,
            &Attendee {
                id: format!("a{i}"),
                ticket_code: format!("T{i:07}"),
                name: format!("Guest {i}"),
                email: format!("guest{i}@example.org"),
                ticket_type: "standard".into(),
                revoked: false,
                lists: Vec::new(),
                ..Attendee::default()
            },
        )?;
    }
    tx.commit();
    Ok(doc)
}

/// Event `index`: the template under a name of its own (one change by a new actor).
fn event_bytes(template: &Automerge, index: usize) -> anyhow::Result<Vec<u8>> {
    let mut doc = template.fork();
    let mut tx = doc.transaction();
    document::set_info(
        &mut tx,
        &EventInfo::new(format!("event-{index}"), format!("Event {index}")),
    )?;
    tx.commit();
    Ok(doc.save())
}

fn max_rss(peak: &mut Option<f64>, pid: Option<u32>) {
    if let Some(now) = server_rss_mib(pid) {
        *peak = Some(peak.map_or(now, |p: f64| p.max(now)));
    }
}

/// Opens one event, writes a change into it and keeps the connection.
async fn open_event(args: &Args, index: usize, id: DocumentId) -> anyhow::Result<Client> {
    let mut client = join_document(args, index, id).await?;
    let mut tx = client.doc.transaction();
    document::set_info(
        &mut tx,
        &EventInfo::new(
            format!("event-{index}"),
            format!("Event {index} (doors open)"),
        ),
    )?;
    tx.commit();
    client
        .push_until_acknowledged("closed while writing")
        .await?;
    // Only the connection is needed from here on: the bench need not hold
    // 200 copies of the events.
    client.doc = Automerge::new();
    Ok(client)
}

pub async fn many_events(args: &Args) -> anyhow::Result<Value> {
    let pid = args.server_pid;
    let rss_before = server_rss_mib(pid);
    let started = Instant::now();
    let template = template_event(args.attendees)?;
    let template_bytes = template.save().len();
    let build_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut ids = Vec::with_capacity(args.events);
    let mut errors = Vec::new();
    let mut peak_seeding = None;
    let mut seeded = stream::iter(0..args.events)
        .map(|i| {
            let template = &template;
            async move {
                let id = DocumentId::random();
                let bytes = event_bytes(template, i)?;
                seed_document(args, id, &bytes)
                    .await
                    .with_context(|| format!("seeding event {i}"))?;
                anyhow::Ok(id)
            }
        })
        .buffer_unordered(IN_FLIGHT);
    while let Some(result) = seeded.next().await {
        match result {
            Ok(id) => ids.push(id),
            Err(e) => errors.push(format!("{e:#}")),
        }
        if ids.len() % 10 == 0 {
            max_rss(&mut peak_seeding, pid);
        }
        if ids.len() % 100 == 0 {
            eprintln!(
                "many-events: {} of {} events seeded, server RSS {:?} MiB",
                ids.len(),
                args.events,
                server_rss_mib(pid)
            );
        }
    }
    drop(seeded);
    let seed_s = started.elapsed().as_secs_f64();
    let rss_after_seeding = server_rss_mib(pid);

    let active = args.active.min(ids.len());
    let started = Instant::now();
    let mut open = Vec::with_capacity(active);
    let mut peak_active = None;
    let mut opened = stream::iter(ids.iter().take(active).enumerate())
        .map(|(i, id)| open_event(args, i, *id))
        .buffer_unordered(IN_FLIGHT);
    while let Some(result) = opened.next().await {
        match result {
            Ok(client) => open.push(client),
            Err(e) => errors.push(format!("{e:#}")),
        }
        max_rss(&mut peak_active, pid);
    }
    drop(opened);
    let open_s = started.elapsed().as_secs_f64();
    let rss_active = server_rss_mib(pid);
    let in_use = open.len();

    for mut client in open {
        let _ = futures_util::SinkExt::close(&mut client.socket).await;
    }
    let mut rss_idle = server_rss_mib(pid);
    for _ in 0..args.hold_secs {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss_idle = server_rss_mib(pid);
    }
    Ok(json!({
        "mode": "many-events",
        "events": args.events,
        "events_seeded": ids.len(),
        "attendees_per_event": args.attendees,
        "event_document_bytes": template_bytes,
        "build_s": build_s,
        "seed_s": seed_s,
        "active": in_use,
        "open_s": open_s,
        "server_rss_mib_before": rss_before,
        "server_rss_mib_seeding_peak": peak_seeding,
        "server_rss_mib_after_seeding": rss_after_seeding,
        "server_rss_mib": rss_active,
        "server_rss_mib_active_peak": peak_active,
        "server_rss_mib_after_idle": rss_idle,
        "idle_wait_s": args.hold_secs,
        "errors": errors,
    }))
}
