use automerge::transaction::Transactable;
use automerge::{ROOT, ReadDoc};

use super::*;

fn get_i64(core: &ClientCore, id: DocumentId, key: &str) -> Option<i64> {
    core.read(id, |d| {
        d.get(ROOT, key).unwrap().and_then(|(v, _)| v.as_i64())
    })
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
        let chunks = || -> i64 {
            core.lock()
                .store
                .conn()
                .query_row("SELECT count(*) FROM document_chunks", [], |r| r.get(0))
                .unwrap()
        };
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
