use automerge::transaction::Transactable;
use automerge::{ROOT, ReadDoc};

use automerge::{Automerge, AutomergeError};

use super::*;
use crate::replica::lock_doc;
use crate::store::COMPACT_AFTER_CHUNKS;

fn get_i64(core: &ClientCore, id: DocumentId, key: &str) -> Option<i64> {
    core.read(id, |d| {
        d.get(ROOT, key).unwrap().and_then(|(v, _)| v.as_i64())
    })
    .unwrap()
}

/// Chunks in the store not yet folded into a snapshot.
fn chunk_count(core: &ClientCore) -> i64 {
    core.lock()
        .store
        .conn()
        .query_row("SELECT count(*) FROM document_chunks", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn changes_survive_reopening_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client.sqlite3");
    let id;
    {
        let core = ClientCore::open(&path).unwrap();
        id = core.create_document().unwrap();
        // Enough changes to cross the compaction threshold more than once.
        for i in 0..(COMPACT_AFTER_CHUNKS * 2 + 5) as i64 {
            core.change(id, |tx| tx.put(ROOT, "n", i)).unwrap();
        }
        // Compaction runs in the background; the chunks are folded soon.
        let chunks = || chunk_count(&core);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while chunks() >= COMPACT_AFTER_CHUNKS as i64 {
            assert!(
                std::time::Instant::now() < deadline,
                "chunks were never compacted"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    let core = ClientCore::open(&path).unwrap();
    assert_eq!(
        get_i64(&core, id, "n"),
        Some((COMPACT_AFTER_CHUNKS * 2 + 4) as i64)
    );
    assert_eq!(core.document_ids(), vec![id]);
    // Never confirmed by a server: every change is pending.
    assert_eq!(
        core.sync_status().pending_changes,
        COMPACT_AFTER_CHUNKS * 2 + 5
    );
}

/// The client store at `path` with its schema moved (up or down) to `version`.
fn client_schema_at(path: &std::path::Path, version: u32) -> rusqlite::Connection {
    let mut conn = rusqlite::Connection::open(path).unwrap();
    let mut migrator = migrations::Migrator::new(
        &migrations::CLIENT_SQLITE,
        migrations::SqliteBackend::new(&mut conn),
    )
    .unwrap();
    if migrator.current_version().unwrap() > version {
        migrator.down(Some(version)).unwrap();
    } else {
        migrator.up(Some(version)).unwrap();
    }
    conn
}

/// A store written before snapshots had a table of their own (migration 6)
/// keeps its documents: the snapshot moves, the chunks after it still apply,
/// and the down migration puts the snapshot back where it was.
#[test]
fn a_snapshot_stored_before_migration_6_is_kept_and_restored_by_its_down_migration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client.sqlite3");
    let id = DocumentId::random();
    let mut doc = Automerge::new();
    let mut tx = doc.transaction();
    tx.put(ROOT, "n", 1_i64).unwrap();
    tx.commit();
    let snapshot = doc.save();
    let before = doc.get_heads();
    let mut tx = doc.transaction();
    tx.put(ROOT, "n", 2_i64).unwrap();
    tx.commit();
    let chunk = doc.save_after(&before);
    {
        let conn = client_schema_at(&path, 5);
        conn.execute(
            "INSERT INTO documents (id, snapshot, snapshot_seq, created_at, updated_at)
             VALUES (?1, ?2, 1, '2026-01-01', '2026-01-01')",
            rusqlite::params![id.to_string(), snapshot],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO document_chunks (document_id, seq, data) VALUES (?1, 2, ?2)",
            rusqlite::params![id.to_string(), chunk],
        )
        .unwrap();
    }
    {
        let core = ClientCore::open(&path).unwrap();
        assert_eq!(get_i64(&core, id, "n"), Some(2));
        let (moved, left): (Vec<u8>, Option<Vec<u8>>) = core
            .lock()
            .store
            .conn()
            .query_row(
                "SELECT s.data, d.snapshot FROM documents d
                 JOIN document_snapshots s ON s.document_id = d.id WHERE d.id = ?1",
                rusqlite::params![id.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((moved, left), (snapshot.clone(), None));
    }
    let conn = client_schema_at(&path, 5);
    let restored: Vec<u8> = conn
        .query_row(
            "SELECT snapshot FROM documents WHERE id = ?1",
            rusqlite::params![id.to_string()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(restored, snapshot);
}

/// Text that does not compress (so a snapshot holding it is about its size).
fn incompressible(bytes: usize) -> String {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..bytes / 16)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!("{x:016x}")
        })
        .collect()
}

#[test]
fn small_chunks_wait_to_be_folded_until_they_are_worth_a_whole_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client.sqlite3");
    let core = ClientCore::open(&path).unwrap();
    let id = core.create_document().unwrap();
    let big = incompressible(200_000);
    core.change(id, |tx| tx.put(ROOT, "big", big.as_str()))
        .unwrap();
    assert!(store::compact_in_background(&path, id, 1, || None).unwrap());
    let chunks = || chunk_count(&core);
    assert_eq!(chunks(), 0);
    // 70 small changes: a few KB against a ~200 KB snapshot. The background
    // fold started after the 64th declines too (same rule), and nothing
    // else starts one before the 128th.
    for i in 0..70 {
        core.change(id, |tx| tx.put(ROOT, "n", i)).unwrap();
    }
    assert!(!store::compact_in_background(&path, id, 1, || None).unwrap());
    assert_eq!(chunks(), 70);
    // A quarter of the snapshot's size arrives: now it is worth it.
    let quarter = incompressible(60_000);
    core.change(id, |tx| tx.put(ROOT, "more", quarter.as_str()))
        .unwrap();
    assert!(store::compact_in_background(&path, id, 1, || None).unwrap());
    assert_eq!(chunks(), 0);
    drop(core);
    let core = ClientCore::open(&path).unwrap();
    assert_eq!(get_i64(&core, id, "n"), Some(69));
}

#[test]
fn worth_folding_is_in_proportion_to_the_snapshot_or_bounded_by_count() {
    assert!(store::worth_folding(64, 100_000, 400_000));
    assert!(!store::worth_folding(64, 99_999, 400_000));
    assert!(store::worth_folding(
        store::FOLD_CHUNKS_AT_MOST,
        10,
        400_000
    ));
    assert!(store::worth_folding(1, 1, 0));
}

#[test]
fn a_failed_change_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let core = ClientCore::open(dir.path().join("c.sqlite3")).unwrap();
    let id = core.create_document().unwrap();
    core.change(id, |tx| tx.put(ROOT, "a", 1)).unwrap();
    let err = core
        .change(id, |tx| {
            tx.put(ROOT, "b", 2)?;
            Err::<(), _>(AutomergeError::InvalidIndex(99))
        })
        .unwrap_err();
    assert!(matches!(err, ClientError::Automerge(_)));
    assert_eq!(get_i64(&core, id, "b"), None);
    assert_eq!(get_i64(&core, id, "a"), Some(1));
    assert!(matches!(
        core.change(DocumentId::random(), |tx| tx.put(ROOT, "a", 1)),
        Err(ClientError::NotFound(_))
    ));
}

#[test]
fn local_changes_are_announced_to_subscribers() {
    let dir = tempfile::tempdir().unwrap();
    let core = ClientCore::open(dir.path().join("c.sqlite3")).unwrap();
    let mut events = core.subscribe();
    let id = core.create_document().unwrap();
    core.change(id, |tx| tx.put(ROOT, "a", 1)).unwrap();
    match events.try_recv().unwrap() {
        DocEvent::Changed {
            document,
            origin,
            heads,
        } => {
            assert_eq!(document, id);
            assert_eq!(origin, ChangeOrigin::Local);
            assert_eq!(heads, core.heads(id).unwrap());
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn find_records_a_wanted_document_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.sqlite3");
    let wanted = DocumentId::random();
    {
        let core = ClientCore::open(&path).unwrap();
        assert!(!core.find(wanted).unwrap());
        assert!(!core.has_document(wanted));
    }
    let core = ClientCore::open(&path).unwrap();
    assert_eq!(core.sync_targets(), vec![(wanted, false, true)]);
}

/// An event with one check-in list and `attendees` tickets T0..T(n-1).
pub(crate) fn event_with_attendees(core: &ClientCore, attendees: usize) -> DocumentId {
    use event_model::document::{CheckinList, EventInfo};
    let event = core.create_event(&EventInfo::new("e", "Event")).unwrap();
    core.put_checkin_list(
        event,
        &CheckinList {
            id: "main".into(),
            name: "Main".into(),
            rules: event_model::rules::ListRules::default(),
        },
    )
    .unwrap();
    let mut csv = String::from("ticket_code,name,email\n");
    for i in 0..attendees {
        csv.push_str(&format!("T{i},Guest {i},g{i}@example.org\n"));
    }
    core.import_attendees_csv(event, csv.as_bytes(), |_| true)
        .unwrap()
        .unwrap();
    event
}

pub(crate) fn scans_in_document(core: &ClientCore, event: DocumentId) -> Vec<String> {
    core.read(event, |doc| {
        event_model::document::scans(doc)
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect()
    })
    .unwrap()
}

#[test]
fn a_scan_is_answered_and_durable_while_its_document_is_busy() {
    use event_model::rules::{Answer, Direction};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tablet.sqlite3");
    let core = ClientCore::open(&path).unwrap();
    let event = event_with_attendees(&core, 3);
    // Another thread holds the document (as a large remote batch being
    // applied does) until this thread has its answer and has copied the
    // store; meanwhile the journal writer cannot move the scan.
    let slot = core.slot(event).unwrap();
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (answered_tx, answered_rx) = std::sync::mpsc::channel::<()>();
    let (copied_tx, copied_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let _doc = lock_doc(&slot);
        held_tx.send(()).unwrap();
        // Bounded: a scan that waited for the document fails the test
        // below instead of hanging it.
        let answered = answered_rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .is_ok();
        let _ = copied_rx.recv_timeout(std::time::Duration::from_secs(30));
        answered
    });
    held_rx.recv().unwrap();
    let result = core
        .check_in(event, "T1", "main", Direction::Entry)
        .unwrap();
    answered_tx.send(()).unwrap();
    assert_eq!(result.answer, Answer::Admitted);
    let scan_id = result.scan_id.unwrap();
    // Answered from the index; counted and pending at once.
    assert_eq!(core.scan_count(event).unwrap(), 1);
    assert_eq!(core.counts(event, Some("main")).unwrap().checked_in, 1);
    let again = core
        .check_in(event, "T1", "main", Direction::Entry)
        .unwrap();
    assert!(matches!(again.answer, Answer::AlreadyCheckedIn { .. }));
    // A copy of the store taken now, as a crash would leave it: the scan
    // is in the journal, not yet in the document.
    let copy = dir.path().join("crashed.sqlite3");
    core.lock()
        .store
        .conn()
        .execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
        .unwrap();
    copied_tx.send(()).unwrap();
    assert!(
        holder.join().unwrap(),
        "the scan waited for the document's lock"
    );
    let crashed = rusqlite::Connection::open(&copy).unwrap();
    let journaled: i64 = crashed
        .query_row("SELECT count(*) FROM scan_journal", [], |r| r.get(0))
        .unwrap();
    drop(crashed);
    assert_eq!(journaled, 1);
    // Reopening writes journaled scans into the document, once.
    let reopened = ClientCore::open(&copy).unwrap();
    assert_eq!(scans_in_document(&reopened, event), vec![scan_id.clone()]);
    assert_eq!(reopened.scan_count(event).unwrap(), 1);
    assert_eq!(reopened.lock().journaled, 0);
    assert_eq!(
        journal_table::count(reopened.lock().store.conn()).unwrap(),
        0
    );
    let after = reopened
        .check_in(event, "T1", "main", Direction::Entry)
        .unwrap();
    assert!(matches!(after.answer, Answer::AlreadyCheckedIn { .. }));

    // The live replica's writer moves it into the document by itself.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    // (The count drops just after the batch is stored.)
    while scans_in_document(&core, event).is_empty() || core.lock().journaled > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "journal never written"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(scans_in_document(&core, event), vec![scan_id]);
    assert_eq!(journal_table::count(core.lock().store.conn()).unwrap(), 0);
}

#[test]
fn offline_scans_reach_the_document_in_few_changes() {
    use event_model::rules::{Answer, Direction};
    let dir = tempfile::tempdir().unwrap();
    let core = ClientCore::open(dir.path().join("tablet.sqlite3")).unwrap();
    let event = event_with_attendees(&core, 300);
    let pending_before = core.sync_status().pending_changes;
    for i in 0..300 {
        let code = format!("T{i}");
        let r = core
            .check_in(event, &code, "main", Direction::Entry)
            .unwrap();
        assert_eq!(r.answer, Answer::Admitted);
    }
    core.flush_journal().unwrap();
    assert_eq!(scans_in_document(&core, event).len(), 300);
    assert_eq!(core.scan_count(event).unwrap(), 300);
    let new_changes = core.sync_status().pending_changes - pending_before;
    assert!(
        (1..=3).contains(&new_changes),
        "300 offline scans became {new_changes} changes"
    );
    // The rebuilt index agrees with the one kept scan by scan.
    let counts = core.counts(event, Some("main")).unwrap();
    core.rebuild_event_index(event).unwrap();
    assert_eq!(core.counts(event, Some("main")).unwrap(), counts);
    assert_eq!(counts.checked_in, 300);
}

#[test]
fn a_server_message_with_an_unusable_bloom_filter_is_refused_and_sync_goes_on() {
    // The fuzz target doc_ingest found that automerge divides by zero when
    // it answers a `have` whose filter has entries but no bits; a client
    // hearing one from its server refuses it as corrupt instead.
    use automerge::sync::{BloomFilter, Have, SyncDoc};
    let dir = tempfile::tempdir().unwrap();
    let core = ClientCore::open(dir.path().join("client.sqlite3")).unwrap();
    let id = core.create_document().unwrap();
    core.change(id, |tx| tx.put(ROOT, "n", 1)).unwrap();
    let mut message = automerge::Automerge::new()
        .generate_sync_message(&mut automerge::sync::State::new())
        .unwrap();
    message.have = vec![Have {
        last_sync: Vec::new(),
        bloom: BloomFilter::try_from([1u8, 0, 7].as_slice()).unwrap(),
    }];
    let mut state = automerge::sync::State::new();
    let refused = core.receive_sync_message(id, &mut state, &message.encode());
    assert!(
        matches!(&refused, Err(ClientError::Corrupt(why)) if why.contains("bloom")),
        "{refused:?}"
    );
    // The state never saw the filter: the next message is made as usual.
    assert!(core.generate_sync_message(id, &mut state).is_some());
    assert_eq!(get_i64(&core, id, "n"), Some(1));
}

#[test]
fn the_change_that_breaks_automerges_parser_on_the_server_leaves_a_client_intact() {
    // The doc_ingest fuzz target's find: a change automerge 0.12's verifying
    // parser panics on. A client takes changes in through `load_incremental`,
    // which queues this one (its dependencies are unknown) without that
    // parse; whatever automerge does, the client's document stays as it was
    // and goes on working (its receive also runs inside `contain_panic`).
    let input = include_bytes!("../../fuzz/corpus/doc_ingest/regression-4aeda4989989");
    let dir = tempfile::tempdir().unwrap();
    let core = ClientCore::open(dir.path().join("client.sqlite3")).unwrap();
    let id = core.create_document().unwrap();
    core.change(id, |tx| tx.put(ROOT, "n", 1)).unwrap();
    let heads = core.heads(id).unwrap();
    let mut state = automerge::sync::State::new();
    let received = core.receive_sync_message(id, &mut state, &input[1..]);
    assert!(
        matches!(received, Ok(false) | Err(ClientError::Corrupt(_))),
        "{received:?}"
    );
    assert_eq!(core.heads(id).unwrap(), heads);
    core.change(id, |tx| tx.put(ROOT, "n", 2)).unwrap();
    assert_eq!(get_i64(&core, id, "n"), Some(2));
}

/// Syncs two replicas' copies of `id` directly, each message passed as the
/// server would pass it, until neither has anything to say. Returns how many
/// messages carried a whole document (automerge's answer to a replica that
/// lacks more than a third of the changes).
pub(crate) fn sync_directly(a: &ClientCore, b: &ClientCore, id: DocumentId) -> usize {
    let whole = |message: &[u8]| {
        automerge::sync::Message::decode(message)
            .unwrap()
            .changes
            .iter()
            .any(|chunk| chunk.get(8) == Some(&0))
    };
    let (mut a_state, mut b_state) = Default::default();
    let mut wholes = 0;
    for _ in 0..20 {
        let mut quiet = true;
        if let Some(message) = a.generate_sync_message(id, &mut a_state) {
            wholes += usize::from(whole(&message));
            b.receive_sync_message(id, &mut b_state, &message).unwrap();
            quiet = false;
        }
        if let Some(message) = b.generate_sync_message(id, &mut b_state) {
            wholes += usize::from(whole(&message));
            a.receive_sync_message(id, &mut a_state, &message).unwrap();
            quiet = false;
        }
        if quiet {
            return wholes;
        }
    }
    panic!("the replicas were still talking after 20 rounds");
}

#[test]
fn a_tablet_far_behind_takes_in_the_whole_document_and_keeps_its_own_scans() {
    use event_model::rules::{Answer, Direction};
    let dir = tempfile::tempdir().unwrap();
    let behind_path = dir.path().join("behind.sqlite3");
    let behind = ClientCore::open(&behind_path).unwrap();
    let busy = ClientCore::open(dir.path().join("busy.sqlite3")).unwrap();
    let event = event_with_attendees(&behind, 300);
    assert!(!busy.find(event).unwrap());
    assert_eq!(
        sync_directly(&behind, &busy, event),
        1,
        "a fresh replica gets the document"
    );

    // Apart: two scans here; 150 at the busy door in 30 changes, one of
    // them the same ticket.
    for code in ["T0", "T1"] {
        let r = behind
            .check_in(event, code, "main", Direction::Entry)
            .unwrap();
        assert_eq!(r.answer, Answer::Admitted);
    }
    behind.flush_journal().unwrap();
    let codes: Vec<String> = std::iter::once("T0".to_string())
        .chain((100..249).map(|i| format!("T{i}")))
        .collect();
    for group in codes.chunks(5) {
        for code in group {
            busy.check_in(event, code, "main", Direction::Entry)
                .unwrap();
        }
        busy.flush_journal().unwrap();
    }

    assert_eq!(
        sync_directly(&behind, &busy, event),
        1,
        "lacking most changes, the tablet is sent the whole document"
    );
    assert_eq!(behind.heads(event).unwrap(), busy.heads(event).unwrap());
    assert_eq!(scans_in_document(&behind, event).len(), 152);
    let counts = behind.counts(event, Some("main")).unwrap();
    assert_eq!(counts.checked_in, 151);
    assert_eq!(counts, busy.counts(event, Some("main")).unwrap());
    assert_eq!(behind.duplicates(event).unwrap().len(), 1);
    assert_eq!(busy.duplicates(event).unwrap().len(), 1);
    // The index kept through the load equals one rebuilt from the document.
    behind.rebuild_event_index(event).unwrap();
    assert_eq!(behind.counts(event, Some("main")).unwrap(), counts);
    // What was stored is the document held: reopened, the same.
    let heads = behind.heads(event).unwrap();
    drop(behind);
    let reopened = ClientCore::open(&behind_path).unwrap();
    assert_eq!(reopened.heads(event).unwrap(), heads);
    assert_eq!(reopened.counts(event, Some("main")).unwrap(), counts);
    assert_eq!(reopened.sync_status().pending_changes, 0);
}

#[test]
fn index_commits_skip_the_disk_sync_and_every_other_commit_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let core = ClientCore::open(dir.path().join("tablet.sqlite3")).unwrap();
    let level = |conn: &rusqlite::Connection| -> i64 {
        conn.query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap()
    };
    let mut inner = core.lock();
    let conn = inner.store.conn_mut();
    assert_eq!(level(conn), 2, "FULL");
    let inside = store::without_disk_sync(conn, |conn| Ok(level(conn))).unwrap();
    assert_eq!(inside, 1, "NORMAL while the index is written");
    assert_eq!(level(conn), 2);
    // A failed step puts it back too.
    let failed: Result<(), ClientError> =
        store::without_disk_sync(conn, |_| Err(ClientError::Corrupt("step failed".into())));
    assert!(failed.is_err());
    assert_eq!(level(conn), 2);
}

#[test]
fn a_screens_reads_do_not_take_the_store_a_scan_needs() {
    use event_model::rules::{Answer, Direction};
    let dir = tempfile::tempdir().unwrap();
    let core = ClientCore::open(dir.path().join("tablet.sqlite3")).unwrap();
    let event = event_with_attendees(&core, 3);
    let scanned = core
        .check_in(event, "T1", "main", Direction::Entry)
        .unwrap();
    assert_eq!(scanned.answer, Answer::Admitted);
    // This thread holds the store's lock, as a sync step or a scan does;
    // another thread reads what a door screen polls.
    let store = core.lock();
    let reader = core.clone();
    let (read_tx, read_rx) = std::sync::mpsc::channel();
    let reading = std::thread::spawn(move || {
        let read = (
            reader.scan_count(event).unwrap(),
            reader.counts(event, Some("main")).unwrap().checked_in,
            reader.duplicates(event).unwrap().len(),
            reader.recent_scans(event, 10).unwrap().len(),
            reader.search_attendees(event, "Guest", 10).unwrap().len(),
            reader.checkin_lists(event).unwrap().len(),
            reader.events().unwrap().len(),
        );
        read_tx.send(read).unwrap();
    });
    // Bounded: reads that waited for the store fail here instead of hanging.
    let read = read_rx.recv_timeout(std::time::Duration::from_secs(30));
    drop(store);
    reading.join().unwrap();
    assert_eq!(
        read.expect("the reads waited for the store's lock"),
        (1, 1, 0, 1, 3, 1, 1),
        "the last commit, read without the store's lock"
    );
}

#[test]
fn a_closed_store_is_whole_in_its_one_file() {
    // The fuzzing harness copies a closed store's file alone: with the
    // read-only connection closing last, the event stayed in the `-wal` file
    // and the copy had no document.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tablet.sqlite3");
    let core = ClientCore::open(&path).unwrap();
    let event = event_with_attendees(&core, 3);
    let heads = core.heads(event).unwrap();
    assert!(!heads.is_empty());
    let _ = core.scan_count(event).unwrap(); // the read-only connection in use
    drop(core);
    let copy = dir.path().join("copy.sqlite3");
    std::fs::copy(&path, &copy).unwrap();
    let reopened = ClientCore::open(&copy).unwrap();
    assert_eq!(reopened.heads(event).unwrap(), heads);
}

#[test]
fn a_remote_annulment_of_an_only_scan_takes_the_attendee_off_its_list_as_a_rebuild_does() {
    use event_model::rules::Direction;
    let dir = tempfile::tempdir().unwrap();
    let door = ClientCore::open(dir.path().join("door.sqlite3")).unwrap();
    let other = ClientCore::open(dir.path().join("other.sqlite3")).unwrap();
    let event = event_with_attendees(&door, 20);
    assert!(!other.find(event).unwrap());
    sync_directly(&door, &other, event);
    let scans: Vec<String> = ["T1", "T2", "T3"]
        .iter()
        .map(|code| {
            door.check_in(event, code, "main", Direction::Entry)
                .unwrap()
                .scan_id
                .unwrap()
        })
        .collect();
    door.flush_journal().unwrap();
    sync_directly(&door, &other, event);
    assert_eq!(other.counts(event, Some("main")).unwrap().checked_in, 3);
    assert_eq!(other.counts(event, Some("main")).unwrap().inside, 3);

    // T1's only scan is annulled at the door; the other tablet takes the
    // annulment in as a remote change: T1 is on the list no more.
    door.annul(event, &scans[0]).unwrap().unwrap();
    sync_directly(&door, &other, event);
    let counts = other.counts(event, Some("main")).unwrap();
    assert_eq!(counts.checked_in, 2);
    assert_eq!(counts.inside, 2);
    assert_eq!(counts, door.counts(event, Some("main")).unwrap());
    other.rebuild_event_index(event).unwrap();
    assert_eq!(other.counts(event, Some("main")).unwrap(), counts);

    // Later scans of an event with annulments are judged with them.
    let again = door
        .check_in(event, "T1", "main", Direction::Entry)
        .unwrap();
    assert_eq!(again.answer, event_model::rules::Answer::Admitted);
    door.flush_journal().unwrap();
    sync_directly(&door, &other, event);
    let counts = other.counts(event, Some("main")).unwrap();
    assert_eq!(counts.checked_in, 3);
    other.rebuild_event_index(event).unwrap();
    assert_eq!(other.counts(event, Some("main")).unwrap(), counts);
}

#[test]
fn a_beacon_says_whether_the_event_is_here_and_what_waits_to_go() {
    use event_model::presence::Beacon;
    let dir = tempfile::tempdir().unwrap();
    let admin = ClientCore::open(dir.path().join("admin.sqlite3")).unwrap();
    let event = event_with_attendees(&admin, 3);
    // A tablet that knows only the event's id: not ready yet.
    let fresh = ClientCore::open(dir.path().join("fresh.sqlite3")).unwrap();
    fresh.set_presence(event, Some("main"));
    let (about, bytes) = fresh.beacon().unwrap().unwrap();
    assert_eq!(about, event);
    let beacon = Beacon::decode(&bytes).unwrap();
    assert_eq!(beacon.holds_event, Some(false));
    assert_eq!(beacon.app_version.as_deref(), Some(crate::APP_VERSION));
    // The replica that holds it, with its unsent changes counted.
    admin.set_presence(event, None);
    let beacon = Beacon::decode(&admin.beacon().unwrap().unwrap().1).unwrap();
    assert_eq!(beacon.holds_event, Some(true));
    assert_eq!(
        beacon.pending_uploads,
        Some(admin.sync_status().pending_changes)
    );
    assert!(beacon.pending_uploads.unwrap() > 0, "never synced");
}

#[test]
fn the_status_keeps_the_latest_pending_count_whatever_order_counts_are_published_in() {
    // A local change and the sync client's confirmation each read the count
    // under the store's lock and publish it after; the later read wins even
    // when it is published first (a stale 20 once stayed on show for good).
    let dir = tempfile::tempdir().unwrap();
    let core = ClientCore::open(dir.path().join("c.sqlite3")).unwrap();
    let id = core.create_document().unwrap();
    core.change(id, |tx| tx.put(automerge::ROOT, "k", 1))
        .unwrap();
    let (earlier, later) = {
        let mut inner = core.lock();
        let earlier = inner.pending_count();
        inner.pending.insert(id, 0);
        (earlier, inner.pending_count())
    };
    core.publish_pending(later, |_| {});
    core.publish_pending(earlier, |_| {});
    assert_eq!(core.sync_status().pending_changes, 0);
    // In order, each shows.
    let next = core.lock().pending_count();
    core.lock().pending.insert(id, 3);
    let last = core.lock().pending_count();
    core.publish_pending(next, |_| {});
    assert_eq!(core.sync_status().pending_changes, 0);
    core.publish_pending(last, |_| {});
    assert_eq!(core.sync_status().pending_changes, 3);
}
