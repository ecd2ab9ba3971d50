//! The store's conformance suite: what every backend must do, run against
//! each one (SQLite here under `cargo test`, PostgreSQL from the workspace's
//! tests with a real cluster). A new backend passes [`run`] before it is used.
//! Behind the `conformance` feature, so a server build does not carry it.

// A test suite: a failed step panics with its place, which is the report.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use sync_protocol::DocumentId;

use crate::Store;
use crate::audit::NewAuditEntry;
use crate::records::{
    AuditQuery, Challenge, ChallengePurpose, DocumentKind, DocumentScope, SettingsBackup,
    TokenHashes,
};
use api_types::Role;

/// Runs the whole suite against `store`, which must be empty.
pub async fn run(store: Store) {
    documents_and_audit(&store).await;
    group_commits(&store).await;
    let ready = store.node.readiness().await.unwrap();
    assert_eq!(ready.schema_version, ready.expected_version);
    store.node.close().await.unwrap();
}

/// How many documents [`run`] leaves in the store.
pub const DOCUMENTS_WRITTEN: usize = 2 + GROUP_WRITERS as usize;

/// Writers at once in [`group_commits`].
const GROUP_WRITERS: u8 = 8;

async fn documents_and_audit(store: &Store) {
    // Documents: snapshot + chunks, sequence numbers, compaction.
    let id = DocumentId::random();
    assert!(store.documents.load_document(id).await.unwrap().is_none());
    assert_eq!(store.documents.append_chunk(id, vec![1]).await.unwrap(), 1);
    assert_eq!(
        store.documents.append_chunk(id, vec![2, 2]).await.unwrap(),
        2
    );
    let doc = store.documents.load_document(id).await.unwrap().unwrap();
    assert_eq!(doc.snapshot, None);
    assert_eq!(doc.chunks, vec![vec![1], vec![2, 2]]);
    assert_eq!(doc.last_seq, 2);
    store.documents.compact(id, vec![9], 2).await.unwrap();
    assert_eq!(store.documents.chunk_count(id).await.unwrap(), 0);
    assert_eq!(
        store.documents.append_chunk(id, vec![3]).await.unwrap(),
        3,
        "sequence numbers go on after compaction"
    );
    let doc = store.documents.load_document(id).await.unwrap().unwrap();
    assert_eq!(doc.snapshot, Some(vec![9]));
    assert_eq!(doc.chunks, vec![vec![3]]);
    assert_eq!(doc.last_seq, 3);
    // Compacting only part keeps the rest.
    store.documents.append_chunk(id, vec![4]).await.unwrap();
    store.documents.compact(id, vec![8], 3).await.unwrap();
    assert_eq!(
        store
            .documents
            .load_document(id)
            .await
            .unwrap()
            .unwrap()
            .chunks,
        vec![vec![4]]
    );

    // Catching up: after a seq past the snapshot, only newer chunks; after a
    // seq the snapshot folded away, the snapshot too.
    let after = store.documents.chunks_after(id, 3).await.unwrap();
    assert_eq!(
        (after.snapshot, after.chunks, after.through_seq),
        (None, vec![(4, vec![4])], 4)
    );
    let after = store.documents.chunks_after(id, 1).await.unwrap();
    assert_eq!(
        (after.snapshot, after.chunks, after.through_seq),
        (Some(vec![8]), vec![(4, vec![4])], 4)
    );
    let after = store.documents.chunks_after(id, 4).await.unwrap();
    assert!(after.snapshot.is_none() && after.chunks.is_empty());
    assert!(
        store
            .documents
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
            tokio::spawn(async move {
                store
                    .documents
                    .append_chunk(hot, vec![i as u8])
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut seqs = BTreeSet::new();
    for w in writers {
        assert!(seqs.insert(w.await.unwrap()));
    }
    assert_eq!(seqs, (1..=16).collect::<BTreeSet<u64>>());
    assert_eq!(
        store
            .documents
            .load_document(hot)
            .await
            .unwrap()
            .unwrap()
            .chunks
            .len(),
        16
    );

    let mut listed = store.documents.list_documents().await.unwrap();
    listed.sort();
    let mut expected = vec![id, hot];
    expected.sort();
    assert_eq!(listed, expected);

    // API keys: by hash only, role kept.
    let key = store
        .accounts
        .create_api_key("ci", Role::Staff, "hash-1")
        .await
        .unwrap();
    assert_eq!(
        store.accounts.authenticate_api_key("hash-1").await.unwrap(),
        Some(key)
    );
    assert_eq!(
        store.accounts.authenticate_api_key("hash-2").await.unwrap(),
        None
    );

    // Audit log: appends chain up, pages read back in order, the head follows.
    assert_eq!(store.audit.audit_head().await.unwrap().0, 0);
    for i in 0..5 {
        let entry =
            NewAuditEntry::new("cli", "test.event", "ok").details(serde_json::json!({ "i": i }));
        assert_eq!(store.audit.append_audit(entry).await.unwrap().seq, i + 1);
    }
    let page = store.audit.audit_entries(2, 2).await.unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 4]);
    assert_eq!(page[0].entry.details, serde_json::json!({ "i": 2 }));
    assert_eq!(
        crate::audit_verify::verify_store(store.audit.as_ref())
            .await
            .unwrap(),
        5
    );

    // Users: case-insensitive unique emails, TOTP steps accepted once, recovery codes used once.
    let user = store
        .accounts
        .create_user(" Ada@Example.org ", Role::Admin, "$argon2id$stub")
        .await
        .unwrap();
    assert_eq!(user.email, "ada@example.org");
    assert!(matches!(
        store
            .accounts
            .create_user("ADA@example.org", Role::Member, "x")
            .await,
        Err(crate::StoreError::Conflict(_))
    ));
    let found = store
        .accounts
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
            .accounts
            .user_by_email("nobody@example.org")
            .await
            .unwrap()
            .is_none()
    );
    store
        .accounts
        .set_totp_secret(&user.id, "JBSWY3DPEHPK3PXP")
        .await
        .unwrap();
    assert!(
        store
            .accounts
            .accept_totp_step(&user.id, 100, true)
            .await
            .unwrap()
    );
    assert!(
        !store
            .accounts
            .accept_totp_step(&user.id, 100, false)
            .await
            .unwrap(),
        "same step twice"
    );
    assert!(
        !store
            .accounts
            .accept_totp_step(&user.id, 99, false)
            .await
            .unwrap(),
        "earlier step"
    );
    assert!(
        store
            .accounts
            .accept_totp_step(&user.id, 101, false)
            .await
            .unwrap()
    );
    let found = store
        .accounts
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
    // Sealing replaces the stored form only if unchanged, and keeps the
    // enrollment as it is.
    assert_eq!(
        store.secrets.totp_secrets().await.unwrap(),
        vec![(user.id.clone(), "JBSWY3DPEHPK3PXP".to_owned())]
    );
    assert!(
        !store
            .secrets
            .replace_totp_secret(&user.id, "SOMETHINGELSE", "sealed:x")
            .await
            .unwrap()
    );
    assert!(
        store
            .secrets
            .replace_totp_secret(&user.id, "JBSWY3DPEHPK3PXP", "sealed:x")
            .await
            .unwrap()
    );
    let found = store
        .accounts
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
        (Some("sealed:x"), true, Some(101))
    );
    // Re-enrolling resets confirmation and the replay window.
    store
        .accounts
        .set_totp_secret(&user.id, "KRSXG5CTMVRXEZLU")
        .await
        .unwrap();
    let found = store
        .accounts
        .user_by_email("ada@example.org")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((found.totp_confirmed, found.totp_last_step), (false, None));
    store
        .accounts
        .replace_recovery_codes(&user.id, &["h1".into(), "h2".into()])
        .await
        .unwrap();
    assert!(
        store
            .accounts
            .consume_recovery_code(&user.id, "h1")
            .await
            .unwrap()
    );
    assert!(
        !store
            .accounts
            .consume_recovery_code(&user.id, "h1")
            .await
            .unwrap(),
        "used twice"
    );
    assert!(
        !store
            .accounts
            .consume_recovery_code(&user.id, "h9")
            .await
            .unwrap(),
        "unknown"
    );
    store
        .accounts
        .replace_recovery_codes(&user.id, &["h3".into()])
        .await
        .unwrap();
    assert!(
        !store
            .accounts
            .consume_recovery_code(&user.id, "h2")
            .await
            .unwrap(),
        "replaced codes are gone"
    );
    assert!(
        store
            .accounts
            .consume_recovery_code(&user.id, "h3")
            .await
            .unwrap()
    );

    sessions(store, &user.id).await;
}

