//! Signed ticket codes at the door, over real SQLite files: the answers a
//! signed code gets, and a fresh tablet that admits one before the event's
//! document has reached it and agrees with the others once it has.

use ed25519_dalek::SigningKey;
use event_model::rules::{Answer, Direction};
use event_model::tickets::{self, TicketClaims};
use sync_protocol::DocumentId;

use crate::ClientCore;
use crate::tests::{event_with_attendees, scans_in_document, sync_directly};
use crate::time::now_ms;

const HOUR_MS: i64 = 3_600_000;

fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

fn key_text() -> String {
    tickets::key_text(&signing_key().verifying_key())
}

fn code(event: DocumentId, attendee_id: &str, issued_at_ms: i64) -> String {
    code_with(event, &signing_key(), attendee_id, issued_at_ms, None, None)
}

fn code_with(
    event: DocumentId,
    key: &SigningKey,
    attendee_id: &str,
    issued_at_ms: i64,
    valid_from_ms: Option<i64>,
    valid_until_ms: Option<i64>,
) -> String {
    let claims = TicketClaims {
        attendee_id: attendee_id.into(),
        ticket_type: "day".into(),
        issued_at_ms,
        valid_from_ms,
        valid_until_ms,
    };
    tickets::issue(key, &event.to_string(), &claims).unwrap()
}

fn attendee_id(core: &ClientCore, event: DocumentId, code: &str) -> String {
    let found = core.search_attendees(event, code, 1).unwrap();
    found[0].attendee_id.clone()
}

#[test]
fn a_signed_code_admits_once_and_forged_foreign_dated_and_revoked_codes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let core = ClientCore::open(dir.path().join("door.sqlite3")).unwrap();
    let event = event_with_attendees(&core, 3);
    let now = now_ms();
    let guest = attendee_id(&core, event, "T0");
    let signed = code(event, &guest, now - HOUR_MS);
    let scan = |code: &str| {
        core.check_in(event, code, "main", Direction::Entry)
            .unwrap()
    };

    // No key in the event yet: the code is as unknown as any other.
    let before_key = scan(&signed);
    assert_eq!(before_key.answer, Answer::UnknownTicket);
    assert!(before_key.scan_id.is_none() && !before_key.verified_by_signature);
    assert!(core.set_ticket_key(event, "ed25519:nonsense").is_err());
    core.set_ticket_key(event, &key_text()).unwrap();

    let first = scan(&signed);
    assert_eq!(first.answer, Answer::Admitted);
    assert!(first.verified_by_signature && first.scan_id.is_some());
    assert_eq!(
        first.attendee.unwrap().name,
        "Guest 0",
        "the local record, where held"
    );
    let again = scan(&signed);
    assert_eq!(
        again.answer,
        Answer::AlreadyCheckedIn {
            scan: first.scan_id.clone().unwrap()
        }
    );
    // The plain code of the same attendee is the same ticket.
    assert!(matches!(scan("T0").answer, Answer::AlreadyCheckedIn { .. }));

    // Altered in one character, signed by another key, for another event.
    let mut altered: Vec<char> = signed.chars().collect();
    let at = altered.len() / 2;
    altered[at] = if altered[at] == 'A' { 'B' } else { 'A' };
    let altered: String = altered.into_iter().collect();
    assert_eq!(scan(&altered).answer, Answer::InvalidSignature);
    let forged = code_with(
        event,
        &SigningKey::from_bytes(&[7; 32]),
        &guest,
        now,
        None,
        None,
    );
    assert_eq!(scan(&forged).answer, Answer::InvalidSignature);
    let elsewhere = tickets::issue(
        &signing_key(),
        &DocumentId::random().to_string(),
        &TicketClaims {
            attendee_id: guest.clone(),
            ticket_type: "day".into(),
            issued_at_ms: now,
            valid_from_ms: None,
            valid_until_ms: None,
        },
    )
    .unwrap();
    assert_eq!(scan(&elsewhere).answer, Answer::OtherEvent);

    // Someone this tablet has no record of, vouched for by the key.
    let stranger = uuid::Uuid::new_v4().to_string();
    let early = code_with(
        event,
        &signing_key(),
        &stranger,
        now,
        Some(now + HOUR_MS),
        None,
    );
    assert!(matches!(scan(&early).answer, Answer::NotYetValid { .. }));
    let late = code_with(
        event,
        &signing_key(),
        &stranger,
        now - 2 * HOUR_MS,
        None,
        Some(now - HOUR_MS),
    );
    assert!(matches!(scan(&late).answer, Answer::Expired { .. }));
    let lost = code(event, &stranger, now - HOUR_MS);
    core.revoke_signed_codes(event, &stranger).unwrap();
    let refused = scan(&lost);
    assert_eq!(refused.answer, Answer::Revoked);
    assert!(refused.scan_id.is_none());
    // Its replacement, issued after the revocation, is good.
    let replacement = code(event, &stranger, now_ms() + 2_000);
    let admitted = scan(&replacement);
    assert_eq!(admitted.answer, Answer::Admitted);
    assert!(admitted.verified_by_signature);
    let shown = admitted.attendee.unwrap();
    assert_eq!(
        (shown.attendee_id.as_str(), shown.ticket_type.as_str()),
        (stranger.as_str(), "day")
    );
    assert!(shown.name.is_empty(), "no record here: what the code says");

    // Both admitted scans are ordinary scan records in the document.
    core.flush_journal().unwrap();
    let scans = scans_in_document(&core, event);
    assert!(scans.contains(&first.scan_id.unwrap()));
    assert!(scans.contains(&admitted.scan_id.unwrap()));
}

