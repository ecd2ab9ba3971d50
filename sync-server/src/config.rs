//! Server configuration: defaults, then a TOML file, then `SYNC_*`
//! environment variables, then command-line flags (each overriding the last).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// PEM certificate chain: with `tls_key`, the listener speaks TLS
    /// (`https://`, `wss://`); reloaded when the file changes or on SIGHUP.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Seconds between checks of the certificate files for a change (0: only
    /// on SIGHUP).
    pub tls_reload_check_secs: u64,
    /// Reverse proxies in front of the server (e.g. `["127.0.0.1"]` for nginx
    /// on the same box): from these peers only, `X-Forwarded-For` names the
    /// client for per-address limits, throttles and the audit log.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// The key (32 bytes, base64, in a file) that seals TOTP secrets and the
    /// refresh-derivation secret at rest; or `SYNC_SECRETS_KEY`. Without
    /// either, the embedded store makes `data_dir/secrets.key`; PostgreSQL
    /// nodes must all be given the same key.
    pub secrets_key_file: Option<PathBuf>,
    /// Keys being rotated away from: they open sealed values, never seal
    /// (`sync-server secrets rotate` moves everything to the current key).
    pub secrets_previous_key_files: Vec<PathBuf>,
    /// Directory of the embedded store (created on start).
    pub data_dir: PathBuf,
    /// `postgres://...`: use PostgreSQL instead of the embedded store.
    pub database_url: Option<String>,
    /// Largest websocket message accepted, in bytes.
    pub max_message_bytes: usize,
    /// Seconds a document with no connected peer stays in memory.
    pub evict_after_secs: u64,
    /// Estimated MiB the loaded documents may take together; beyond it,
    /// documents without a peer leave at once, the longest idle first
    /// (0: no budget, only `evict_after_secs`).
    pub document_memory_budget_mib: u64,
    /// Incremental chunks per document before they may be compacted into a
    /// snapshot: from then on once they add up to a quarter of the snapshot,
    /// and at the latest at 16 times this many.
    pub compact_after_chunks: u64,
    /// Milliseconds a peer sent changes it has not answered is held back
    /// from later rounds of a document's messages, to get everything due in
    /// one message when it answers (0: off, every round goes to everyone
    /// due). Fewer messages per change with many writers on a document
    /// (`load`: 36 -> 22-26 us of server CPU per delivery at 50), no delay for
    /// peers that keep up; off by default until the reconnect's admin-tablet
    /// outliers, seen more often with it, are understood (BENCHMARKS.md).
    pub pace_unanswered_ms: u64,
    /// fsync every commit (survives power loss, slower). Without it a commit
    /// survives the process being killed, which is the common failure.
    pub synchronous_full: bool,
    pub log_format: LogFormat,
    /// HTTP requests (including websocket upgrades) per second from one address.
    pub http_requests_per_second_per_ip: u32,
    /// Requests one address may make at once before the rate applies.
    pub http_burst_per_ip: u32,
    /// API requests per second from one signed-in user or API key.
    pub http_requests_per_second_per_user: u32,
    /// Requests one user may make at once before the rate applies.
    pub http_burst_per_user: u32,
    /// Open sync connections one principal (token) may hold.
    pub max_connections_per_principal: usize,
    /// Sustained messages per second on one websocket; beyond it the server
    /// stops reading that socket until the rate allows (nothing is dropped).
    pub messages_per_second_per_connection: u32,
    pub message_burst_per_connection: u32,
    /// Lifetime of an access token (what the sync upgrade and the API accept).
    pub access_token_ttl_secs: u64,
    /// Lifetime of an unused refresh token.
    pub refresh_token_ttl_secs: u64,
    /// A used refresh token presented again within this many seconds gets
    /// the same answer (the first one was lost) instead of ending the session.
    pub refresh_grace_secs: u64,
    /// Privileged actions need a TOTP code entered within this many seconds.
    pub step_up_window_secs: u64,
    /// Roles that must use a second factor (TOTP) to sign in.
    pub require_2fa_roles: Vec<String>,
    /// Issuer name shown in authenticator apps.
    pub totp_issuer: String,
    /// Failed sign-in steps (password or code) allowed per account and per
    /// address before delays start; the delay then doubles from 1 s to 15 min.
    pub sign_in_free_attempts: u32,
    /// Members' settings are backed up this many seconds after they last changed.
    pub settings_backup_debounce_secs: u64,
    /// Settings backups kept: all of the last this many minutes...
    pub settings_backup_keep_all_minutes: i64,
    /// ...the newest per hour for this many hours...
    pub settings_backup_hourly_hours: i64,
    /// ...and the newest per day for this many days.
    pub settings_backup_daily_days: i64,
    /// The embedded store is backed up (and the copy verified) this often,
    /// into `<data_dir>/backups/scheduled/`; 0 turns it off.
    pub backup_every_secs: u64,
    /// A scheduled backup is not started when it would leave less than this
    /// much free disk.
    pub backup_min_free_mib: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("valid default address"),
            tls_cert: None,
            tls_key: None,
            tls_reload_check_secs: 10,
            trusted_proxies: Vec::new(),
            secrets_key_file: None,
            secrets_previous_key_files: Vec::new(),
            data_dir: PathBuf::from("data"),
            database_url: None,
            max_message_bytes: sync_protocol::DEFAULT_MAX_MESSAGE_BYTES,
            evict_after_secs: 60,
            document_memory_budget_mib: 512,
            compact_after_chunks: 64,
            pace_unanswered_ms: 0,
            synchronous_full: false,
            log_format: LogFormat::Text,
            http_requests_per_second_per_ip: 50,
            http_burst_per_ip: 200,
            http_requests_per_second_per_user: 20,
            http_burst_per_user: 100,
            max_connections_per_principal: 200,
            messages_per_second_per_connection: 2000,
            message_burst_per_connection: 4000,
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            refresh_grace_secs: 30,
            step_up_window_secs: 5 * 60,
            require_2fa_roles: vec!["admin".into(), "staff".into()],
            totp_issuer: "Sync".into(),
            sign_in_free_attempts: 3,
            settings_backup_debounce_secs: 30,
            settings_backup_keep_all_minutes: 60,
            settings_backup_hourly_hours: 48,
            settings_backup_daily_days: 30,
            backup_every_secs: 3600,
            backup_min_free_mib: 1024,
        }
    }
}

