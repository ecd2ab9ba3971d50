//! Recovery codes: 10 per user, shown once, each single-use. 80 random bits
//! each, so a plain SHA-256 is a safe stored form (nothing to brute-force)
//! and a code can be looked up by its hash.

use rand::RngCore;
use sha2::{Digest, Sha256};

pub const COUNT: usize = 10;
const ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// New codes, formatted `XXXX-XXXX-XXXX-XXXX`, and their stored hashes.
pub fn generate() -> Vec<(String, String)> {
    (0..COUNT)
        .map(|_| {
            let mut bytes = [0u8; 10];
            rand::rng().fill_bytes(&mut bytes);
            // 80 bits -> 16 symbols of 5 bits.
            let mut bits: u128 = 0;
            for b in bytes {
                bits = (bits << 8) | u128::from(b);
            }
            let symbols: String = (0..16)
                .map(|i| ALPHABET[((bits >> (75 - 5 * i)) & 31) as usize] as char)
                .collect();
            let code = format!(
                "{}-{}-{}-{}",
                &symbols[0..4],
                &symbols[4..8],
                &symbols[8..12],
                &symbols[12..16]
            );
            let hash = hash(&code);
            (code, hash)
        })
        .collect()
}

/// The stored form of a code as a user typed it (case, spaces and dashes ignored).
pub fn hash(code: &str) -> String {
    let normalized: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    hex::encode(Sha256::digest(normalized.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_distinct_codes_whose_hashes_match_how_users_type_them() {
        let codes = generate();
        assert_eq!(codes.len(), COUNT);
        let unique: std::collections::HashSet<_> = codes.iter().map(|(c, _)| c.clone()).collect();
        assert_eq!(unique.len(), COUNT);
        for (code, stored) in &codes {
            assert_eq!(code.len(), 19);
            assert_eq!(&hash(code), stored);
            assert_eq!(&hash(&code.to_lowercase().replace('-', " ")), stored);
            assert_ne!(code, stored);
        }
    }
}
