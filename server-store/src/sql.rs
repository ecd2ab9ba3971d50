//! SQL both backends run, written once in SQLite's spelling (`?1`, `?2`, ...);
//! the PostgreSQL backend numbers the placeholders its way (`$1`) with
//! [`numbered`]. Only statements that read the same in both dialects live
//! here; the rest stay with their backend.

use api_types::Role;

use crate::StoreError;
use crate::records::DocumentKind;

/// The user columns both stores read, in this order (`user_from_row`).
pub(crate) const USER_COLUMNS: &str =
    "users.id, users.email, users.role, users.password_hash, users.totp_secret,
    users.totp_confirmed_at IS NOT NULL, users.totp_last_step, users.disabled_at IS NOT NULL";

/// The device columns both stores read, in this order (`device_from_row`).
pub(crate) const DEVICE_COLUMNS: &str = "devices.id, devices.user_id, devices.name, devices.app_version, devices.created_ms, devices.last_seen_ms, devices.revoked_ms";

/// What an access token stands for: the session (id, expiry, second
/// factor, revoked), then [`USER_COLUMNS`] from column 4 and
/// [`DEVICE_COLUMNS`] from column 12. `?1`: the token's hash.
pub(crate) fn access_token() -> String {
    format!(
        "SELECT s.id, t.expires_ms, s.second_factor_ms, s.revoked_ms IS NOT NULL,
                {USER_COLUMNS}, {DEVICE_COLUMNS}
         FROM session_tokens t
         JOIN sessions s ON s.id = t.session_id
         JOIN users ON users.id = s.user_id
         JOIN devices ON devices.id = s.device_id
         WHERE t.token_hash = ?1 AND t.kind = 'access'"
    )
}

/// A refresh token and its family's state, in `RefreshTokenRecord`'s field
/// order. `?1`: the token's hash.
pub(crate) const REFRESH_TOKEN: &str =
    "SELECT s.id, s.user_id, s.device_id, t.generation, t.expires_ms, t.used_ms,
        EXISTS (SELECT 1 FROM session_tokens later
                WHERE later.session_id = t.session_id AND later.kind = 'refresh'
                  AND later.generation > t.generation AND later.used_ms IS NOT NULL),
        s.revoked_ms IS NOT NULL, d.revoked_ms IS NOT NULL, u.disabled_at IS NOT NULL
 FROM session_tokens t
 JOIN sessions s ON s.id = t.session_id
 JOIN devices d ON d.id = s.device_id
 JOIN users u ON u.id = s.user_id
 WHERE t.token_hash = ?1 AND t.kind = 'refresh'";

/// What `prune_expired` deletes (`?1`: now in ms).
pub(crate) const PRUNE: [&str; 3] = [
    "DELETE FROM session_tokens WHERE expires_ms < ?1",
    "DELETE FROM sign_in_challenges WHERE expires_ms < ?1",
    // Ended sessions are kept 30 days for the device and audit views.
    "DELETE FROM sessions WHERE revoked_ms IS NOT NULL AND revoked_ms < ?1 - 2592000000",
];

/// `sql` with PostgreSQL's placeholders: `?N` becomes `$N`.
#[cfg(feature = "postgres")]
pub(crate) fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

/// A document kind read from a row.
pub(crate) fn parse_kind(text: &str) -> Result<DocumentKind, StoreError> {
    text.parse()
        .map_err(|e: api_types::UnknownDocumentKind| StoreError::Database(e.to_string()))
}

/// A role read from a row (`id` names the row in the error).
pub(crate) fn parse_role(id: &str, role: &str) -> Result<Role, StoreError> {
    role.parse()
        .map_err(|_| StoreError::Database(format!("{id} has unknown role {role}")))
}

#[cfg(all(test, feature = "postgres"))]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres() {
        assert_eq!(
            numbered("SELECT a FROM t WHERE x = ?1 AND y = ?12 AND z = '?'"),
            "SELECT a FROM t WHERE x = $1 AND y = $12 AND z = '?'"
        );
        assert!(!numbered(REFRESH_TOKEN).contains('?'));
    }
}
