//! A settings import (`settings_model::apply_json`, and the organisation
//! configuration's): any bytes as JSON. No panic; a refused import writes
//! nothing; an accepted one is a change the server's check accepts, and
//! the document still reads back.
#![no_main]

use automerge::Automerge;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, json)) = data.split_first() else {
        return;
    };
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(json) else {
        return;
    };
    if pick % 2 == 0 {
        import(
            sync_fuzz::settings_doc(),
            |tx| settings_model::apply_json(tx, &json).is_ok(),
            settings_model::check_change,
            |doc| settings_model::to_json(doc).is_ok(),
        );
    } else {
        import(
            sync_fuzz::org_doc(),
            |tx| settings_model::org::apply_json(tx, &json).is_ok(),
            settings_model::org::check_change,
            |doc| settings_model::org::to_json(doc).is_ok(),
        );
    }
});

fn import(
    mut doc: Automerge,
    apply: impl FnOnce(&mut automerge::transaction::Transaction<'_>) -> bool,
    server_check: fn(&Automerge, &automerge::ExpandedChange) -> Result<(), String>,
    reads: fn(&Automerge) -> bool,
) {
    let before = doc.get_heads();
    let server = doc.clone();
    let mut tx = doc.transaction();
    if !apply(&mut tx) {
        tx.rollback();
        assert_eq!(doc.get_heads(), before, "a refused import wrote something");
        return;
    }
    tx.commit();
    for change in doc.get_changes(&before) {
        if let Err(why) = server_check(&server, &change.decode()) {
            panic!("the server refuses an import the client accepted: {why}");
        }
    }
    assert!(
        reads(&doc),
        "an accepted import left an unreadable document"
    );
}
