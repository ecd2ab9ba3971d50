//! The audit log: append-only, hash-chained entries. Each entry's hash covers
//! its fields and the previous entry's hash, and the store keeps the chain's
//! head (last sequence number and hash) beside it, so an edited, removed,
//! reordered or truncated entry is found by [`verify_chain`].
//!
//! Entries never carry secrets: callers pass token ids and names, not tokens.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a caller records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NewAuditEntry {
    /// Who: `api_key:<id>`, `user:<id>`, `cli`, or `anonymous`.
    pub actor: String,
    pub device: Option<String>,
    /// Where from (the peer's address), when known.
    pub address: Option<String>,
    /// What, as `area.verb` (e.g. `auth.token_rejected`, `document.write`).
    pub action: String,
    pub target: Option<String>,
    /// `ok`, `denied`, `error`.
    pub result: String,
    /// Anything else, as a JSON object.
    pub details: serde_json::Value,
}

impl NewAuditEntry {
    pub fn new(
        actor: impl Into<String>,
        action: impl Into<String>,
        result: impl Into<String>,
    ) -> Self {
        Self {
            actor: actor.into(),
            action: action.into(),
            result: result.into(),
            details: serde_json::Value::Object(Default::default()),
            ..Self::default()
        }
    }

    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    pub fn address(mut self, address: impl Into<String>) -> Self {
        self.address = Some(address.into());
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    /// Adds `"seq"` (a document chunk's sequence number) to the details.
    pub fn with_seq(mut self, seq: u64) -> Self {
        if let Some(details) = self.details.as_object_mut() {
            details.insert("seq".into(), seq.into());
        } else {
            self.details = serde_json::json!({ "seq": seq });
        }
        self
    }
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    /// UTC, RFC 3339 with milliseconds.
    pub at: String,
    #[serde(flatten)]
    pub entry: NewAuditEntry,
    pub prev_hash: String,
    pub hash: String,
}

/// The hash of an entry: SHA-256 over the previous hash and every field,
/// each length-prefixed so no two different entries serialise alike.
pub fn entry_hash(seq: u64, at: &str, entry: &NewAuditEntry, prev_hash: &str) -> String {
    let mut hasher = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    };
    field(prev_hash.as_bytes());
    field(&seq.to_be_bytes());
    field(at.as_bytes());
    field(entry.actor.as_bytes());
    field(entry.device.as_deref().unwrap_or("\u{0}").as_bytes());
    field(entry.address.as_deref().unwrap_or("\u{0}").as_bytes());
    field(entry.action.as_bytes());
    field(entry.target.as_deref().unwrap_or("\u{0}").as_bytes());
    field(entry.result.as_bytes());
    field(entry.details.to_string().as_bytes());
    hex::encode(hasher.finalize())
}

/// Builds the next entry of a chain whose head is `(last_seq, last_hash)`.
pub fn next_entry(last_seq: u64, last_hash: &str, at: String, entry: NewAuditEntry) -> AuditEntry {
    let seq = last_seq + 1;
    let hash = entry_hash(seq, &at, &entry, last_hash);
    AuditEntry {
        seq,
        at,
        entry,
        prev_hash: last_hash.to_owned(),
        hash,
    }
}

/// An RFC 3339 time as the log writes them (UTC, milliseconds, `Z`), so
/// comparing the text compares the times; `None` if it is not RFC 3339.
pub fn normalize_time(text: &str) -> Option<String> {
    let parsed = chrono::DateTime::parse_from_rfc3339(text.trim()).ok()?;
    Some(
        parsed
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string(),
    )
}

/// A unix time in milliseconds as the log writes times.
pub fn time_at_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// What is wrong with a chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("entry {found} follows entry {expected_after}: entries were removed or reordered")]
    Gap { expected_after: u64, found: u64 },
    #[error(
        "entry {seq} does not link to the entry before it: an entry was removed, reordered or edited"
    )]
    BrokenLink { seq: u64 },
    #[error("entry {seq} was edited (its hash no longer matches its contents)")]
    Edited { seq: u64 },
    #[error(
        "the chain ends at entry {last} but its recorded head is entry {head}: entries were removed from the end"
    )]
    Truncated { last: u64, head: u64 },
    #[error("the chain's recorded head hash does not match entry {seq}")]
    HeadMismatch { seq: u64 },
}