fn hashes(generation: u32, tag: &str, expires_ms: i64) -> TokenHashes {
    TokenHashes {
        generation,
        access_hash: format!("a-{tag}"),
        access_expires_ms: expires_ms,
        refresh_hash: format!("r-{tag}"),
        refresh_expires_ms: expires_ms * 10,
    }
}

/// Devices, sessions and tokens, challenges, user administration, scopes,
/// shared secrets, API key administration and audit queries.
async fn sessions(store: &Store, user_id: &str) {
    let device = store
        .accounts
        .create_device(user_id, "door 1", "1.0", 1_000)
        .await
        .unwrap();
    assert_eq!(
        store.accounts.device(&device.id).await.unwrap().unwrap(),
        device
    );
    let session = store
        .accounts
        .create_session(
            user_id,
            &device.id,
            Some(1_000),
            &hashes(0, "0", 5_000),
            1_000,
        )
        .await
        .unwrap();
    let access = store.accounts.access_token("a-0").await.unwrap().unwrap();
    assert_eq!(
        (
            access.session_id.as_str(),
            access.expires_ms,
            access.second_factor_ms,
            access.session_revoked
        ),
        (session.as_str(), 5_000, Some(1_000), false)
    );
    assert_eq!(access.user.id, user_id);
    assert_eq!(access.device.name, "door 1");
    assert!(
        store.accounts.access_token("r-0").await.unwrap().is_none(),
        "kinds are kept apart"
    );

    // Rotation: a refresh token is exchanged once, atomically.
    let r0 = store.accounts.refresh_token("r-0").await.unwrap().unwrap();
    assert_eq!(
        (r0.generation, r0.used_ms, r0.later_generation_used),
        (0, None, false)
    );
    assert!(
        store
            .accounts
            .exchange_refresh_token("r-0", &hashes(1, "1", 9_000), 2_000)
            .await
            .unwrap()
    );
    assert!(
        !store
            .accounts
            .exchange_refresh_token("r-0", &hashes(1, "x", 9_000), 2_001)
            .await
            .unwrap()
    );
    assert!(
        store.accounts.access_token("a-x").await.unwrap().is_none(),
        "the loser stores nothing"
    );
    let r0 = store.accounts.refresh_token("r-0").await.unwrap().unwrap();
    assert_eq!((r0.used_ms, r0.later_generation_used), (Some(2_000), false));
    assert!(
        store
            .accounts
            .exchange_refresh_token("r-1", &hashes(2, "2", 9_000), 3_000)
            .await
            .unwrap()
    );
    let r0 = store.accounts.refresh_token("r-0").await.unwrap().unwrap();
    assert!(r0.later_generation_used);
    assert!(store.accounts.session_live(&session).await.unwrap());

    // Step-up time, touch, revocations.
    store
        .accounts
        .record_second_factor(&session, 4_000)
        .await
        .unwrap();
    assert_eq!(
        store
            .accounts
            .access_token("a-2")
            .await
            .unwrap()
            .unwrap()
            .second_factor_ms,
        Some(4_000)
    );
    store
        .accounts
        .touch_device(&device.id, "1.1", 100_000)
        .await
        .unwrap();
    let touched = store.accounts.device(&device.id).await.unwrap().unwrap();
    assert_eq!(
        (touched.last_seen_ms, touched.app_version.as_str()),
        (100_000, "1.1")
    );
    let second = store
        .accounts
        .create_session(user_id, &device.id, None, &hashes(0, "s2", 5_000), 1_000)
        .await
        .unwrap();
    let ended = store
        .accounts
        .revoke_user_sessions(user_id, Some(&second), "test", 5_000)
        .await
        .unwrap();
    assert_eq!(ended, vec![session.clone()]);
    assert!(!store.accounts.session_live(&session).await.unwrap());
    assert!(store.accounts.session_live(&second).await.unwrap());
    assert!(
        store
            .accounts
            .refresh_token("r-2")
            .await
            .unwrap()
            .unwrap()
            .session_revoked
    );
    assert!(
        store
            .accounts
            .revoke_device(&device.id, 6_000)
            .await
            .unwrap()
    );
    assert!(
        !store
            .accounts
            .revoke_device(&device.id, 6_001)
            .await
            .unwrap(),
        "once"
    );
    assert!(
        !store.accounts.session_live(&second).await.unwrap(),
        "a revoked device ends its sessions"
    );
    let listed = store.accounts.list_devices(Some(user_id)).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].revoked_ms, Some(6_000));
    assert_eq!(
        store
            .accounts
            .list_devices(Some("nobody"))
            .await
            .unwrap()
            .len(),
        0
    );

    // Pruning drops what expired and keeps used refresh tokens until their
    // own expiry (so reuse stays detectable).
    assert!(store.accounts.prune_expired(20_000).await.unwrap() >= 3);
    assert!(store.accounts.access_token("a-0").await.unwrap().is_none());
    assert!(store.accounts.refresh_token("r-0").await.unwrap().is_some());
    assert_eq!(store.accounts.prune_expired(20_000).await.unwrap(), 0);

    // Challenges work once.
    let challenge = Challenge {
        user_id: user_id.to_owned(),
        purpose: ChallengePurpose::SecondFactor,
        device_id: None,
        device_name: "d".into(),
        app_version: "".into(),
        expires_ms: 10_000,
        used: false,
    };
    store
        .accounts
        .create_challenge("c-1", &challenge)
        .await
        .unwrap();
    assert_eq!(
        store.accounts.challenge("c-1").await.unwrap().unwrap(),
        challenge
    );
    assert!(store.accounts.use_challenge("c-1", 1).await.unwrap());
    assert!(!store.accounts.use_challenge("c-1", 2).await.unwrap());
    assert!(store.accounts.challenge("c-1").await.unwrap().unwrap().used);

    // User administration.
    assert!(
        store
            .accounts
            .set_user_role(user_id, Role::Staff)
            .await
            .unwrap()
    );
    store
        .accounts
        .set_assignments(user_id, &["e2".into(), "e1".into(), "e1".into()])
        .await
        .unwrap();
    assert_eq!(
        store.accounts.assignments(user_id).await.unwrap(),
        vec!["e1", "e2"]
    );
    assert!(
        store
            .accounts
            .set_user_disabled(user_id, true)
            .await
            .unwrap()
    );
    let listed = store.accounts.list_users().await.unwrap();
    let me = listed.iter().find(|u| u.id == user_id).unwrap();
    assert_eq!(
        (me.role, me.disabled, me.events.clone()),
        (Role::Staff, true, vec!["e1".to_owned(), "e2".to_owned()])
    );
    assert!(
        store
            .accounts
            .set_user_disabled(user_id, false)
            .await
            .unwrap()
    );
    assert!(
        store
            .accounts
            .set_password_hash(user_id, "new-hash")
            .await
            .unwrap()
    );
    assert!(store.accounts.reset_totp(user_id).await.unwrap());
    let user = store.accounts.user_by_id(user_id).await.unwrap().unwrap();
    assert_eq!(
        (user.totp_secret, user.password_hash.as_str(), user.disabled),
        (None, "new-hash", false)
    );
    assert!(
        !store
            .accounts
            .set_user_role("nobody", Role::Admin)
            .await
            .unwrap()
    );

    // Document scopes are set once.
    let doc = DocumentId::random();
    assert_eq!(store.documents.document_scope(doc).await.unwrap(), None);
    let event = DocumentScope {
        kind: DocumentKind::Event,
        scope: "e1".into(),
    };
    assert_eq!(
        store
            .documents
            .register_document(doc, &event, "t", 1)
            .await
            .unwrap(),
        event
    );
    let other = DocumentScope {
        kind: DocumentKind::OrgConfig,
        scope: "".into(),
    };
    assert_eq!(
        store
            .documents
            .register_document(doc, &other, "t", 2)
            .await
            .unwrap(),
        event,
        "kept"
    );
    assert_eq!(
        store.documents.document_scope(doc).await.unwrap(),
        Some(event.clone())
    );
    assert_eq!(
        store.documents.documents_with_scope(&event).await.unwrap(),
        vec![doc]
    );
    assert!(
        store
            .documents
            .documents_with_scope(&other)
            .await
            .unwrap()
            .is_empty()
    );
    // One organisation configuration: a second is a conflict, the first stays.
    let (config, second) = (DocumentId::random(), DocumentId::random());
    assert_eq!(
        store
            .documents
            .register_document(config, &other, "t", 3)
            .await
            .unwrap(),
        other
    );
    assert!(matches!(
        store
            .documents
            .register_document(second, &other, "t", 4)
            .await,
        Err(crate::StoreError::Conflict(_))
    ));
    assert_eq!(store.documents.document_scope(second).await.unwrap(), None);
    assert_eq!(
        store
            .documents
            .register_document(config, &other, "t", 5)
            .await
            .unwrap(),
        other,
        "registering the same one again is fine"
    );
    assert_eq!(
        store.documents.documents_with_scope(&other).await.unwrap(),
        vec![config]
    );

    // One shared secret per name.
    let secret = store.secrets.shared_secret("k", b"first").await.unwrap();
    assert_eq!(secret, b"first");
    assert_eq!(
        store.secrets.shared_secret("k", b"second").await.unwrap(),
        b"first"
    );
    assert!(
        !store
            .secrets
            .replace_shared_secret("k", b"stale", b"third")
            .await
            .unwrap()
    );
    assert!(
        store
            .secrets
            .replace_shared_secret("k", b"first", b"third")
            .await
            .unwrap()
    );
    assert_eq!(
        store.secrets.shared_secret("k", b"fourth").await.unwrap(),
        b"third"
    );

    // API keys: listed without tokens, revoked once.
    let key = store
        .accounts
        .create_api_key("listed", Role::Member, "h-listed")
        .await
        .unwrap();
    let keys = store.accounts.list_api_keys().await.unwrap();
    let info = keys.iter().find(|k| k.id == key.id).unwrap();
    assert_eq!(
        (info.name.as_str(), info.role, info.revoked_at.as_deref()),
        ("listed", Role::Member, None)
    );
    assert!(info.created_at.ends_with('Z'), "{}", info.created_at);
    assert!(store.accounts.revoke_api_key(&key.id).await.unwrap());
    assert!(!store.accounts.revoke_api_key(&key.id).await.unwrap());
    assert!(
        store
            .accounts
            .authenticate_api_key("h-listed")
            .await
            .unwrap()
            .is_none()
    );

    // Settings backups: newest first, deleted by id.
    let doc = DocumentId::random();
    for (n, at) in [(1, 1_000), (2, 3_000), (3, 2_000)] {
        store
            .settings_history
            .add_settings_backup(&SettingsBackup {
                id: format!("b{n}"),
                document_id: doc.to_string(),
                taken_ms: at,
                settings: serde_json::json!({ "n": n }),
                heads: format!("h{n}"),
            })
            .await
            .unwrap();
    }
    let listed = store.settings_history.settings_backups(doc).await.unwrap();
    assert_eq!(
        listed.iter().map(|b| b.id.as_str()).collect::<Vec<_>>(),
        ["b2", "b3", "b1"]
    );
    assert_eq!(listed[0].settings["n"], 2);
    store
        .settings_history
        .delete_settings_backups(&["b1".into(), "b2".into()])
        .await
        .unwrap();
    assert_eq!(
        store
            .settings_history
            .settings_backups(doc)
            .await
            .unwrap()
            .len(),
        1
    );

    // Audit queries: filters and paging.
    for i in 0..3 {
        store
            .audit
            .append_audit(NewAuditEntry::new(
                "query",
                "test.query",
                if i == 1 { "denied" } else { "ok" },
            ))
            .await
            .unwrap();
    }
    let all = store
        .audit
        .query_audit(&AuditQuery {
            limit: 100,
            action: Some("test.query".into()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    let denied = store
        .audit
        .query_audit(&AuditQuery {
            limit: 100,
            action: Some("test.query".into()),
            result: Some("denied".into()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(denied.len(), 1);
    let page = store
        .audit
        .query_audit(&AuditQuery {
            after_seq: all[0].seq,
            limit: 1,
            actor: Some("query".into()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![all[1].seq]
    );
    let future = store
        .audit
        .query_audit(&AuditQuery {
            limit: 100,
            since: Some("2999-01-01T00:00:00.000Z".into()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert!(future.is_empty());
}

/// Writers on documents of their own at once, beside audit entries of
/// their own: each document's chunks keep their order and every entry lands
/// on one unbroken chain (the embedded store commits several writers in one
/// transaction, reading and writing the chain's head once per group).
async fn group_commits(store: &Store) {
    let before = crate::audit_verify::verify_store(store.audit.as_ref())
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for task in 0..GROUP_WRITERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let id = DocumentId::random();
            let mut seqs = Vec::new();
            for i in 0..25_u8 {
                let entry = NewAuditEntry::new(format!("writer{task}"), "document.write", "ok")
                    .target(id.to_string());
                seqs.push(
                    store
                        .documents
                        .append_chunk_audited(id, vec![task, i], entry)
                        .await
                        .unwrap(),
                );
            }
            (id, seqs)
        }));
    }
    let side = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..25 {
                let entry = NewAuditEntry::new("admin", "test.side", "ok")
                    .details(serde_json::json!({ "i": i }));
                store.audit.append_audit(entry).await.unwrap();
            }
        })
    };
    for task in tasks {
        let (id, seqs) = task.await.unwrap();
        assert_eq!(
            seqs,
            (1..=25).collect::<Vec<u64>>(),
            "each document's chunks in order"
        );
        let stored = store.documents.load_document(id).await.unwrap().unwrap();
        assert_eq!(stored.chunks.len(), 25);
    }
    side.await.unwrap();
    assert_eq!(
        crate::audit_verify::verify_store(store.audit.as_ref())
            .await
            .unwrap(),
        before + u64::from(GROUP_WRITERS) * 25 + 25,
        "every write and side entry on one unbroken chain"
    );
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use crate::{SqliteStore, Store};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_store_passes_the_suite() {
        let dir = tempfile::tempdir().unwrap();
        super::run(Store::new(SqliteStore::open(dir.path(), false).unwrap())).await;
    }
}
