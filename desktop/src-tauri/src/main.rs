//! The admin desktop app: a Tauri 2 window whose Rust side holds one
//! client-core replica (local SQLite store, sync, account) and exposes typed
//! commands (`commands.rs`) and events (`state.rs`) to the web UI in `../src`.
//! All data, sync and security live in client-core; the UI only asks.
//!
//! `SYNC_DESKTOP_DATA_DIR` sets where the local store lives (default: the
//! platform's app data folder); `SYNC_SERVER_URL` the first server to use.

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod commands;
mod dto;
mod state;

use tauri::Manager;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,automerge=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(error) = client_core::use_platform_keychain() {
        tracing::error!(%error, "no keychain: signing in will not work");
    }
    tauri::Builder::default()
        .plugin(tauri_plugin_dialog::init())
        .setup(|app| {
            let data_dir = match std::env::var_os("SYNC_DESKTOP_DATA_DIR") {
                Some(dir) => dir.into(),
                None => app.path().app_data_dir()?,
            };
            let handle = app.handle().clone();
            let state = tauri::async_runtime::block_on(state::AppState::open(&handle, data_dir))?;
            app.manage(state);
            Ok(())
        })
        .invoke_handler(tauri::generate_handler![
            commands::app_info,
            commands::set_server,
            commands::sign_in,
            commands::submit_code,
            commands::start_enrollment,
            commands::confirm_enrollment,
            commands::sign_out,
            commands::step_up,
            commands::sync_status,
            commands::list_events,
            commands::event_details,
            commands::save_event,
            commands::save_list,
            commands::import_csv,
            commands::search,
            commands::dashboard,
            commands::export_report,
            commands::ticket_key,
            commands::enable_signed_tickets,
            commands::issue_ticket,
            commands::revoke_signed_codes,
            commands::users,
            commands::create_user,
            commands::update_user,
            commands::set_user_events,
            commands::devices,
            commands::revoke_device,
            commands::audit,
            commands::verify_audit,
            commands::server_status,
            commands::export_audit,
            commands::my_settings,
            commands::set_setting,
            commands::settings_backups,
            commands::restore_settings_backup,
        ])
        .run(tauri::generate_context!())
        .expect("the app failed to start");
}
