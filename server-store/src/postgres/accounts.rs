//! [`AccountStore`], [`SettingsHistory`] and [`SecretStore`] on PostgreSQL.

use async_trait::async_trait;
use sync_protocol::DocumentId;
use tokio_postgres::Row;

use super::{PostgresStore, user_from_row};
use crate::records::{
    AccessTokenRecord, ApiKeyInfo, Challenge, ChallengePurpose, Device, NewSession,
    RefreshTokenRecord, SettingsBackup, TokenHashes, UserSummary,
};
use crate::sql::{self, DEVICE_COLUMNS, PRUNE, USER_COLUMNS, parse_role};
use crate::{AccountStore, ApiKey, SecretStore, SettingsHistory};
use crate::{StoreError, User};
use api_types::Role;

/// `timestamptz` as the RFC 3339 UTC text the SQLite store keeps.
fn utc_text(column: &str) -> String {
    format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')")
}

fn device_from_row(r: &Row, start: usize) -> Device {
    Device {
        id: r.get(start),
        user_id: r.get(start + 1),
        name: r.get(start + 2),
        app_version: r.get(start + 3),
        created_ms: r.get(start + 4),
        last_seen_ms: r.get(start + 5),
        revoked_ms: r.get(start + 6),
    }
}

async fn insert_tokens(
    tx: &tokio_postgres::Transaction<'_>,
    session_id: &str,
    tokens: &TokenHashes,
) -> Result<(), StoreError> {
    let generation = i64::from(tokens.generation);
    for (kind, hash, expires) in [
        ("access", &tokens.access_hash, tokens.access_expires_ms),
        ("refresh", &tokens.refresh_hash, tokens.refresh_expires_ms),
    ] {
        tx.execute(
            "INSERT INTO session_tokens (token_hash, session_id, kind, generation, expires_ms)
             VALUES ($1, $2, $3, $4, $5)",
            &[hash, &session_id, &kind, &generation, &expires],
        )
        .await?;
    }
    Ok(())
}