#[test]
fn a_fresh_tablet_admits_signed_codes_before_its_download_and_agrees_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let admin = ClientCore::open(dir.path().join("admin.sqlite3")).unwrap();
    let event = event_with_attendees(&admin, 50);
    admin.set_ticket_key(event, &key_text()).unwrap();
    let now = now_ms();
    let guest = attendee_id(&admin, event, "T1");
    let signed = code(event, &guest, now - HOUR_MS);

    // The fresh tablet knows the event's id and its key (from the server),
    // nothing else.
    let tablet_path = dir.path().join("fresh.sqlite3");
    let tablet = ClientCore::open(&tablet_path).unwrap();
    tablet.learn_ticket_key(event, &key_text()).unwrap();
    assert!(!tablet.has_document(event));
    let scan = |core: &ClientCore, code: &str| {
        core.check_in(event, code, "main", Direction::Entry)
            .unwrap()
    };
    let admitted = scan(&tablet, &signed);
    assert_eq!(admitted.answer, Answer::Admitted);
    assert!(admitted.verified_by_signature);
    assert!(
        tablet.recent_scans(event, 1).unwrap()[0].by_signature,
        "the record says so too"
    );
    assert!(matches!(
        scan(&tablet, &signed).answer,
        Answer::AlreadyCheckedIn { .. }
    ));
    assert_eq!(
        scan(&tablet, "T2").answer,
        Answer::UnknownTicket,
        "plain codes wait for the list"
    );
    let forged = code_with(
        event,
        &SigningKey::from_bytes(&[9; 32]),
        &guest,
        now,
        None,
        None,
    );
    assert_eq!(scan(&tablet, &forged).answer, Answer::InvalidSignature);
    // Its scan waits, durable, for a document to go into.
    assert_eq!(tablet.flush_journal().unwrap(), 0);
    assert_eq!(tablet.sync_status().pending_changes, 1);

    // Meanwhile the same guest walks through the admin's door with the
    // plain code: one of the two entries will be a duplicate, everywhere.
    assert_eq!(scan(&admin, "T1").answer, Answer::Admitted);

    // A restart before the download loses nothing.
    drop(tablet);
    let tablet = ClientCore::open(&tablet_path).unwrap();
    assert_eq!(tablet.sync_status().pending_changes, 1);

    admin.flush_journal().unwrap();
    sync_directly(&admin, &tablet, event);
    tablet.flush_journal().unwrap();
    sync_directly(&admin, &tablet, event);
    assert_eq!(tablet.heads(event).unwrap(), admin.heads(event).unwrap());
    assert_eq!(tablet.sync_status().pending_changes, 0);
    assert!(scans_in_document(&admin, event).contains(&admitted.scan_id.clone().unwrap()));
    assert!(
        admin
            .recent_scans(event, 10)
            .unwrap()
            .iter()
            .any(|s| Some(&s.scan_id) == admitted.scan_id.as_ref() && s.by_signature),
        "the mark travels with the record"
    );
    // Same counts and the same duplicate on both, and as a rebuild says.
    let counts = admin.counts(event, Some("main")).unwrap();
    assert_eq!(counts.checked_in, 1);
    assert_eq!(tablet.counts(event, Some("main")).unwrap(), counts);
    let duplicates = |core: &ClientCore| -> Vec<String> {
        core.duplicates(event)
            .unwrap()
            .into_iter()
            .map(|d| d.scan.scan_id)
            .collect()
    };
    assert_eq!(duplicates(&admin).len(), 1);
    assert_eq!(duplicates(&tablet), duplicates(&admin));
    // The report counts the guest whose scan came before their record.
    let checked_in_by_type = |core: &ClientCore| -> u64 {
        let report = core.checkin_report(event, 15).unwrap().unwrap();
        report.ticket_types.iter().map(|t| t.checked_in).sum()
    };
    assert_eq!(checked_in_by_type(&tablet), 1);
    assert_eq!(checked_in_by_type(&admin), 1);
    tablet.rebuild_event_index(event).unwrap();
    assert_eq!(checked_in_by_type(&tablet), 1);
    assert_eq!(tablet.counts(event, Some("main")).unwrap(), counts);
    assert_eq!(duplicates(&tablet), duplicates(&admin));
    // Now the tablet holds the list: its plain codes answer too.
    assert_eq!(scan(&tablet, "T2").answer, Answer::Admitted);
}
