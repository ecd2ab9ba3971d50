//! `sync-server`: serve, migrate and manage API tokens.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use migrations::{MigrationState, Migrator, SERVER_SQLITE, SqliteBackend};
use sync_server::audit::NewAuditEntry;
use sync_server::auth::{self, Role};
use sync_server::config::{Config, LogFormat};

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "sync-server",
    version,
    about = "Offline-first sync server (automerge-repo protocol v1)"
)]
struct Cli {
    /// TOML configuration file (settings there are overridden by SYNC_* variables and flags).
    #[arg(long, global = true, env = "SYNC_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory of the embedded store [default: ./data].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// PostgreSQL URL (postgres://...) to use instead of the embedded store.
    #[arg(long, global = true, env = "SYNC_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default when no command is given).
    Serve {
        /// Address to listen on [default: 127.0.0.1:8080].
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// PEM certificate chain: serve TLS (https://, wss://); reloaded on
        /// change or SIGHUP.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key of --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// Inspect or change the store's schema.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Manage people who sign in.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Check or export the audit log.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// The key that seals TOTP secrets at rest: make one, or rotate to it.
    Secrets {
        #[command(subcommand)]
        action: SecretsAction,
    },
    /// Copy the embedded store to FILE (`--to`), consistently, while the
    /// server runs; or `backup list` the scheduled backups.
    #[command(args_conflicts_with_subcommands = true)]
    Backup {
        #[arg(long, required = true)]
        to: Option<PathBuf>,
        #[command(subcommand)]
        action: Option<BackupAction>,
    },
    /// Replace the embedded store with a verified backup (server stopped):
    /// a file (`--from`), or the newest scheduled backup (`--latest`).
    Restore {
        #[arg(long, required_unless_present = "latest", conflicts_with = "latest")]
        from: Option<PathBuf>,
        #[arg(long)]
        latest: bool,
        /// Replace the store even if it is newer than the backup.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum BackupAction {
    /// The scheduled backups (each verified when taken), newest first.
    List,
}

#[derive(Subcommand)]
enum MigrateAction {
    /// List every migration and whether it is applied (and unchanged).
    Status,
    /// Apply pending migrations (up to --to).
    Up {
        #[arg(long)]
        to: Option<u32>,
    },
    /// Revert migrations: the last one, or everything above --to.
    Down {
        #[arg(long)]
        to: Option<u32>,
    },
    /// Fail if an applied migration was edited or is unknown to this build.
    Verify,
}

#[derive(Subcommand)]
enum UserAction {
    /// Create a user (e.g. the first admin). With --password-stdin the
    /// password is read from standard input, never from the command line.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "member")]
        role: Role,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

#[derive(Subcommand)]
enum AuditAction {
    /// Walk the hash chain; fails on any edited, removed or reordered entry.
    Verify,
    /// Write entries as JSON lines to stdout.
    Export {
        /// Only entries at or after this UTC time (RFC 3339, e.g. 2026-11-21T00:00:00Z).
        #[arg(long)]
        since: Option<String>,
    },
}

#[derive(Subcommand)]
enum SecretsAction {
    /// Write a new random key to FILE (readable by its owner only).
    NewKey {
        #[arg(long)]
        to: PathBuf,
    },
    /// Seal every secret under the current key (`secrets_key_file`), opening
    /// those sealed by a key in `secrets_previous_key_files`; afterwards the
    /// previous keys can go. Safe while servers run (each row is replaced
    /// only if unchanged).
    Rotate,
}

#[derive(Subcommand)]
enum TokenAction {
    /// Create an API token and print it (once) on stdout.
    Create {
        #[arg(long)]
        name: String,
        /// admin, staff or member.
        #[arg(long, default_value = "admin")]
        role: Role,
    },
}

/// Large blocks (4 MiB and up) always get pages of their own from the
/// system and give them back when freed. glibc otherwise raises its mmap
/// threshold to the size of the last large block freed, so from the second
/// sign-in on, each Argon2 hash's 19 MiB came from a heap arena and stayed
/// there: the soak bench showed resident memory climbing ~19 MiB at a time
/// over 30 minutes (BENCHMARKS.md, "Soak"). Whole-document saves are such
/// blocks too. Other allocators return pages by themselves.
fn return_large_blocks() {
    #[cfg(all(
        target_os = "linux",
        target_env = "gnu",
        not(feature = "mimalloc"),
        not(feature = "jemalloc")
    ))]
    // SAFETY: mallopt only sets an allocator parameter, before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
}

