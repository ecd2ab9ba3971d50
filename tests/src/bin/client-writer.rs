//! Test helper: writes numbered changes into one document of a client store
//! and prints `committed N` after each change returns (it is then durable).
//! The durability test kills this process with SIGKILL mid-stream.
//!
//!   client-writer STORE_PATH COUNT

use std::io::Write;

use automerge::ROOT;
use automerge::transaction::Transactable;
use client_core::ClientCore;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: client-writer STORE_PATH COUNT"))?;
    let count: u64 = args.next().unwrap_or_else(|| "1000000".into()).parse()?;
    let core = ClientCore::open(&path)?;
    let doc = match core.document_ids().first() {
        Some(id) => *id,
        None => core.create_document()?,
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "document {doc}")?;
    for i in 0..count {
        core.change(doc, |tx| tx.put(ROOT, format!("n{i}"), i as i64))?;
        writeln!(out, "committed {i}")?;
        out.flush()?;
    }
    Ok(())
}
