//! The store's conformance suite (`server_store::conformance`, which runs
//! on SQLite in its own crate) on PostgreSQL, a real cluster started for the
//! test, and what only a store shared by several nodes must do.

use sync_server::audit::NewAuditEntry;
use sync_server::store::{PostgresStore, Store};
use sync_tests::PgCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_chain_stays_one_chain_with_writers_on_two_nodes() {
    let (_cluster, url) = PgCluster::start_with_database().await;
    let node1: Store = Store::new(PostgresStore::connect(&url).await.unwrap());
    let node2: Store = Store::new(PostgresStore::connect(&url).await.unwrap());
    let mut writers = Vec::new();
    for (n, store) in [node1.clone(), node2.clone()].into_iter().enumerate() {
        for task in 0..4 {
            let store = store.clone();
            writers.push(tokio::spawn(async move {
                for i in 0..25 {
                    let entry = NewAuditEntry::new(format!("node{n}"), "test.concurrent", "ok")
                        .details(serde_json::json!({ "task": task, "i": i }));
                    store.audit.append_audit(entry).await.unwrap();
                }
            }));
        }
    }
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(
        sync_server::audit_verify::verify_store(node1.audit.as_ref())
            .await
            .unwrap(),
        200
    );
    assert_eq!(
        sync_server::audit_verify::verify_store(node2.audit.as_ref())
            .await
            .unwrap(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_passes_the_suite() {
    let (_cluster, url) = PgCluster::start_with_database().await;
    server_store::conformance::run(Store::new(PostgresStore::connect(&url).await.unwrap())).await;
    // Connecting again finds the schema current and changes nothing.
    let again = Store::new(PostgresStore::connect(&url).await.unwrap());
    assert_eq!(
        again.documents.list_documents().await.unwrap().len(),
        server_store::conformance::DOCUMENTS_WRITTEN
    );
}
