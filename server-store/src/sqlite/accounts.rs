//! [`AccountStore`], [`SettingsHistory`] and [`SecretStore`] on the embedded SQLite store.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, Row, params};
use sync_protocol::DocumentId;

use super::{NOW, SqliteStore, user_from_row};
use crate::records::{
    AccessTokenRecord, ApiKeyInfo, Challenge, ChallengePurpose, Device, DocumentScope, NewSession,
    RefreshTokenRecord, SettingsBackup, TokenHashes, UserSummary,
};
use crate::sql::{self, DEVICE_COLUMNS, PRUNE, USER_COLUMNS, parse_kind, parse_role};
use crate::{AccountStore, ApiKey, SecretStore, SettingsHistory};
use crate::{StoreError, User};
use api_types::Role;

fn device_from_row(r: &Row<'_>, start: usize) -> rusqlite::Result<Device> {
    Ok(Device {
        id: r.get(start)?,
        user_id: r.get(start + 1)?,
        name: r.get(start + 2)?,
        app_version: r.get(start + 3)?,
        created_ms: r.get(start + 4)?,
        last_seen_ms: r.get(start + 5)?,
        revoked_ms: r.get(start + 6)?,
    })
}

fn insert_tokens(
    conn: &rusqlite::Connection,
    session_id: &str,
    tokens: &TokenHashes,
) -> rusqlite::Result<()> {
    for (kind, hash, expires) in [
        ("access", &tokens.access_hash, tokens.access_expires_ms),
        ("refresh", &tokens.refresh_hash, tokens.refresh_expires_ms),
    ] {
        conn.execute(
            "INSERT INTO session_tokens (token_hash, session_id, kind, generation, expires_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![hash, session_id, kind, tokens.generation, expires],
        )?;
    }
    Ok(())
}

#[async_trait]
impl AccountStore for SqliteStore {
    async fn insert_api_key(&self, key: &ApiKey, token_hash: &str) -> Result<(), StoreError> {
        let (key, token_hash) = (key.clone(), token_hash.to_owned());
        self.with_conn("create_api_key", move |conn| {
            conn.execute(
                &format!(
                    "INSERT INTO api_keys (id, name, role, token_hash, created_at) VALUES (?1, ?2, ?3, ?4, {NOW})"
                ),
                params![key.id, key.name, key.role.as_str(), token_hash],
            )?;
            Ok(())
        })
        .await
    }

    async fn authenticate_api_key(&self, token_hash: &str) -> Result<Option<ApiKey>, StoreError> {
        let token_hash = token_hash.to_owned();
        self.with_conn("authenticate_api_key", move |conn| {
            let row: Option<(String, String, String)> = conn
                .query_row(
                    "SELECT id, name, role FROM api_keys WHERE token_hash = ?1 AND revoked_at IS NULL",
                    params![token_hash],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let Some((id, name, role)) = row else {
                return Ok(None);
            };
            conn.execute(
                &format!("UPDATE api_keys SET last_used_at = {NOW} WHERE id = ?1"),
                params![id],
            )?;
            let role = role
                .parse()
                .map_err(|_| StoreError::Database(format!("api key {id} has unknown role {role}")))?;
            Ok(Some(ApiKey { id, name, role }))
        })
        .await
    }

    async fn insert_user(&self, user: &User) -> Result<bool, StoreError> {
        let user = user.clone();
        self.with_conn("create_user", move |conn| {
            let inserted = conn.execute(
                &format!(
                    "INSERT INTO users (id, email, role, password_hash, created_at) VALUES (?1, ?2, ?3, ?4, {NOW})
                     ON CONFLICT (email) DO NOTHING"
                ),
                params![user.id, user.email, user.role.as_str(), user.password_hash],
            )?;
            Ok(inserted > 0)
        })
        .await
    }

    async fn user_by_normalized_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        let email = email.to_owned();
        self.with_conn("user_by_email", move |conn| {
            Ok(conn
                .query_row(
                    &format!("SELECT {USER_COLUMNS} FROM users WHERE email = ?1"),
                    params![email],
                    |r| user_from_row(r, 0),
                )
                .optional()?)
        })
        .await
    }