#[async_trait]
impl AccountStore for PostgresStore {
    async fn insert_api_key(&self, key: &ApiKey, token_hash: &str) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO api_keys (id, name, role, token_hash) VALUES ($1, $2, $3, $4)",
                &[&key.id, &key.name, &key.role.as_str(), &token_hash],
            )
            .await?;
        Ok(())
    }

    async fn authenticate_api_key(&self, token_hash: &str) -> Result<Option<ApiKey>, StoreError> {
        let client = self.pool.get().await?;
        let Some(row) = client
            .query_opt(
                "UPDATE api_keys SET last_used_at = now()
                 WHERE token_hash = $1 AND revoked_at IS NULL
                 RETURNING id, name, role",
                &[&token_hash],
            )
            .await?
        else {
            return Ok(None);
        };
        let role: String = row.get(2);
        let id: String = row.get(0);
        let role = role
            .parse()
            .map_err(|_| StoreError::Database(format!("api key {id} has unknown role {role}")))?;
        Ok(Some(ApiKey {
            id,
            name: row.get(1),
            role,
        }))
    }

    async fn insert_user(&self, user: &User) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        let inserted = client
            .execute(
                "INSERT INTO users (id, email, role, password_hash) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (email) DO NOTHING",
                &[
                    &user.id,
                    &user.email,
                    &user.role.as_str(),
                    &user.password_hash,
                ],
            )
            .await?;
        Ok(inserted > 0)
    }

    async fn user_by_normalized_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        let client = self.pool.get().await?;
        client
            .query_opt(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1"),
                &[&email],
            )
            .await?
            .map(|r| user_from_row(&r, 0))
            .transpose()
    }

    async fn set_totp_secret(&self, user_id: &str, secret: &str) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "UPDATE users SET totp_secret = $2, totp_confirmed_at = NULL, totp_last_step = NULL WHERE id = $1",
                &[&user_id, &secret],
            )
            .await?;
        Ok(())
    }

    async fn accept_totp_step(
        &self,
        user_id: &str,
        step: u64,
        confirm: bool,
    ) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        // One statement, so two nodes checking the same code cannot both accept it.
        let changed = client
            .execute(
                "UPDATE users SET totp_last_step = $2,
                    totp_confirmed_at = CASE WHEN $3 THEN coalesce(totp_confirmed_at, now()) ELSE totp_confirmed_at END
                 WHERE id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)",
                &[&user_id, &(step as i64), &confirm],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn replace_recovery_codes(
        &self,
        user_id: &str,
        hashes: &[String],
    ) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute("DELETE FROM recovery_codes WHERE user_id = $1", &[&user_id])
            .await?;
        for hash in hashes {
            tx.execute(
                "INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)",
                &[&user_id, hash],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn consume_recovery_code(&self, user_id: &str, hash: &str) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        let used = client
            .execute(
                "UPDATE recovery_codes SET used_at = now() WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
                &[&user_id, &hash],
            )
            .await?;
        Ok(used == 1)
    }

    async fn user_by_id(&self, id: &str) -> Result<Option<User>, StoreError> {
        let client = self.pool.get().await?;
        client
            .query_opt(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"),
                &[&id],
            )
            .await?
            .map(|r| user_from_row(&r, 0))
            .transpose()
    }

    async fn list_users(&self) -> Result<Vec<UserSummary>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT u.id, u.email, u.role, u.totp_confirmed_at IS NOT NULL, u.disabled_at IS NOT NULL,
                        coalesce((SELECT array_agg(event_id ORDER BY event_id) FROM staff_assignments a
                                  WHERE a.user_id = u.id), '{}')
                 FROM users u ORDER BY u.email",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.get(0);
                Ok(UserSummary {
                    role: parse_role(&id, r.get(2))?,
                    id,
                    email: r.get(1),
                    totp_enrolled: r.get(3),
                    disabled: r.get(4),
                    events: r.get(5),
                })
            })
            .collect()
    }

    async fn set_user_role(&self, id: &str, role: Role) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .execute(
                "UPDATE users SET role = $2 WHERE id = $1",
                &[&id, &role.as_str()],
            )
            .await?
            == 1)
    }

    async fn set_user_disabled(&self, id: &str, disabled: bool) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .execute(
                "UPDATE users SET disabled_at = CASE WHEN $2::boolean THEN coalesce(disabled_at, now()) END
                 WHERE id = $1",
                &[&id, &disabled],
            )
            .await?
            == 1)
    }

    async fn set_password_hash(&self, id: &str, hash: &str) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .execute(
                "UPDATE users SET password_hash = $2 WHERE id = $1",
                &[&id, &hash],
            )
            .await?
            == 1)
    }

    async fn reset_totp(&self, id: &str) -> Result<bool, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let changed = tx
            .execute(
                "UPDATE users SET totp_secret = NULL, totp_confirmed_at = NULL, totp_last_step = NULL
                 WHERE id = $1",
                &[&id],
            )
            .await?;
        tx.execute("DELETE FROM recovery_codes WHERE user_id = $1", &[&id])
            .await?;
        tx.commit().await?;
        Ok(changed == 1)
    }

    async fn set_assignments(&self, user_id: &str, events: &[String]) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "DELETE FROM staff_assignments WHERE user_id = $1",
            &[&user_id],
        )
        .await?;
        for event in events {
            tx.execute(
                "INSERT INTO staff_assignments (user_id, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&user_id, event],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn assignments(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT event_id FROM staff_assignments WHERE user_id = $1 ORDER BY event_id",
                &[&user_id],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn insert_device(&self, device: &Device) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO devices (id, user_id, name, app_version, created_ms, last_seen_ms)
                 VALUES ($1, $2, $3, $4, $5, $5)",
                &[
                    &device.id,
                    &device.user_id,
                    &device.name,
                    &device.app_version,
                    &device.created_ms,
                ],
            )
            .await?;
        Ok(())
    }

    async fn device(&self, id: &str) -> Result<Option<Device>, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .query_opt(
                &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id = $1"),
                &[&id],
            )
            .await?
            .map(|r| device_from_row(&r, 0)))
    }

    async fn list_devices(&self, user_id: Option<&str>) -> Result<Vec<Device>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {DEVICE_COLUMNS} FROM devices WHERE $1::text IS NULL OR user_id = $1
                     ORDER BY last_seen_ms DESC, id"
                ),
                &[&user_id],
            )
            .await?;
        Ok(rows.iter().map(|r| device_from_row(r, 0)).collect())
    }

    async fn revoke_device(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let changed = tx
            .execute(
                "UPDATE devices SET revoked_ms = $2 WHERE id = $1 AND revoked_ms IS NULL",
                &[&id, &now_ms],
            )
            .await?;
        tx.execute(
            "UPDATE sessions SET revoked_ms = $2, revoked_reason = 'device_revoked'
             WHERE device_id = $1 AND revoked_ms IS NULL",
            &[&id, &now_ms],
        )
        .await?;
        tx.commit().await?;
        Ok(changed == 1)
    }

    async fn touch_device(
        &self,
        id: &str,
        app_version: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "UPDATE devices SET last_seen_ms = $2::bigint,
                    app_version = CASE WHEN $3::text = '' THEN app_version ELSE $3 END
                 WHERE id = $1 AND (last_seen_ms < $2::bigint - 60000 OR ($3 <> '' AND app_version <> $3))",
                &[&id, &now_ms, &app_version],
            )
            .await?;
        Ok(())
    }

    async fn insert_session(
        &self,
        session: &NewSession,
        tokens: &TokenHashes,
    ) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let s = session;
        tx.execute(
            "INSERT INTO sessions (id, user_id, device_id, created_ms, second_factor_ms)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &s.id,
                &s.user_id,
                &s.device_id,
                &s.created_ms,
                &s.second_factor_ms,
            ],
        )
        .await?;
        insert_tokens(&tx, &s.id, tokens).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn access_token(&self, hash: &str) -> Result<Option<AccessTokenRecord>, StoreError> {
        let client = self.pool.get().await?;
        client
            .query_opt(&sql::numbered(&sql::access_token()), &[&hash])
            .await?
            .map(|r| {
                Ok(AccessTokenRecord {
                    session_id: r.get(0),
                    expires_ms: r.get(1),
                    second_factor_ms: r.get(2),
                    session_revoked: r.get(3),
                    user: user_from_row(&r, 4)?,
                    device: device_from_row(&r, 12),
                })
            })
            .transpose()
    }

    async fn refresh_token(&self, hash: &str) -> Result<Option<RefreshTokenRecord>, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .query_opt(&sql::numbered(sql::REFRESH_TOKEN), &[&hash])
            .await?
            .map(|r| RefreshTokenRecord {
                session_id: r.get(0),
                user_id: r.get(1),
                device_id: r.get(2),
                generation: r.get::<_, i64>(3) as u32,
                expires_ms: r.get(4),
                used_ms: r.get(5),
                later_generation_used: r.get(6),
                session_revoked: r.get(7),
                device_revoked: r.get(8),
                user_disabled: r.get(9),
            }))
    }

    async fn exchange_refresh_token(
        &self,
        hash: &str,
        next: &TokenHashes,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // One conditional UPDATE: of two nodes exchanging the same token at
        // once, exactly one sees the row change.
        let Some(row) = tx
            .query_opt(
                "UPDATE session_tokens SET used_ms = $2
                 WHERE token_hash = $1 AND kind = 'refresh' AND used_ms IS NULL
                 RETURNING session_id",
                &[&hash, &now_ms],
            )
            .await?
        else {
            return Ok(false);
        };
        let session_id: String = row.get(0);
        insert_tokens(&tx, &session_id, next).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn revoke_session(
        &self,
        id: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .execute(
                "UPDATE sessions SET revoked_ms = $2, revoked_reason = $3
                 WHERE id = $1 AND revoked_ms IS NULL",
                &[&id, &now_ms, &reason],
            )
            .await?
            == 1)
    }

    async fn revoke_user_sessions(
        &self,
        user_id: &str,
        except: Option<&str>,
        reason: &str,
        now_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "UPDATE sessions SET revoked_ms = $2, revoked_reason = $3
                 WHERE user_id = $1 AND revoked_ms IS NULL AND ($4::text IS NULL OR id <> $4)
                 RETURNING id",
                &[&user_id, &now_ms, &reason, &except],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn session_live(&self, session_id: &str) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM sessions s JOIN devices d ON d.id = s.device_id JOIN users u ON u.id = s.user_id
                 WHERE s.id = $1 AND s.revoked_ms IS NULL AND d.revoked_ms IS NULL AND u.disabled_at IS NULL)",
                &[&session_id],
            )
            .await?
            .get(0))
    }

    async fn record_second_factor(&self, session_id: &str, now_ms: i64) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "UPDATE sessions SET second_factor_ms = $2 WHERE id = $1",
                &[&session_id, &now_ms],
            )
            .await?;
        Ok(())
    }

    async fn prune_expired(&self, now_ms: i64) -> Result<u64, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let mut deleted = 0;
        for statement in PRUNE {
            deleted += tx.execute(&sql::numbered(statement), &[&now_ms]).await?;
        }
        tx.commit().await?;
        Ok(deleted)
    }

    async fn create_challenge(&self, hash: &str, c: &Challenge) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        // Expired challenges are swept here, so the table stays small.
        client
            .execute(
                "DELETE FROM sign_in_challenges WHERE expires_ms < $1",
                &[&(c.expires_ms - 24 * 3600 * 1000)],
            )
            .await?;
        client
            .execute(
                "INSERT INTO sign_in_challenges
                    (token_hash, user_id, purpose, device_id, device_name, app_version, expires_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &hash,
                    &c.user_id,
                    &c.purpose.as_str(),
                    &c.device_id,
                    &c.device_name,
                    &c.app_version,
                    &c.expires_ms,
                ],
            )
            .await?;
        Ok(())
    }

    async fn challenge(&self, hash: &str) -> Result<Option<Challenge>, StoreError> {
        let client = self.pool.get().await?;
        client
            .query_opt(
                "SELECT user_id, purpose, device_id, device_name, app_version, expires_ms,
                        used_ms IS NOT NULL
                 FROM sign_in_challenges WHERE token_hash = $1",
                &[&hash],
            )
            .await?
            .map(|r| {
                Ok(Challenge {
                    user_id: r.get(0),
                    purpose: ChallengePurpose::parse(r.get(1))?,
                    device_id: r.get(2),
                    device_name: r.get(3),
                    app_version: r.get(4),
                    expires_ms: r.get(5),
                    used: r.get(6),
                })
            })
            .transpose()
    }

    async fn use_challenge(&self, hash: &str, now_ms: i64) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .execute(
                "UPDATE sign_in_challenges SET used_ms = $2 WHERE token_hash = $1 AND used_ms IS NULL",
                &[&hash, &now_ms],
            )
            .await?
            == 1)
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT id, name, role, {}, {}, {} FROM api_keys ORDER BY created_at, id",
                    utc_text("created_at"),
                    utc_text("last_used_at"),
                    utc_text("revoked_at")
                ),
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.get(0);
                Ok(ApiKeyInfo {
                    role: parse_role(&id, r.get(2))?,
                    id,
                    name: r.get(1),
                    created_at: r.get(3),
                    last_used_at: r.get(4),
                    revoked_at: r.get(5),
                })
            })
            .collect()
    }

    async fn revoke_api_key(&self, id: &str) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .execute(
                "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
                &[&id],
            )
            .await?
            == 1)
    }
}