fn main() -> anyhow::Result<()> {
    return_large_blocks();
    let cli = Cli::parse();
    let mut config = Config::load(cli.config.as_deref()).context("loading configuration")?;
    if let Some(dir) = cli.data_dir {
        config.data_dir = dir;
    }
    if cli.database_url.is_some() {
        config.database_url = cli.database_url;
    }
    init_logging(config.log_format);
    let runtime = tokio::runtime::Runtime::new()?;
    match cli.command.unwrap_or(Command::Serve {
        listen: None,
        tls_cert: None,
        tls_key: None,
    }) {
        Command::Serve {
            listen,
            tls_cert,
            tls_key,
        } => {
            if tls_cert.is_some() {
                (config.tls_cert, config.tls_key) = (tls_cert, tls_key);
            }
            if let Some(listen) = listen {
                config.listen = listen;
            }
            runtime.block_on(serve(config))
        }
        Command::Migrate { action } => migrate(&config, action),
        Command::Token { action } => runtime.block_on(token(&config, action)),
        Command::Secrets { action } => runtime.block_on(secrets(&config, action)),
        Command::Audit { action } => runtime.block_on(audit(&config, action)),
        Command::User { action } => runtime.block_on(user(&config, action)),
        Command::Backup {
            action: Some(BackupAction::List),
            ..
        } => {
            no_postgres(&config, "backup list")?;
            let dir = sync_server::scheduled_backup::directory(&config.data_dir);
            let listed = sync_server::scheduled_backup::list(&dir)?;
            if listed.is_empty() {
                eprintln!("no scheduled backups in {}", dir.display());
            }
            for backup in listed {
                let at = chrono::DateTime::from_timestamp_millis(backup.taken_ms)
                    .unwrap_or_default()
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                println!("{at}\t{} bytes\t{}", backup.bytes, backup.path.display());
            }
            Ok(())
        }
        Command::Backup { to, action: None } => {
            no_postgres(&config, "backup")?;
            let to = to.context("give --to FILE, or `backup list`")?;
            let summary = sync_server::backup::backup(&config.data_dir, &to)?;
            println!(
                "backed up {} documents (schema {}) to {}",
                summary.documents,
                summary.schema_version,
                to.display()
            );
            Ok(())
        }
        Command::Restore {
            from,
            latest,
            force,
        } => {
            no_postgres(&config, "restore")?;
            let from = match from {
                Some(from) => from,
                None => {
                    debug_assert!(latest);
                    let dir = sync_server::scheduled_backup::directory(&config.data_dir);
                    sync_server::scheduled_backup::list(&dir)?
                        .into_iter()
                        .next()
                        .map(|newest| newest.path)
                        .with_context(|| format!("no scheduled backups in {}", dir.display()))?
                }
            };
            println!("restoring {}", from.display());
            let summary = sync_server::backup::restore(&config.data_dir, &from, force)?;
            println!(
                "restored {} documents (schema {}) into {}",
                summary.documents,
                summary.schema_version,
                config.data_dir.display()
            );
            Ok(())
        }
    }
}

/// Default `RUST_LOG`.
const DEFAULT_LOG_FILTER: &str = "info,automerge=warn";