impl Config {
    /// Token lifetimes and windows for the session rules.
    pub fn session_policy(&self) -> crate::identity::session::SessionPolicy {
        use std::time::Duration;
        crate::identity::session::SessionPolicy {
            access_ttl: Duration::from_secs(self.access_token_ttl_secs.max(1)),
            refresh_ttl: Duration::from_secs(self.refresh_token_ttl_secs.max(1)),
            refresh_grace: Duration::from_secs(self.refresh_grace_secs),
            step_up_window: Duration::from_secs(self.step_up_window_secs),
            ..Default::default()
        }
    }

    /// The keys that seal secrets at rest (see `secrets_key_file`).
    pub fn secret_keys(&self) -> Result<crate::secrets::SecretKeys, crate::secrets::SecretsError> {
        crate::secrets::SecretKeys::load(
            self.secrets_key_file.as_deref(),
            &self.secrets_previous_key_files,
            &self.data_dir,
            self.database_url.is_some(),
        )
    }

    /// Whether users of `role` must sign in with a second factor.
    pub fn requires_2fa(&self, role: crate::auth::Role) -> bool {
        self.require_2fa_roles.iter().any(|r| r == role.as_str())
    }

    /// Defaults, the TOML file (if given, it must exist), then `SYNC_*` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, Box<figment::Error>> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(Box::new(figment::Error::from(format!(
                    "config file {} does not exist",
                    file.display()
                ))));
            }
            figment = figment.merge(Toml::file(file));
        }
        // Only the keys of this struct: other SYNC_* variables (SYNC_CONFIG,
        // and whatever else shares the prefix) are not configuration errors.
        figment
            .merge(Env::prefixed("SYNC_").only(&[
                "listen",
                "tls_cert",
                "tls_key",
                "tls_reload_check_secs",
                "trusted_proxies",
                "secrets_key_file",
                "secrets_previous_key_files",
                "data_dir",
                "database_url",
                "max_message_bytes",
                "evict_after_secs",
                "document_memory_budget_mib",
                "compact_after_chunks",
                "pace_unanswered_ms",
                "synchronous_full",
                "log_format",
                "http_requests_per_second_per_ip",
                "http_burst_per_ip",
                "http_requests_per_second_per_user",
                "http_burst_per_user",
                "max_connections_per_principal",
                "messages_per_second_per_connection",
                "message_burst_per_connection",
                "access_token_ttl_secs",
                "refresh_token_ttl_secs",
                "refresh_grace_secs",
                "step_up_window_secs",
                "require_2fa_roles",
                "totp_issuer",
                "sign_in_free_attempts",
                "settings_backup_debounce_secs",
                "settings_backup_keep_all_minutes",
                "settings_backup_hourly_hours",
                "settings_backup_daily_days",
                "backup_every_secs",
                "backup_min_free_mib",
            ]))
            .extract()
            .map_err(Box::new)
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use super::*;

    #[test]
    fn file_then_environment_override_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "server.toml",
                "listen = \"127.0.0.1:9999\"\nmax_message_bytes = 1024\nlog_format = \"json\"\n",
            )?;
            jail.set_env("SYNC_MAX_MESSAGE_BYTES", "2048");
            jail.set_env("SYNC_SOMETHING_ELSE", "ignored");
            let config = Config::load(Some(Path::new("server.toml"))).map_err(|e| *e)?;
            assert_eq!(config.listen.port(), 9999);
            assert_eq!(config.max_message_bytes, 2048);
            assert_eq!(config.log_format, LogFormat::Json);
            assert_eq!(config.data_dir, PathBuf::from("data"));
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_missing_files_are_errors() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "listne = \"127.0.0.1:1\"\n")?;
            assert!(Config::load(Some(Path::new("bad.toml"))).is_err());
            assert!(Config::load(Some(Path::new("missing.toml"))).is_err());
            Ok(())
        });
    }
}
