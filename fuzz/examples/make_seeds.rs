//! Writes the seed corpora (`fuzz/corpus/<target>/`) from real sync
//! sessions: a tablet's automerge document makes real changes (scans,
//! annulments, attendees, door rules of time and count, ticket types, the
//! time zone, settings) and syncs them with a server's
//! `DocumentCore` holding each fixture until both agree; every message
//! each way is kept, and wrapped in the websocket envelope for the wire
//! decoder. Run from `fuzz/`: `cargo run --example make_seeds`. Deterministic:
//! the fixtures and the tablet use fixed actors and times.

use std::path::Path;

use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{Automerge, ROOT};
use doc_core::DocumentCore;
use event_model::document;
use sync_fuzz::{annulment, attendee, commit, fixtures, scan, text};
use sync_protocol::{DocumentId, Message, PeerMetadata};

fn main() -> std::io::Result<()> {
    let corpus = Path::new("corpus");
    let mut seeds = Seeds::default();
    for (pick, fixture) in fixtures().iter().enumerate() {
        let mut tablet = Automerge::load(&fixture.snapshot)
            .expect("fixture loads")
            .with_actor(automerge::ActorId::from(b"fixture-tablet".as_slice()));
        let mut core = DocumentCore::load(Some(&fixture.snapshot), &[]).expect("core loads");
        core.attach(1);
        let mut state = sync::State::new();
        for round in 0..4 {
            let mut tx = tablet.transaction();
            match fixture.name {
                "event-admin" | "event-staff" | "event-reader" => {
                    let mut made = scan(round + 1, round % 3);
                    made.payment_taken = round == 1;
                    made.by_signature = round == 3;
                    document::put_scan(&mut tx, &made).expect("scan");
                    if round == 2 {
                        document::put_annulment(&mut tx, &annulment(0, 1)).expect("annul");
                        let mut flagged = attendee(10 + round);
                        flagged.attention = Some("ID check".into());
                        flagged.unpaid = true;
                        document::put_attendee(&mut tx, &flagged).expect("attendee");
                    }
                    if round == 3 {
                        // An administrator's rules of time and count.
                        sync_fuzz::put_door_rules(&mut tx);
                    }
                }
                "settings" => settings_model::set(
                    &mut tx,
                    "theme",
                    &text(["dark", "light", "system", "dark"][round]),
                )
                .expect("setting"),
                "org-config" => settings_model::org::set(
                    &mut tx,
                    "organisation_name",
                    &text(&format!("Org {round}")),
                )
                .expect("org setting"),
                _ => {
                    tx.put(ROOT, format!("k{round}"), round as i64)
                        .expect("put");
                }
            }
            commit(tx);
            // Until both sides are quiet.
            for _ in 0..10 {
                let mut quiet = true;
                if let Some(message) = tablet.generate_sync_message(&mut state) {
                    quiet = false;
                    let bytes = message.encode();
                    seeds.ingest(pick as u8, &bytes);
                    core.receive_checked(1, &bytes, fixture.may_write, fixture.check.as_ref())
                        .expect("receives");
                }
                if let Some((_, heads)) = core.unpersisted() {
                    core.mark_persisted(heads);
                }
                for out in core.outgoing() {
                    quiet = false;
                    if fixture.name.starts_with("event") {
                        seeds.client.push(out.data.clone());
                    }
                    seeds.wire_sync(&out.data);
                    tablet
                        .receive_sync_message(
                            &mut state,
                            sync::Message::decode(&out.data).expect("decodes"),
                        )
                        .expect("tablet receives");
                }
                if quiet {
                    break;
                }
            }
        }
    }
    seeds.other_wire_messages();
    seeds.settings_json();
    seeds.csv();
    seeds.tickets();
    seeds.write(corpus)
}

#[derive(Default)]
struct Seeds {
    ingest: Vec<Vec<u8>>,
    client: Vec<Vec<u8>>,
    wire: Vec<Vec<u8>>,
    settings: Vec<Vec<u8>>,
    csv: Vec<Vec<u8>>,
    tickets: Vec<Vec<u8>>,
}

fn doc_id() -> DocumentId {
    DocumentId::from_bytes(sync_fuzz::EVENT_ID)
}

impl Seeds {
    /// Signed codes as text (pick 0) and as the record inside (pick 1): a
    /// UUID attendee with dates, a text id without, and a public key.
    fn tickets(&mut self) {
        use event_model::tickets::{self, TicketClaims};
        let key = sync_fuzz::ticket_signing_key();
        let claims = [
            TicketClaims {
                attendee_id: "0b9e3c1c-2f4d-4b8e-9d4a-6f1e2a3b4c5d".into(),
                ticket_type: "day".into(),
                issued_at_ms: 1_780_000_000_000,
                valid_from_ms: Some(1_780_100_000_000),
                valid_until_ms: Some(1_780_200_000_000),
            },
            TicketClaims {
                attendee_id: "A-0042".into(),
                ticket_type: String::new(),
                issued_at_ms: 1_780_000_000_000,
                valid_from_ms: None,
                valid_until_ms: None,
            },
        ];
        for claims in &claims {
            let code = tickets::issue(&key, sync_fuzz::TICKET_EVENT, claims).expect("issue");
            self.tickets
                .push([b"\x00".as_slice(), code.as_bytes()].concat());
            let record = data_encoding::BASE32_NOPAD
                .decode(&code.as_bytes()[tickets::CODE_PREFIX.len()..])
                .expect("base32");
            self.tickets.push([b"\x01".as_slice(), &record].concat());
        }
        let public = tickets::key_text(&key.verifying_key());
        self.tickets
            .push([b"\x00".as_slice(), public.as_bytes()].concat());
    }