fn init_logging(format: LogFormat) {
    // automerge puts `#[instrument]` spans at INFO on hot paths (its change
    // loader formats the whole change graph as a span field): keep it at warn
    // unless RUST_LOG asks for it explicitly, or every sync message costs O(history).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    // Logs go to stderr so that stdout carries only command output (tokens).
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn no_postgres(config: &Config, what: &str) -> anyhow::Result<()> {
    if config.database_url.is_some() {
        anyhow::bail!(
            "{what} works on the embedded store; for PostgreSQL use pg_dump --format=custom and pg_restore (see README)"
        );
    }
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // One server per data directory; `restore` checks the same lock.
    let _lock = if config.database_url.is_none() {
        Some(sync_server::backup::lock_data_dir(&config.data_dir)?)
    } else {
        None
    };
    let server = sync_server::start(&config)
        .await
        .context("starting the server")?;
    let stop = server.shutdown_handle();
    if let Some(tls) = server.tls().cloned() {
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let mut hangup = signal(SignalKind::hangup()).expect("SIGHUP handler");
            while hangup.recv().await.is_some() {
                if let Err(error) = tls.reload() {
                    tracing::error!(%error, "SIGHUP: TLS certificate not reloaded; keeping the old one");
                }
            }
        });
    }
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received; shutting down");
        let _ = stop.send(true);
    });
    server.wait().await.context("serving")?;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn migrate(config: &Config, action: MigrateAction) -> anyhow::Result<()> {
    #[cfg(feature = "postgres")]
    if let Some(url) = &config.database_url {
        let mut client =
            postgres::Client::connect(url, postgres::NoTls).context("connecting to PostgreSQL")?;
        let migrator = Migrator::new(
            &migrations::SERVER_POSTGRES,
            migrations::PostgresBackend::new(&mut client),
        )?;
        return run_migration(migrator, action);
    }
    #[cfg(not(feature = "postgres"))]
    if config.database_url.is_some() {
        anyhow::bail!(
            "this build of the server has no PostgreSQL support (built without the `postgres` feature)"
        );
    }
    std::fs::create_dir_all(&config.data_dir)?;
    let path = sync_server::store::sqlite_database_path(&config.data_dir);
    let mut conn =
        rusqlite::Connection::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let migrator = Migrator::new(&SERVER_SQLITE, SqliteBackend::new(&mut conn))?;
    run_migration(migrator, action)
}

fn run_migration<B: migrations::MigrationBackend>(
    mut migrator: Migrator<'_, B>,
    action: MigrateAction,
) -> anyhow::Result<()> {
    match action {
        MigrateAction::Status => {
            for status in migrator.status()? {
                let state = match status.state {
                    MigrationState::Pending => "pending".to_string(),
                    MigrationState::Applied {
                        applied_at,
                        checksum_matches: true,
                    } => format!("applied {applied_at}"),
                    MigrationState::Applied {
                        applied_at,
                        checksum_matches: false,
                    } => {
                        format!("applied {applied_at} CHANGED SINCE (checksum mismatch)")
                    }
                };
                println!("{:04} {:<24} {state}", status.version, status.name);
            }
        }
        MigrateAction::Up { to } => {
            let applied = migrator.up(to)?;
            println!(
                "applied {applied:?}; now at version {}",
                migrator.current_version()?
            );
        }
        MigrateAction::Down { to } => {
            let reverted = migrator.down(to)?;
            println!(
                "reverted {reverted:?}; now at version {}",
                migrator.current_version()?
            );
        }
        MigrateAction::Verify => {
            migrator.verify()?;
            println!(
                "ok: {} applied migrations match their files",
                migrator.current_version()?
            );
        }
    }
    Ok(())
}

async fn user(config: &Config, action: UserAction) -> anyhow::Result<()> {
    match action {
        UserAction::Create {
            email,
            role,
            password_stdin: _,
        } => {
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .context("reading the password from stdin")?;
            let password = password.trim_end_matches(['\r', '\n']);
            let hash = sync_server::identity::password::hash_password(password)?;
            let store = sync_server::open_store(config).await?;
            let user = store.accounts.create_user(&email, role, &hash).await?;
            store
                .audit
                .append_audit(
                    NewAuditEntry::new("cli", "user.created", "ok")
                        .target(format!("user:{}", user.id))
                        .details(
                            serde_json::json!({ "email": user.email, "role": user.role.as_str() }),
                        ),
                )
                .await?;
            store.node.close().await?;
            println!("{}", user.id);
        }
    }
    Ok(())
}