#[async_trait]
impl SettingsHistory for PostgresStore {
    async fn add_settings_backup(&self, b: &SettingsBackup) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO settings_backups (id, document_id, taken_ms, settings, heads) VALUES ($1, $2, $3, $4, $5)",
                &[&b.id, &b.document_id, &b.taken_ms, &b.settings.to_string(), &b.heads],
            )
            .await?;
        Ok(())
    }

    async fn settings_backups(&self, id: DocumentId) -> Result<Vec<SettingsBackup>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT id, document_id, taken_ms, settings, heads FROM settings_backups
                 WHERE document_id = $1 ORDER BY taken_ms DESC, id DESC",
                &[&id.to_string()],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| SettingsBackup {
                id: r.get(0),
                document_id: r.get(1),
                taken_ms: r.get(2),
                settings: serde_json::from_str(r.get::<_, &str>(3)).unwrap_or_default(),
                heads: r.get(4),
            })
            .collect())
    }

    async fn delete_settings_backups(&self, ids: &[String]) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client
            .execute("DELETE FROM settings_backups WHERE id = ANY($1)", &[&ids])
            .await?;
        Ok(())
    }
}

#[async_trait]
impl SecretStore for PostgresStore {
    async fn shared_secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>, StoreError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&name, &candidate],
            )
            .await?;
        Ok(client
            .query_one("SELECT value FROM server_secrets WHERE name = $1", &[&name])
            .await?
            .get(0))
    }

    async fn replace_shared_secret(
        &self,
        name: &str,
        expected: &[u8],
        value: &[u8],
    ) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .execute(
                "UPDATE server_secrets SET value = $3 WHERE name = $1 AND value = $2",
                &[&name, &expected, &value],
            )
            .await?
            == 1)
    }

    async fn totp_secrets(&self) -> Result<Vec<(String, String)>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT id, totp_secret FROM users WHERE totp_secret IS NOT NULL ORDER BY id",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn replace_totp_secret(
        &self,
        user_id: &str,
        expected: &str,
        value: &str,
    ) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .execute(
                "UPDATE users SET totp_secret = $3 WHERE id = $1 AND totp_secret = $2",
                &[&user_id, &expected, &value],
            )
            .await?
            == 1)
    }
}
