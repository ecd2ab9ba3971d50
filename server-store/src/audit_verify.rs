//! Checking the audit chain as stored: reads the store's head and its
//! entries in pages and runs them through [`ChainVerifier`]. Apart from
//! `audit` (the chain, which the store depends on) so neither imports back.

pub use crate::audit::ChainError;
use crate::audit::ChainVerifier;
use crate::{AuditStore, StoreError};

/// Why a stored chain could not be confirmed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("audit chain broken: {0}")]
    Chain(#[from] ChainError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Walks the whole stored chain in pages; returns the number of entries.
pub async fn verify_store(store: &dyn AuditStore) -> Result<u64, VerifyError> {
    // Read the head first: entries appended while we walk are past it and
    // are left for the next run.
    let head = store.audit_head().await?;
    let mut verifier = ChainVerifier::default();
    let mut after = 0;
    while after < head.0 {
        let page = store.audit_entries(after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for entry in page.iter().filter(|e| e.seq <= head.0) {
            verifier.check(entry)?;
        }
    }
    Ok(verifier.finish(Some(head))?)
}