    async fn set_totp_secret(&self, user_id: &str, secret: &str) -> Result<(), StoreError> {
        let (user_id, secret) = (user_id.to_owned(), secret.to_owned());
        self.with_conn("set_totp_secret", move |conn| {
            conn.execute(
                "UPDATE users SET totp_secret = ?2, totp_confirmed_at = NULL, totp_last_step = NULL WHERE id = ?1",
                params![user_id, secret],
            )?;
            Ok(())
        })
        .await
    }

    async fn accept_totp_step(
        &self,
        user_id: &str,
        step: u64,
        confirm: bool,
    ) -> Result<bool, StoreError> {
        let user_id = user_id.to_owned();
        self.with_conn("accept_totp_step", move |conn| {
            let changed = conn.execute(
                &format!(
                    "UPDATE users SET totp_last_step = ?2,
                        totp_confirmed_at = CASE WHEN ?3 THEN coalesce(totp_confirmed_at, {NOW}) ELSE totp_confirmed_at END
                     WHERE id = ?1 AND (totp_last_step IS NULL OR totp_last_step < ?2)"
                ),
                params![user_id, step as i64, confirm],
            )?;
            Ok(changed == 1)
        })
        .await
    }

    async fn replace_recovery_codes(
        &self,
        user_id: &str,
        hashes: &[String],
    ) -> Result<(), StoreError> {
        let (user_id, hashes) = (user_id.to_owned(), hashes.to_vec());
        self.with_conn("replace_recovery_codes", move |conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "DELETE FROM recovery_codes WHERE user_id = ?1",
                params![user_id],
            )?;
            for hash in &hashes {
                tx.execute(
                    "INSERT INTO recovery_codes (user_id, code_hash) VALUES (?1, ?2)",
                    params![user_id, hash],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn consume_recovery_code(&self, user_id: &str, hash: &str) -> Result<bool, StoreError> {
        let (user_id, hash) = (user_id.to_owned(), hash.to_owned());
        self.with_conn("consume_recovery_code", move |conn| {
            let used = conn.execute(
                &format!(
                    "UPDATE recovery_codes SET used_at = {NOW}
                     WHERE user_id = ?1 AND code_hash = ?2 AND used_at IS NULL"
                ),
                params![user_id, hash],
            )?;
            Ok(used == 1)
        })
        .await
    }

    async fn user_by_id(&self, id: &str) -> Result<Option<User>, StoreError> {
        let id = id.to_owned();
        self.with_conn("user_by_id", move |conn| {
            Ok(conn
                .query_row(
                    &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
                    params![id],
                    |r| user_from_row(r, 0),
                )
                .optional()?)
        })
        .await
    }

    async fn list_users(&self) -> Result<Vec<UserSummary>, StoreError> {
        self.with_conn("list_users", move |conn| {
            let mut stmt = conn.prepare(
                "SELECT u.id, u.email, u.role, u.totp_confirmed_at IS NOT NULL, u.disabled_at IS NOT NULL,
                        (SELECT group_concat(event_id, char(31)) FROM
                            (SELECT event_id FROM staff_assignments a WHERE a.user_id = u.id ORDER BY event_id))
                 FROM users u ORDER BY u.email",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, bool>(3)?,
                    r.get::<_, bool>(4)?,
                    r.get::<_, Option<String>>(5)?,
                ))
            })?;
            rows.map(|row| {
                let (id, email, role, totp_enrolled, disabled, events) = row?;
                Ok(UserSummary {
                    role: parse_role(&id, &role)?,
                    id,
                    email,
                    totp_enrolled,
                    disabled,
                    events: events
                        .map(|e| e.split('\u{1f}').map(str::to_owned).collect())
                        .unwrap_or_default(),
                })
            })
            .collect()
        })
        .await
    }

