//! Roles and API-token material: what a role is called, how a token is made
//! and how it is stored (a SHA-256 hex digest). A leaf: the store, the
//! session rules and `auth` all use it, and it uses none of them.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// What a caller may do, broadly (defined with the REST API's types, which
/// carry it). Per-document decisions live in `policy`.
pub use api_types::{Role, UnknownRole};

/// Prefix of API key tokens, so leaked tokens are recognisable by scanners.
pub const TOKEN_PREFIX: &str = "sk_";

/// A new random token and the hash to store for it.
pub fn new_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = hash_token(&token);
    (token, hash)
}

/// The stored form of a token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}