async fn audit(config: &Config, action: AuditAction) -> anyhow::Result<()> {
    let store = sync_server::open_store(config).await?;
    // Reads of the log are themselves audited.
    let (verb, details) = match &action {
        AuditAction::Verify => ("audit.verify", serde_json::json!({})),
        AuditAction::Export { since } => ("audit.export", serde_json::json!({ "since": since })),
    };
    match action {
        AuditAction::Verify => {
            let result = sync_server::audit_verify::verify_store(store.audit.as_ref()).await;
            let outcome = if result.is_ok() { "ok" } else { "error" };
            store
                .audit
                .append_audit(NewAuditEntry::new("cli", verb, outcome).details(details))
                .await?;
            store.node.close().await?;
            let count = result?;
            println!("ok: {count} audit entries, chain intact");
        }
        AuditAction::Export { since } => {
            store
                .audit
                .append_audit(NewAuditEntry::new("cli", verb, "ok").details(details))
                .await?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let mut after = 0;
            loop {
                let page = store.audit.audit_entries(after, 1000).await?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                for entry in &page {
                    if since.as_deref().is_some_and(|s| entry.at.as_str() < s) {
                        continue;
                    }
                    serde_json::to_writer(&mut out, entry)?;
                    std::io::Write::write_all(&mut out, b"\n")?;
                }
            }
            std::io::Write::flush(&mut out)?;
            store.node.close().await?;
        }
    }
    Ok(())
}

async fn secrets(config: &Config, action: SecretsAction) -> anyhow::Result<()> {
    match action {
        SecretsAction::NewKey { to } => {
            sync_server::secrets::write_key_file(&to, &sync_server::secrets::new_key_text())?;
            println!("new secrets key in {}", to.display());
        }
        SecretsAction::Rotate => {
            let keys = config.secret_keys().context("loading the secrets keys")?;
            let store = sync_server::open_store(config).await?;
            sync_server::secrets::shared_secret(&store, &keys, "refresh_token_key").await?;
            let done = sync_server::secrets::reseal_all(&store, &keys).await?;
            store
                .audit
                .append_audit(NewAuditEntry::new("cli", "secrets.rotated", "ok").details(
                    serde_json::json!({
                        "key": keys.current_id(),
                        "resealed": done.resealed,
                        "unreadable": done.unknown,
                    }),
                ))
                .await?;
            store.node.close().await?;
            println!(
                "sealed under key {}: {} resealed, {} already current, {} sealed by an unknown key (left as they are)",
                keys.current_id(),
                done.resealed,
                done.current,
                done.unknown
            );
            if done.unknown > 0 {
                anyhow::bail!(
                    "{} secrets are sealed by a key not in secrets_key_file or secrets_previous_key_files",
                    done.unknown
                );
            }
        }
    }
    Ok(())
}

async fn token(config: &Config, action: TokenAction) -> anyhow::Result<()> {
    match action {
        TokenAction::Create { name, role } => {
            let store = sync_server::open_store(config).await?;
            let (token, hash) = auth::new_token();
            let key = store.accounts.create_api_key(&name, role, &hash).await?;
            store
                .audit
                .append_audit(
                    NewAuditEntry::new("cli", "api_key.created", "ok")
                        .target(format!("api_key:{}", key.id))
                        .details(
                            serde_json::json!({ "name": key.name, "role": key.role.as_str() }),
                        ),
                )
                .await?;
            store.node.close().await?;
            tracing::info!(id = %key.id, name = %key.name, role = %key.role, "API token created");
            println!("{token}");
        }
    }
    Ok(())
}