    async fn set_user_role(&self, id: &str, role: Role) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.with_conn("set_user_role", move |conn| {
            Ok(conn.execute(
                "UPDATE users SET role = ?2 WHERE id = ?1",
                params![id, role.as_str()],
            )? == 1)
        })
        .await
    }

    async fn set_user_disabled(&self, id: &str, disabled: bool) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.with_conn("set_user_disabled", move |conn| {
            Ok(conn.execute(
                &format!(
                    "UPDATE users SET disabled_at = CASE WHEN ?2 THEN coalesce(disabled_at, {NOW}) END
                     WHERE id = ?1"
                ),
                params![id, disabled],
            )? == 1)
        })
        .await
    }

    async fn set_password_hash(&self, id: &str, hash: &str) -> Result<bool, StoreError> {
        let (id, hash) = (id.to_owned(), hash.to_owned());
        self.with_conn("set_password_hash", move |conn| {
            Ok(conn.execute(
                "UPDATE users SET password_hash = ?2 WHERE id = ?1",
                params![id, hash],
            )? == 1)
        })
        .await
    }

    async fn reset_totp(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.with_conn("reset_totp", move |conn| {
            let tx = conn.transaction()?;
            let changed = tx.execute(
                "UPDATE users SET totp_secret = NULL, totp_confirmed_at = NULL, totp_last_step = NULL
                 WHERE id = ?1",
                params![id],
            )?;
            tx.execute("DELETE FROM recovery_codes WHERE user_id = ?1", params![id])?;
            tx.commit()?;
            Ok(changed == 1)
        })
        .await
    }

    async fn set_assignments(&self, user_id: &str, events: &[String]) -> Result<(), StoreError> {
        let (user_id, events) = (user_id.to_owned(), events.to_vec());
        self.with_conn("set_assignments", move |conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "DELETE FROM staff_assignments WHERE user_id = ?1",
                params![user_id],
            )?;
            for event in &events {
                tx.execute(
                    "INSERT OR IGNORE INTO staff_assignments (user_id, event_id) VALUES (?1, ?2)",
                    params![user_id, event],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn assignments(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
        let user_id = user_id.to_owned();
        self.with_conn("assignments", move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT event_id FROM staff_assignments WHERE user_id = ?1 ORDER BY event_id",
            )?;
            let rows = stmt.query_map(params![user_id], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<String>, _>>()?)
        })
        .await
    }

    async fn insert_device(&self, device: &Device) -> Result<(), StoreError> {
        let device = device.clone();
        self.with_conn("create_device", move |conn| {
            conn.execute(
                "INSERT INTO devices (id, user_id, name, app_version, created_ms, last_seen_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                params![
                    device.id,
                    device.user_id,
                    device.name,
                    device.app_version,
                    device.created_ms
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn device(&self, id: &str) -> Result<Option<Device>, StoreError> {
        let id = id.to_owned();
        self.with_conn("device", move |conn| {
            Ok(conn
                .query_row(
                    &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id = ?1"),
                    params![id],
                    |r| device_from_row(r, 0),
                )
                .optional()?)
        })
        .await
    }

    async fn list_devices(&self, user_id: Option<&str>) -> Result<Vec<Device>, StoreError> {
        let user_id = user_id.map(str::to_owned);
        self.with_conn("list_devices", move |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {DEVICE_COLUMNS} FROM devices WHERE ?1 IS NULL OR user_id = ?1
                 ORDER BY last_seen_ms DESC, id"
            ))?;
            let rows = stmt.query_map(params![user_id], |r| device_from_row(r, 0))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn revoke_device(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.with_conn("revoke_device", move |conn| {
            let tx = conn.transaction()?;
            let changed = tx.execute(
                "UPDATE devices SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
                params![id, now_ms],
            )?;
            tx.execute(
                "UPDATE sessions SET revoked_ms = ?2, revoked_reason = 'device_revoked'
                 WHERE device_id = ?1 AND revoked_ms IS NULL",
                params![id, now_ms],
            )?;
            tx.commit()?;
            Ok(changed == 1)
        })
        .await
    }

    async fn touch_device(
        &self,
        id: &str,
        app_version: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (id, app_version) = (id.to_owned(), app_version.to_owned());
        self.with_conn("touch_device", move |conn| {
            conn.execute(
                "UPDATE devices SET last_seen_ms = ?2,
                    app_version = CASE WHEN ?3 = '' THEN app_version ELSE ?3 END
                 WHERE id = ?1 AND (last_seen_ms < ?2 - 60000 OR (?3 <> '' AND app_version <> ?3))",
                params![id, now_ms, app_version],
            )?;
            Ok(())
        })
        .await
    }

    async fn insert_session(
        &self,
        session: &NewSession,
        tokens: &TokenHashes,
    ) -> Result<(), StoreError> {
        let (s, tokens) = (session.clone(), tokens.clone());
        self.with_conn("create_session", move |conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO sessions (id, user_id, device_id, created_ms, second_factor_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    s.id,
                    s.user_id,
                    s.device_id,
                    s.created_ms,
                    s.second_factor_ms
                ],
            )?;
            insert_tokens(&tx, &s.id, &tokens)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn access_token(&self, hash: &str) -> Result<Option<AccessTokenRecord>, StoreError> {
        let hash = hash.to_owned();
        self.with_conn("access_token", move |conn| {
            Ok(conn
                .query_row(&sql::access_token(), params![hash], |r| {
                    Ok(AccessTokenRecord {
                        session_id: r.get(0)?,
                        expires_ms: r.get(1)?,
                        second_factor_ms: r.get(2)?,
                        session_revoked: r.get(3)?,
                        user: user_from_row(r, 4)?,
                        device: device_from_row(r, 12)?,
                    })
                })
                .optional()?)
        })
        .await
    }

    async fn refresh_token(&self, hash: &str) -> Result<Option<RefreshTokenRecord>, StoreError> {
        let hash = hash.to_owned();
        self.with_conn("refresh_token", move |conn| {
            Ok(conn
                .query_row(sql::REFRESH_TOKEN, params![hash], |r| {
                    Ok(RefreshTokenRecord {
                        session_id: r.get(0)?,
                        user_id: r.get(1)?,
                        device_id: r.get(2)?,
                        generation: r.get(3)?,
                        expires_ms: r.get(4)?,
                        used_ms: r.get(5)?,
                        later_generation_used: r.get(6)?,
                        session_revoked: r.get(7)?,
                        device_revoked: r.get(8)?,
                        user_disabled: r.get(9)?,
                    })
                })
                .optional()?)
        })
        .await
    }

    async fn exchange_refresh_token(
        &self,
        hash: &str,
        next: &TokenHashes,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let (hash, next) = (hash.to_owned(), next.clone());
        self.with_conn("exchange_refresh_token", move |conn| {
            let tx = conn.transaction()?;
            let session_id: Option<String> = tx
                .query_row(
                    "UPDATE session_tokens SET used_ms = ?2
                     WHERE token_hash = ?1 AND kind = 'refresh' AND used_ms IS NULL
                     RETURNING session_id",
                    params![hash, now_ms],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(session_id) = session_id else {
                return Ok(false);
            };
            insert_tokens(&tx, &session_id, &next)?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn revoke_session(
        &self,
        id: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let (id, reason) = (id.to_owned(), reason.to_owned());
        self.with_conn("revoke_session", move |conn| {
            Ok(conn.execute(
                "UPDATE sessions SET revoked_ms = ?2, revoked_reason = ?3
                 WHERE id = ?1 AND revoked_ms IS NULL",
                params![id, now_ms, reason],
            )? == 1)
        })
        .await
    }

    async fn revoke_user_sessions(
        &self,
        user_id: &str,
        except: Option<&str>,
        reason: &str,
        now_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let (user_id, reason) = (user_id.to_owned(), reason.to_owned());
        let except = except.map(str::to_owned);
        self.with_conn("revoke_user_sessions", move |conn| {
            let mut stmt = conn.prepare(
                "UPDATE sessions SET revoked_ms = ?2, revoked_reason = ?3
                 WHERE user_id = ?1 AND revoked_ms IS NULL AND (?4 IS NULL OR id <> ?4) RETURNING id",
            )?;
            let rows = stmt.query_map(params![user_id, now_ms, reason, except], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<String>, _>>()?)
        })
        .await
    }

    async fn session_live(&self, session_id: &str) -> Result<bool, StoreError> {
        let session_id = session_id.to_owned();
        self.with_conn("session_live", move |conn| {
            Ok(conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM sessions s JOIN devices d ON d.id = s.device_id JOIN users u ON u.id = s.user_id
                 WHERE s.id = ?1 AND s.revoked_ms IS NULL AND d.revoked_ms IS NULL AND u.disabled_at IS NULL)",
                params![session_id],
                |r| r.get(0),
            )?)
        })
        .await
    }

    async fn record_second_factor(&self, session_id: &str, now_ms: i64) -> Result<(), StoreError> {
        let session_id = session_id.to_owned();
        self.with_conn("record_second_factor", move |conn| {
            conn.execute(
                "UPDATE sessions SET second_factor_ms = ?2 WHERE id = ?1",
                params![session_id, now_ms],
            )?;
            Ok(())
        })
        .await
    }

    async fn prune_expired(&self, now_ms: i64) -> Result<u64, StoreError> {
        self.with_conn("prune_expired", move |conn| {
            let tx = conn.transaction()?;
            let mut deleted = 0;
            for sql in PRUNE {
                deleted += tx.execute(sql, params![now_ms])? as u64;
            }
            tx.commit()?;
            Ok(deleted)
        })
        .await
    }

    async fn create_challenge(&self, hash: &str, challenge: &Challenge) -> Result<(), StoreError> {
        let (hash, c) = (hash.to_owned(), challenge.clone());
        self.with_conn("create_challenge", move |conn| {
            // Expired challenges are swept here, so the table stays small.
            conn.execute(
                "DELETE FROM sign_in_challenges WHERE expires_ms < ?1",
                params![c.expires_ms - 24 * 3600 * 1000],
            )?;
            conn.execute(
                "INSERT INTO sign_in_challenges
                    (token_hash, user_id, purpose, device_id, device_name, app_version, expires_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    hash,
                    c.user_id,
                    c.purpose.as_str(),
                    c.device_id,
                    c.device_name,
                    c.app_version,
                    c.expires_ms
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn challenge(&self, hash: &str) -> Result<Option<Challenge>, StoreError> {
        let hash = hash.to_owned();
        self.with_conn("challenge", move |conn| {
            let row = conn
                .query_row(
                    "SELECT user_id, purpose, device_id, device_name, app_version, expires_ms,
                            used_ms IS NOT NULL
                     FROM sign_in_challenges WHERE token_hash = ?1",
                    params![hash],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                            r.get(6)?,
                        ))
                    },
                )
                .optional()?;
            row.map(
                |(user_id, purpose, device_id, device_name, app_version, expires_ms, used)| {
                    Ok(Challenge {
                        user_id,
                        purpose: ChallengePurpose::parse(&purpose)?,
                        device_id,
                        device_name,
                        app_version,
                        expires_ms,
                        used,
                    })
                },
            )
            .transpose()
        })
        .await
    }

    async fn use_challenge(&self, hash: &str, now_ms: i64) -> Result<bool, StoreError> {
        let hash = hash.to_owned();
        self.with_conn("use_challenge", move |conn| {
            Ok(conn.execute(
                "UPDATE sign_in_challenges SET used_ms = ?2 WHERE token_hash = ?1 AND used_ms IS NULL",
                params![hash, now_ms],
            )? == 1)
        })
        .await
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>, StoreError> {
        self.with_conn("list_api_keys", move |conn| {
            let mut stmt = conn.prepare(
                "SELECT id, name, role, created_at, last_used_at, revoked_at FROM api_keys
                 ORDER BY created_at, id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })?;
            rows.map(|row| {
                let (id, name, role, created_at, last_used_at, revoked_at) = row?;
                Ok(ApiKeyInfo {
                    role: parse_role(&id, &role)?,
                    id,
                    name,
                    created_at,
                    last_used_at,
                    revoked_at,
                })
            })
            .collect()
        })
        .await
    }

    async fn revoke_api_key(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.with_conn("revoke_api_key", move |conn| {
            Ok(conn.execute(
                &format!(
                    "UPDATE api_keys SET revoked_at = {NOW} WHERE id = ?1 AND revoked_at IS NULL"
                ),
                params![id],
            )? == 1)
        })
        .await
    }
}

#[async_trait]
impl SettingsHistory for SqliteStore {
    async fn add_settings_backup(&self, backup: &SettingsBackup) -> Result<(), StoreError> {
        let b = backup.clone();
        self.with_conn("add_settings_backup", move |conn| {
            conn.execute(
                "INSERT INTO settings_backups (id, document_id, taken_ms, settings, heads) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![b.id, b.document_id, b.taken_ms, b.settings.to_string(), b.heads],
            )?;
            Ok(())
        })
        .await
    }

    async fn settings_backups(&self, id: DocumentId) -> Result<Vec<SettingsBackup>, StoreError> {
        self.with_conn("settings_backups", move |conn| {
            let mut stmt = conn.prepare(
                "SELECT id, document_id, taken_ms, settings, heads FROM settings_backups
                 WHERE document_id = ?1 ORDER BY taken_ms DESC, id DESC",
            )?;
            let rows = stmt.query_map(params![id.to_string()], |r| {
                Ok(SettingsBackup {
                    id: r.get(0)?,
                    document_id: r.get(1)?,
                    taken_ms: r.get(2)?,
                    settings: serde_json::from_str(&r.get::<_, String>(3)?).unwrap_or_default(),
                    heads: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn delete_settings_backups(&self, ids: &[String]) -> Result<(), StoreError> {
        let ids = ids.to_vec();
        self.with_conn("delete_settings_backups", move |conn| {
            let tx = conn.transaction()?;
            for id in &ids {
                tx.execute("DELETE FROM settings_backups WHERE id = ?1", params![id])?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl SecretStore for SqliteStore {
    async fn shared_secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>, StoreError> {
        let (name, candidate) = (name.to_owned(), candidate.to_vec());
        self.with_conn("shared_secret", move |conn| {
            conn.execute(
                "INSERT INTO server_secrets (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                params![name, candidate],
            )?;
            Ok(conn.query_row(
                "SELECT value FROM server_secrets WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )?)
        })
        .await
    }

    async fn replace_shared_secret(
        &self,
        name: &str,
        expected: &[u8],
        value: &[u8],
    ) -> Result<bool, StoreError> {
        let (name, expected, value) = (name.to_owned(), expected.to_vec(), value.to_vec());
        self.with_conn("replace_shared_secret", move |conn| {
            Ok(conn.execute(
                "UPDATE server_secrets SET value = ?3 WHERE name = ?1 AND value = ?2",
                params![name, expected, value],
            )? == 1)
        })
        .await
    }

    async fn totp_secrets(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.with_conn("totp_secrets", move |conn| {
            let mut stmt = conn.prepare(
                "SELECT id, totp_secret FROM users WHERE totp_secret IS NOT NULL ORDER BY id",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn replace_totp_secret(
        &self,
        user_id: &str,
        expected: &str,
        value: &str,
    ) -> Result<bool, StoreError> {
        let (id, expected, value) = (user_id.to_owned(), expected.to_owned(), value.to_owned());
        self.with_conn("replace_totp_secret", move |conn| {
            Ok(conn.execute(
                "UPDATE users SET totp_secret = ?3 WHERE id = ?1 AND totp_secret = ?2",
                params![id, expected, value],
            )? == 1)
        })
        .await
    }
}

pub(super) fn read_scope(
    conn: &rusqlite::Connection,
    id: DocumentId,
) -> Result<Option<DocumentScope>, StoreError> {
    let row: Option<(String, String)> = conn
        .query_row(
            "SELECT kind, scope FROM document_scopes WHERE document_id = ?1",
            params![id.to_string()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    row.map(|(kind, scope)| {
        Ok(DocumentScope {
            kind: parse_kind(&kind)?,
            scope,
        })
    })
    .transpose()
}
