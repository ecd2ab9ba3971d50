//! What automerge 0.12 does not check in a sync message before it uses it:
//! the bloom filters of a peer's `have`. `BloomFilter`'s parser takes any
//! entry count, bits per entry and probe count, and the first
//! `generate_sync_message` for that peer then divides by the filter's size
//! in bits (zero bits per entry: a panic, dividing by zero) and allocates a
//! vector of `num_probes` entries per change (up to 2^32: out of memory).
//! Either would let any peer, a reader included, bring down the document it
//! syncs for everyone (found by the `doc_ingest` fuzz target). Both ends
//! refuse such a message before automerge sees it.
//!
//! Its change parser has the same kind of hole deeper down (a crafted
//! change whose object id counter passes `u32` makes `Change::try_from`
//! unwrap an error), and there is no shape to check before parsing, so the
//! calls that hand automerge untrusted bytes also run inside
//! [`contain_panic`], which turns a panic into an error the caller treats
//! as a corrupt message.

use automerge::sync;

/// The most probes per hash accepted (automerge writes 7).
pub const MAX_BLOOM_PROBES: u32 = 64;

/// A sync message automerge would accept but must not be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("sync message has a malformed bloom filter: {0}")]
pub struct MalformedSyncData(&'static str);

/// Refuses a message whose `have` holds a bloom filter automerge cannot use
/// safely (see the module).
pub fn check(message: &sync::Message) -> Result<(), MalformedSyncData> {
    for have in &message.have {
        let bytes = have.bloom.to_bytes();
        // An empty filter (no entries) encodes as nothing.
        if bytes.is_empty() {
            continue;
        }
        let mut input = bytes.as_slice();
        let entries = leb128_u32(&mut input).ok_or(MalformedSyncData("unreadable entry count"))?;
        let bits_per_entry =
            leb128_u32(&mut input).ok_or(MalformedSyncData("unreadable bits per entry"))?;
        let probes = leb128_u32(&mut input).ok_or(MalformedSyncData("unreadable probe count"))?;
        if entries > 0 && bits_per_entry == 0 {
            return Err(MalformedSyncData("entries but no bits"));
        }
        if !(1..=MAX_BLOOM_PROBES).contains(&probes) {
            return Err(MalformedSyncData("probe count out of range"));
        }
    }
    Ok(())
}

/// automerge panicked on input it should have refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("automerge failed on this input ({0}); treated as corrupt")]
pub struct AutomergePanicked(pub String);

/// Runs `f`, turning a panic into [`AutomergePanicked`]. For the calls that
/// hand automerge untrusted bytes (see the module). Whatever `f` touched
/// must be thrown away after an error: callers reload the document.
pub fn contain_panic<T>(f: impl FnOnce() -> T) -> Result<T, AutomergePanicked> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        let why = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "a panic".to_owned());
        AutomergePanicked(why)
    })
}

/// Reads one ULEB128 `u32`, as automerge wrote it.
fn leb128_u32(input: &mut &[u8]) -> Option<u32> {
    let mut value: u64 = 0;
    for shift in (0..35).step_by(7) {
        let (&byte, rest) = input.split_first()?;
        *input = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return u32::try_from(value).ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::sync::{BloomFilter, Have, SyncDoc};
    use automerge::transaction::Transactable;

    /// A real first message whose `have` carries `bloom` (automerge's own
    /// encoding of an entry count, bits per entry, probes and the bits).
    fn with_bloom(bloom: &[u8]) -> sync::Message {
        let mut doc = automerge::Automerge::new();
        let mut tx = doc.transaction();
        tx.put(automerge::ROOT, "k", 1).unwrap();
        tx.commit();
        let mut message = doc.generate_sync_message(&mut sync::State::new()).unwrap();
        message.have = vec![Have {
            last_sync: Vec::new(),
            bloom: BloomFilter::try_from(bloom).unwrap(),
        }];
        // Through the wire, as a peer would send it.
        sync::Message::decode(&message.encode()).unwrap()
    }

    #[test]
    fn automerges_own_filters_pass_and_unusable_ones_are_refused() {
        let mut doc = automerge::Automerge::new();
        for i in 0..20 {
            let mut tx = doc.transaction();
            tx.put(automerge::ROOT, "k", i).unwrap();
            tx.commit();
        }
        let own = doc.generate_sync_message(&mut sync::State::new()).unwrap();
        assert_eq!(check(&own), Ok(()));
        assert_eq!(check(&with_bloom(&[])), Ok(()));
        // 2 entries, 10 bits each, 7 probes: automerge's shape.
        assert_eq!(check(&with_bloom(&[2, 10, 7, 0, 0, 0])), Ok(()));
        // 1 entry of zero bits: automerge divides by zero.
        assert!(check(&with_bloom(&[1, 0, 7])).is_err());
        // 2^32 - 1 probes: automerge allocates 16 GiB per change.
        assert!(check(&with_bloom(&[1, 8, 0xff, 0xff, 0xff, 0xff, 0x0f, 0])).is_err());
        assert!(check(&with_bloom(&[1, 8, 0, 0])).is_err());
    }

    #[test]
    fn a_panic_becomes_an_error_and_a_result_passes_through() {
        assert_eq!(contain_panic(|| 7), Ok(7));
        let caught = contain_panic(|| -> u32 { panic!("bad counter {}", 3) });
        assert_eq!(caught, Err(AutomergePanicked("bad counter 3".into())));
        let caught = contain_panic(|| -> u32 { panic!("plain") });
        assert_eq!(caught, Err(AutomergePanicked("plain".into())));
    }

    #[test]
    fn the_refused_filter_is_one_that_brings_automerge_down() {
        let mut doc = automerge::Automerge::new();
        for i in 0..3 {
            let mut tx = doc.transaction();
            tx.put(automerge::ROOT, "k", i).unwrap();
            tx.commit();
        }
        let bad = with_bloom(&[1, 0, 7]);
        let mut state = sync::State::new();
        doc.receive_sync_message(&mut state, bad).unwrap();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            doc.generate_sync_message(&mut state)
        }))
        .is_err();
        assert!(panicked, "automerge copes now: the check may be relaxed");
    }
}
