//! Store benchmarks: the write path of every accepted change batch, loading a
//! document made of many chunks, and compaction.
//!
//!   cargo bench -p sync-server --bench store

#![allow(
    clippy::unwrap_used,
    reason = "a measuring tool: a failed step ends the run, whose figures would mean nothing"
)]

use automerge::transaction::Transactable;
use automerge::{Automerge, ROOT};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sync_protocol::DocumentId;
use sync_server::store::{SqliteStore, Store};

/// `n` small changes, each saved as its own chunk (as the server writes them).
fn chunks(n: usize) -> (Vec<Vec<u8>>, Automerge) {
    let mut doc = Automerge::new();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let before = doc.get_heads();
        let mut tx = doc.transaction();
        tx.put(ROOT, format!("scan-{i}"), i as i64).unwrap();
        tx.commit();
        out.push(doc.save_after(&before));
    }
    (out, doc)
}

fn store_benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(SqliteStore::open(dir.path(), false).unwrap());
    let (sample_chunks, doc) = chunks(1000);

    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(1));
    group.bench_function("append_chunk", |b| {
        let id = DocumentId::random();
        let mut i = 0;
        b.iter(|| {
            let chunk = sample_chunks[i % sample_chunks.len()].clone();
            i += 1;
            runtime
                .block_on(store.documents.append_chunk(id, chunk))
                .unwrap()
        })
    });

    let loaded = DocumentId::random();
    runtime.block_on(async {
        for chunk in &sample_chunks {
            store
                .documents
                .append_chunk(loaded, chunk.clone())
                .await
                .unwrap();
        }
    });
    group.throughput(Throughput::Elements(sample_chunks.len() as u64));
    group.bench_function("load_document_1000_chunks", |b| {
        b.iter(|| {
            runtime
                .block_on(store.documents.load_document(loaded))
                .unwrap()
                .unwrap()
        })
    });

    let snapshot = doc.save();
    group.throughput(Throughput::Elements(1));
    group.bench_function("compact_1000_chunks", |b| {
        b.iter_batched(
            || {
                let id = DocumentId::random();
                runtime.block_on(async {
                    let mut last = 0;
                    for chunk in sample_chunks.iter().take(1000) {
                        last = store
                            .documents
                            .append_chunk(id, chunk.clone())
                            .await
                            .unwrap();
                    }
                    (id, last)
                })
            },
            |(id, last)| {
                runtime
                    .block_on(store.documents.compact(id, snapshot.clone(), last))
                    .unwrap()
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = store_benches
}
criterion_main!(benches);
