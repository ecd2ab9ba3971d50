//! The client's side (`ClientCore` receiving a sync message from the
//! server): any bytes, against an event on a real SQLite store. No panic;
//! after each input the store reopens to the same document, and its event
//! index agrees with the document (the same scans, and a rebuild changes
//! nothing).
#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use client_core::ClientCore;
use libfuzzer_sys::fuzz_target;
use sync_protocol::DocumentId;

/// A store holding one event, made once; each input gets a copy.
struct Template {
    dir: PathBuf,
    file: PathBuf,
    event: DocumentId,
}

static TEMPLATE: LazyLock<Template> = LazyLock::new(|| {
    // tmpfs where there is one: a store per input.
    let base = ["/dev/shm", "/tmp"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_dir())
        .expect("a temporary directory");
    let dir = base.join(format!("client-receive-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("template dir");
    let file = dir.join("template.sqlite");
    let _ = std::fs::remove_file(&file);
    let core = ClientCore::open(&file).expect("template store");
    let event = sync_fuzz::put_event_on(&core);
    drop(core);
    Template { dir, file, event }
});

fuzz_target!(|data: &[u8]| {
    sync_fuzz::let_contained_automerge_panics_unwind();
    let template = &*TEMPLATE;
    let path = template.dir.join("input.sqlite");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    std::fs::copy(&template.file, &path).expect("copy of the template");
    let event = template.event;
    let (heads, scans) = {
        let core = ClientCore::open(&path).expect("store opens");
        let _ = core.receive_from_server_for_fuzzing(event, data);
        let heads = core.heads(event).expect("heads");
        let scans = core.scan_count(event).expect("index readable");
        assert_eq!(
            scans,
            core.read_event(event).expect("event reads").scans.len() as u64,
            "index and document disagree"
        );
        (heads, scans)
    };
    let core = ClientCore::open(&path).expect("store reopens");
    assert_eq!(
        core.heads(event).expect("heads"),
        heads,
        "store lost changes"
    );
    assert_eq!(core.scan_count(event).expect("index"), scans);
    core.rebuild_event_index(event).expect("rebuild");
    assert_eq!(
        core.scan_count(event).expect("index"),
        scans,
        "rebuild differs"
    );
});
