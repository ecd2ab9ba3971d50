//! One store test suite, run against every backend: the embedded SQLite store
//! and PostgreSQL (a real cluster started for the test).

use std::collections::BTreeSet;
use std::sync::Arc;

use sync_protocol::DocumentId;
use sync_server::audit::NewAuditEntry;
use sync_server::auth::Role;
use sync_server::store::{PostgresStore, SqliteStore, Store};
use sync_tests::PgCluster;

async fn exercise(store: Arc<dyn Store>) {
    // Documents: snapshot + chunks, sequence numbers, compaction.
    let id = DocumentId::random();
    assert!(store.load_document(id).await.unwrap().is_none());
    assert_eq!(store.append_chunk(id, vec![1]).await.unwrap(), 1);
    assert_eq!(store.append_chunk(id, vec![2, 2]).await.unwrap(), 2);
    let doc = store.load_document(id).await.unwrap().unwrap();
    assert_eq!(doc.snapshot, None);
    assert_eq!(doc.chunks, vec![vec![1], vec![2, 2]]);
    assert_eq!(doc.last_seq, 2);
    store.compact(id, vec![9], 2).await.unwrap();
    assert_eq!(store.chunk_count(id).await.unwrap(), 0);
    assert_eq!(
        store.append_chunk(id, vec![3]).await.unwrap(),
        3,
        "sequence numbers go on after compaction"
    );
    let doc = store.load_document(id).await.unwrap().unwrap();
    assert_eq!(doc.snapshot, Some(vec![9]));
    assert_eq!(doc.chunks, vec![vec![3]]);
    assert_eq!(doc.last_seq, 3);
    // Compacting only part keeps the rest.
    store.append_chunk(id, vec![4]).await.unwrap();
    store.compact(id, vec![8], 3).await.unwrap();
    assert_eq!(
        store.load_document(id).await.unwrap().unwrap().chunks,
        vec![vec![4]]
    );

    // Catching up: after a seq past the snapshot, only newer chunks; after a
    // seq the snapshot folded away, the snapshot too.
    let after = store.chunks_after(id, 3).await.unwrap();
    assert_eq!(
        (after.snapshot, after.chunks, after.through_seq),
        (None, vec![(4, vec![4])], 4)
    );
    let after = store.chunks_after(id, 1).await.unwrap();
    assert_eq!(
        (after.snapshot, after.chunks, after.through_seq),
        (Some(vec![8]), vec![(4, vec![4])], 4)
    );
    let after = store.chunks_after(id, 4).await.unwrap();
    assert!(after.snapshot.is_none() && after.chunks.is_empty());
    assert!(
        store
            .chunks_after(DocumentId::random(), 0)
            .await
            .unwrap()
            .chunks
            .is_empty()
    );

    // Concurrent writers on one document get distinct, gap-free sequence numbers.
    let hot = DocumentId::random();
    let writers: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.append_chunk(hot, vec![i as u8]).await.unwrap() })
        })
        .collect();
    let mut seqs = BTreeSet::new();
    for w in writers {
        assert!(seqs.insert(w.await.unwrap()));
    }
    assert_eq!(seqs, (1..=16).collect::<BTreeSet<u64>>());
    assert_eq!(
        store
            .load_document(hot)
            .await
            .unwrap()
            .unwrap()
            .chunks
            .len(),
        16
    );

    let mut listed = store.list_documents().await.unwrap();
    listed.sort();
    let mut expected = vec![id, hot];
    expected.sort();
    assert_eq!(listed, expected);

    // API keys: by hash only, role kept.
    let key = store
        .create_api_key("ci", Role::Staff, "hash-1")
        .await
        .unwrap();
    assert_eq!(
        store.authenticate_api_key("hash-1").await.unwrap(),
        Some(key)
    );
    assert_eq!(store.authenticate_api_key("hash-2").await.unwrap(), None);

    // Audit log: appends chain up, pages read back in order, the head follows.
    assert_eq!(store.audit_head().await.unwrap().0, 0);
    for i in 0..5 {
        let entry =
            NewAuditEntry::new("cli", "test.event", "ok").details(serde_json::json!({ "i": i }));
        assert_eq!(store.append_audit(entry).await.unwrap().seq, i + 1);
    }
    let page = store.audit_entries(2, 2).await.unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 4]);
    assert_eq!(page[0].entry.details, serde_json::json!({ "i": 2 }));
    assert_eq!(
        sync_server::audit::verify_store(store.as_ref())
            .await
            .unwrap(),
        5
    );

    // Users: case-insensitive unique emails, TOTP steps accepted once, recovery codes used once.
    let user = store
        .create_user(" Ada@Example.org ", Role::Admin, "$argon2id$stub")
        .await
        .unwrap();
    assert_eq!(user.email, "ada@example.org");
    assert!(matches!(
        store
            .create_user("ADA@example.org", Role::Member, "x")
            .await,
        Err(sync_server::store::StoreError::Conflict(_))
    ));
    let found = store
        .user_by_email("ada@EXAMPLE.org")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (found.id.as_str(), found.role, found.totp_confirmed),
        (user.id.as_str(), Role::Admin, false)
    );
    assert!(
        store
            .user_by_email("nobody@example.org")
            .await
            .unwrap()
            .is_none()
    );
    store
        .set_totp_secret(&user.id, "JBSWY3DPEHPK3PXP")
        .await
        .unwrap();
    assert!(store.accept_totp_step(&user.id, 100, true).await.unwrap());
    assert!(
        !store.accept_totp_step(&user.id, 100, false).await.unwrap(),
        "same step twice"
    );
    assert!(
        !store.accept_totp_step(&user.id, 99, false).await.unwrap(),
        "earlier step"
    );
    assert!(store.accept_totp_step(&user.id, 101, false).await.unwrap());
    let found = store
        .user_by_email("ada@example.org")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            found.totp_secret.as_deref(),
            found.totp_confirmed,
            found.totp_last_step
        ),
        (Some("JBSWY3DPEHPK3PXP"), true, Some(101))
    );
    // Re-enrolling resets confirmation and the replay window.
    store
        .set_totp_secret(&user.id, "KRSXG5CTMVRXEZLU")
        .await
        .unwrap();
    let found = store
        .user_by_email("ada@example.org")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((found.totp_confirmed, found.totp_last_step), (false, None));
    store
        .replace_recovery_codes(&user.id, &["h1".into(), "h2".into()])
        .await
        .unwrap();
    assert!(store.consume_recovery_code(&user.id, "h1").await.unwrap());
    assert!(
        !store.consume_recovery_code(&user.id, "h1").await.unwrap(),
        "used twice"
    );
    assert!(
        !store.consume_recovery_code(&user.id, "h9").await.unwrap(),
        "unknown"
    );
    store
        .replace_recovery_codes(&user.id, &["h3".into()])
        .await
        .unwrap();
    assert!(
        !store.consume_recovery_code(&user.id, "h2").await.unwrap(),
        "replaced codes are gone"
    );
    assert!(store.consume_recovery_code(&user.id, "h3").await.unwrap());

    let ready = store.readiness().await.unwrap();
    assert_eq!(ready.schema_version, ready.expected_version);
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_chain_stays_one_chain_with_writers_on_two_nodes() {
    let (_cluster, url) = PgCluster::start_with_database().await;
    let node1: Arc<dyn Store> = Arc::new(PostgresStore::connect(&url).await.unwrap());
    let node2: Arc<dyn Store> = Arc::new(PostgresStore::connect(&url).await.unwrap());
    let mut writers = Vec::new();
    for (n, store) in [node1.clone(), node2.clone()].into_iter().enumerate() {
        for task in 0..4 {
            let store = store.clone();
            writers.push(tokio::spawn(async move {
                for i in 0..25 {
                    let entry = NewAuditEntry::new(format!("node{n}"), "test.concurrent", "ok")
                        .details(serde_json::json!({ "task": task, "i": i }));
                    store.append_audit(entry).await.unwrap();
                }
            }));
        }
    }
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(
        sync_server::audit::verify_store(node1.as_ref())
            .await
            .unwrap(),
        200
    );
    assert_eq!(
        sync_server::audit::verify_store(node2.as_ref())
            .await
            .unwrap(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    exercise(Arc::new(SqliteStore::open(dir.path(), false).unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_passes_the_suite() {
    let (_cluster, url) = PgCluster::start_with_database().await;
    exercise(Arc::new(PostgresStore::connect(&url).await.unwrap())).await;
    // Connecting again finds the schema current and changes nothing.
    let again = PostgresStore::connect(&url).await.unwrap();
    assert!(again.list_documents().await.unwrap().len() == 2);
}
