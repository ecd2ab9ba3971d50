//! Change ingestion on the server (`doc_core::DocumentCore::receive_checked`):
//! the first byte picks a stored document and the check its writers get
//! (`sync_fuzz::fixtures`), the rest is the sync message. No panic; nothing
//! is accepted that the check refuses (replayed change by change, in the
//! order the message carried them); a reader changes nothing; what the
//! server would persist loads back to the same document; it can still
//! answer its peer.
#![no_main]

use std::collections::HashMap;
use std::sync::LazyLock;

use automerge::{Automerge, ChangeHash};
use doc_core::{DocumentCore, ReceiveError};
use libfuzzer_sys::fuzz_target;
use sync_fuzz::{Fixture, fixtures};

static FIXTURES: LazyLock<Vec<Fixture>> = LazyLock::new(fixtures);

fuzz_target!(|input: &[u8]| {
    sync_fuzz::let_contained_automerge_panics_unwind();
    let Some((&pick, message)) = input.split_first() else {
        return;
    };
    let fixture = &FIXTURES[usize::from(pick) % FIXTURES.len()];
    let mut core = DocumentCore::load(Some(&fixture.snapshot), &[]).expect("fixture loads");
    core.attach(1);
    let before = core.heads();
    match core.receive_checked(1, message, fixture.may_write, fixture.check.as_ref()) {
        // Refused before anything was applied.
        Err(ReceiveError::Decode(_) | ReceiveError::NotAttached) => {
            assert_eq!(
                core.heads(),
                before,
                "a refused message changed the document"
            );
        }
        // The shell reloads the document from the store after these.
        Err(ReceiveError::Apply(_) | ReceiveError::Panicked(_)) => {}
        Ok(received) => {
            let added: HashMap<ChangeHash, automerge::Change> = core
                .doc()
                .get_changes(&before)
                .into_iter()
                .map(|change| (change.hash(), change))
                .collect();
            assert_eq!(received.changed, !added.is_empty());
            if !fixture.may_write {
                assert!(added.is_empty(), "a reader's change was accepted");
            }
            for hash in &received.rejected {
                assert!(!added.contains_key(hash), "a refused change was applied");
            }
            if let Some(check) = &fixture.check {
                replay_checked(fixture, check, message, &added);
            }
            match core.unpersisted() {
                Some((chunk, heads)) => {
                    assert_eq!(heads, core.heads());
                    let reloaded = DocumentCore::load(Some(&fixture.snapshot), &[chunk])
                        .expect("what would be persisted loads");
                    assert_eq!(reloaded.heads(), heads, "persisted chunk lost changes");
                    core.mark_persisted(heads);
                }
                None => assert_eq!(core.heads(), before),
            }
            let _ = core.outgoing();
        }
    }
});

/// Every accepted change passes the check against the document as it was
/// with the accepted ones before it, in the order the message carried them.
fn replay_checked(
    fixture: &Fixture,
    check: &doc_core::WriteCheck,
    message: &[u8],
    added: &HashMap<ChangeHash, automerge::Change>,
) {
    let carried = doc_core::carried_changes(message);
    let mut replica = Automerge::load(&fixture.snapshot).expect("fixture loads");
    let mut replayed = 0;
    for hash in carried {
        let Some(change) = added.get(&hash) else {
            continue;
        };
        if let Err(why) = check.check(&replica, &change.decode()) {
            panic!("accepted a change the check refuses: {why}");
        }
        replica
            .apply_changes([change.clone()])
            .expect("replay applies");
        replayed += 1;
    }
    assert_eq!(
        replayed,
        added.len(),
        "accepted changes the message did not carry"
    );
}
