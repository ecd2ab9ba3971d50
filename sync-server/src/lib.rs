//! The sync server: automerge-repo websocket sync over an embedded store.
//!
//! Layout (see ARCHITECTURE.md): `server` (HTTP, upgrade, shutdown) →
//! `connection` (one websocket) → `registry` (one actor per live document) →
//! `doc_core` (sans-IO sync state) and `store` (persistence behind a trait).

pub mod api;
/// The audit chain and its check over a store (the `server-store` crate).
pub use server_store::{audit, audit_verify};
pub mod auth;
pub mod backup;
pub mod client_ip;
mod cluster;
pub mod config;
pub mod connection;
pub mod credentials;
/// The sans-IO document core, a crate of its own (fuzzed on its own too).
pub use doc_core;
pub mod identity;
pub mod live;
pub mod memory_budget;
pub mod metrics;
pub mod policy;
pub mod presence;
pub mod registry;
pub mod scheduled_backup;
pub mod secrets;
pub mod security;
pub mod server;
pub mod settings_backup;
/// Persistence: the `server-store` crate (its traits, records and backends).
pub use server_store as store;
pub mod ticket_keys;
pub mod tls;

pub use config::Config;
pub use server::{RunningServer, ServeError, open_store, start, start_with_store};