/// Checks entries in sequence order against each other and against the
/// stored head. Feed it every entry; returns how many were checked.
#[derive(Debug)]
pub struct ChainVerifier {
    last_seq: u64,
    last_hash: String,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self {
            last_seq: 0,
            last_hash: GENESIS_HASH.to_owned(),
        }
    }
}

impl ChainVerifier {
    pub fn check(&mut self, entry: &AuditEntry) -> Result<(), ChainError> {
        if entry.seq != self.last_seq + 1 {
            return Err(ChainError::Gap {
                expected_after: self.last_seq,
                found: entry.seq,
            });
        }
        if entry.prev_hash != self.last_hash {
            return Err(ChainError::BrokenLink { seq: entry.seq });
        }
        if entry_hash(entry.seq, &entry.at, &entry.entry, &entry.prev_hash) != entry.hash {
            return Err(ChainError::Edited { seq: entry.seq });
        }
        self.last_seq = entry.seq;
        self.last_hash = entry.hash.clone();
        Ok(())
    }

    /// Compares the end of the chain with the head the store recorded.
    pub fn finish(self, head: Option<(u64, String)>) -> Result<u64, ChainError> {
        let (head_seq, head_hash) = head.unwrap_or((0, GENESIS_HASH.to_owned()));
        if head_seq != self.last_seq {
            return Err(ChainError::Truncated {
                last: self.last_seq,
                head: head_seq,
            });
        }
        if head_hash != self.last_hash {
            return Err(ChainError::HeadMismatch { seq: self.last_seq });
        }
        Ok(self.last_seq)
    }
}

/// Verifies a whole chain held in memory (tests, small logs).
pub fn verify_chain<'a>(
    entries: impl IntoIterator<Item = &'a AuditEntry>,
    head: Option<(u64, String)>,
) -> Result<u64, ChainError> {
    let mut verifier = ChainVerifier::default();
    for entry in entries {
        verifier.check(entry)?;
    }
    verifier.finish(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_normalize_to_the_stored_form() {
        assert_eq!(
            normalize_time("2026-11-21T10:00:00+01:00").as_deref(),
            Some("2026-11-21T09:00:00.000Z")
        );
        assert_eq!(
            normalize_time("2026-11-21T09:00:00.5Z").as_deref(),
            Some("2026-11-21T09:00:00.500Z")
        );
        assert_eq!(normalize_time("yesterday"), None);
    }

    fn chain(n: u64) -> Vec<AuditEntry> {
        let mut out: Vec<AuditEntry> = Vec::new();
        for i in 0..n {
            let (seq, hash) = out
                .last()
                .map_or((0, GENESIS_HASH.to_owned()), |e| (e.seq, e.hash.clone()));
            out.push(next_entry(
                seq,
                &hash,
                format!("2026-01-01T00:00:0{i}.000Z"),
                NewAuditEntry::new("cli", "test.event", "ok").target(format!("t{i}")),
            ));
        }
        out
    }

    fn head(entries: &[AuditEntry]) -> Option<(u64, String)> {
        entries.last().map(|e| (e.seq, e.hash.clone()))
    }

    #[test]
    fn an_intact_chain_verifies() {
        let entries = chain(5);
        assert_eq!(verify_chain(&entries, head(&entries)), Ok(5));
        assert_eq!(verify_chain(&[], None), Ok(0));
    }

    #[test]
    fn edits_removals_reorders_and_truncation_are_found() {
        let entries = chain(5);
        let h = head(&entries);

        let mut edited = entries.clone();
        edited[2].entry.result = "denied".into();
        assert_eq!(
            verify_chain(&edited, h.clone()),
            Err(ChainError::Edited { seq: 3 })
        );

        let mut removed = entries.clone();
        removed.remove(2);
        assert_eq!(
            verify_chain(&removed, h.clone()),
            Err(ChainError::Gap {
                expected_after: 2,
                found: 4
            })
        );

        let mut reordered = entries.clone();
        reordered.swap(1, 2);
        assert!(verify_chain(&reordered, h.clone()).is_err());
        // Reordered with the sequence numbers rewritten to look contiguous.
        let (a, b) = (reordered[1].seq, reordered[2].seq);
        reordered[1].seq = b;
        reordered[2].seq = a;
        assert_eq!(
            verify_chain(&reordered, h.clone()),
            Err(ChainError::BrokenLink { seq: 2 })
        );

        let truncated = &entries[..4];
        assert_eq!(
            verify_chain(truncated, h),
            Err(ChainError::Truncated { last: 4, head: 5 })
        );
    }
}