    fn ingest(&mut self, pick: u8, message: &[u8]) {
        let mut input = vec![pick];
        input.extend_from_slice(message);
        self.ingest.push(input);
        self.wire_sync(message);
    }

    fn wire_sync(&mut self, data: &[u8]) {
        self.wire.push(
            Message::Sync {
                sender_id: "tablet-1".into(),
                target_id: "server".into(),
                document_id: doc_id(),
                data: data.to_vec(),
            }
            .encode(),
        );
    }

    fn other_wire_messages(&mut self) {
        let metadata = Some(PeerMetadata {
            storage_id: Some("storage-1".into()),
            is_ephemeral: false,
            extensions: vec![sync_protocol::EXT_CHANGE_REJECTED.into()],
        });
        let messages = [
            Message::Join {
                sender_id: "tablet-1".into(),
                supported_protocol_versions: vec!["1".into()],
                peer_metadata: metadata.clone(),
            },
            Message::Peer {
                sender_id: "server".into(),
                target_id: "tablet-1".into(),
                selected_protocol_version: "1".into(),
                peer_metadata: metadata,
            },
            Message::Leave {
                sender_id: "tablet-1".into(),
            },
            Message::Request {
                sender_id: "tablet-1".into(),
                target_id: "server".into(),
                document_id: doc_id(),
                data: Automerge::new()
                    .generate_sync_message(&mut sync::State::new())
                    .expect("first message")
                    .encode(),
            },
            Message::DocUnavailable {
                sender_id: "server".into(),
                target_id: "tablet-1".into(),
                document_id: doc_id(),
            },
            Message::Ephemeral {
                sender_id: "tablet-1".into(),
                target_id: "server".into(),
                count: 3,
                session_id: "session-1".into(),
                document_id: doc_id(),
                data: b"presence".to_vec(),
            },
            Message::Error {
                message: "document too large".into(),
            },
            Message::ChangeRejected {
                sender_id: "server".into(),
                target_id: "tablet-1".into(),
                document_id: doc_id(),
                changes: vec!["ab".repeat(32)],
                reason: "not your list".into(),
            },
            Message::RemoteSubscriptionChange {
                sender_id: "tablet-1".into(),
                target_id: "server".into(),
                add: vec!["storage-2".into()],
                remove: Vec::new(),
            },
            Message::RemoteHeadsChanged {
                sender_id: "server".into(),
                target_id: "tablet-1".into(),
                document_id: doc_id(),
                new_heads: vec![(
                    "storage-1".into(),
                    sync_protocol::HeadsInfo {
                        heads: vec!["cd".repeat(32)],
                        timestamp: 1_767_225_600_000,
                    },
                )],
            },
        ];
        self.wire.extend(messages.iter().map(Message::encode));
    }

    fn settings_json(&mut self) {
        let settings = serde_json::json!({
            "theme": "dark", "language": "pt-BR", "default_checkin_list": "main",
            "sounds": true, "notifications": false
        });
        let org = serde_json::json!({
            "organisation_name": "Fuzz Fest Ltd", "support_contact": "help@example.org",
            "default_language": "en", "default_annul_window_minutes": 15,
            "kiosk_auto_lock_minutes": 5, "kiosk_pin_length": 6, "duplicate_alert_sound": true
        });
        for (pick, json) in [(0u8, settings), (1, org)] {
            let mut input = vec![pick];
            input.extend(serde_json::to_vec(&json).expect("json"));
            self.settings.push(input);
        }
    }

    fn csv(&mut self) {
        let files: [&str; 5] = [
            "ticket_code,name,email\nT-1,Ana,ana@example.org\nT-2,Bo,bo@example.org\n",
            "ticket_code,name,email,ticket_type,attendee_id,lists,revoked\n\
             T-1,\"Lee, Jo\",jo@example.org,vip,a1,main;side,no\n\
             T-2,Max,,day,a2,,yes\n\
             T-1,Again,again@example.org,day,a3,,0\n\
             ,No code,x@example.org,day,,,\n\
             T-4,Bad,not-an-email,day,,,\n\
             T-5,Flag,f@example.org,day,,,maybe\n",
            "Ticket_Code;Name\nT-1;semicolons are one field\n",
            "name,email\nno,code@example.org\n",
            "ticket_code,name,attention,unpaid\nT-1,Ana,ID check: 18+,yes\nT-2,Bo,,no\nT-3,Cy,,perhaps\n",
        ];
        self.csv.extend(files.iter().map(|f| f.as_bytes().to_vec()));
    }

    fn write(&self, corpus: &Path) -> std::io::Result<()> {
        for (target, inputs) in [
            ("doc_ingest", &self.ingest),
            ("client_receive", &self.client),
            ("wire_message", &self.wire),
            ("settings_json", &self.settings),
            ("attendee_csv", &self.csv),
            ("ticket_code", &self.tickets),
        ] {
            let dir = corpus.join(target);
            std::fs::create_dir_all(&dir)?;
            for (n, input) in inputs.iter().enumerate() {
                std::fs::write(dir.join(format!("seed-{n:03}")), input)?;
            }
            println!("{target}: {} seeds", inputs.len());
        }
        Ok(())
    }
}
