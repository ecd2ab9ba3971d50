//! `sync-bench` against a real server process: small runs whose counts are
//! known in advance, so the tool's figures can be trusted at full size.

use std::process::Command;

use sync_server::auth::Role;
use sync_tests::{ServerProcess, create_token, workspace_binary};

fn bench(url: &str, token: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(workspace_binary("sync-bench"))
        .args(["--url", url, "--token", token, "--timeout-secs", "60"])
        .args(args)
        .output()
        .expect("run sync-bench");
    assert!(
        out.status.success(),
        "sync-bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("sync-bench prints JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_and_idle_modes_report_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let token = create_token(dir.path(), Role::Admin).await;
    let server = ServerProcess::start(dir.path());
    let pid = server.child.id().to_string();

    // 4 clients on 2 documents, 3 changes each: every client sees the other
    // client of its document make 3 changes.
    let load = bench(
        &server.url,
        &token,
        &[
            "--clients",
            "4",
            "--docs",
            "2",
            "--changes",
            "3",
            "--interval-ms",
            "5",
            "--server-pid",
            &pid,
        ],
    );
    assert_eq!(load["errors"], serde_json::json!([]), "{load}");
    assert_eq!(load["accepted_changes"], 12, "{load}");
    assert_eq!(load["propagation"]["samples"], 12, "{load}");
    assert!(
        load["propagation"]["p99_ms"].as_f64().unwrap()
            >= load["propagation"]["p50_ms"].as_f64().unwrap()
    );
    assert!(load["server_rss_mib"].as_f64().unwrap() > 0.0);
    assert!(
        load["server_cpu_us_per_delivery"].as_f64().unwrap() > 0.0,
        "{load}"
    );

    // 3 writers, 5 acknowledged changes each (plus the one that makes each
    // writer's document).
    let writes = bench(
        &server.url,
        &token,
        &[
            "--mode",
            "writes",
            "--clients",
            "3",
            "--changes",
            "5",
            "--server-pid",
            &pid,
        ],
    );
    assert_eq!(writes["errors"], serde_json::json!([]), "{writes}");
    assert_eq!(writes["accepted_changes"], 15, "{writes}");
    assert!(writes["accepted_changes_per_s"].as_f64().unwrap() > 0.0);

    let idle = bench(
        &server.url,
        &token,
        &["--mode", "idle", "--clients", "25", "--hold-secs", "0"],
    );
    assert_eq!(idle["connections_held"], 25, "{idle}");

    // A wrong token is an error, not a silent zero.
    let out = Command::new(workspace_binary("sync-bench"))
        .args([
            "--url",
            &server.url,
            "--token",
            "sk_wrong",
            "--clients",
            "1",
            "--docs",
            "1",
            "--timeout-secs",
            "10",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_in_modes_lose_nothing_and_flag_every_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let token = create_token(dir.path(), Role::Admin).await;
    let server = ServerProcess::start(dir.path());
    let pid = server.child.id().to_string();

    // 3 tablets x 40 offline scans, neighbours sharing 10 tickets: 20
    // duplicates; a door tablet scans fresh tickets while they reconnect.
    let run = bench(
        &server.url,
        &token,
        &[
            "--mode",
            "offline-tablets",
            "--clients",
            "3",
            "--scans",
            "40",
            "--server-pid",
            &pid,
        ],
    );
    assert_eq!(run["lost"], 0, "{run}");
    assert_eq!(run["expected_duplicates"], 20, "{run}");
    assert_eq!(run["duplicates_flagged"], 20, "{run}");
    assert_eq!(run["checked_in"], run["expected_checked_in"], "{run}");
    assert_eq!(run["same_counts_and_duplicates_everywhere"], true, "{run}");
    // Offline scans reach the document in batches, not one change each.
    let uploaded = run["changes_uploaded"].as_u64().unwrap();
    assert!((1..120).contains(&uploaded), "{run}");
    assert!(
        run["scans_during_reconnect"].as_u64().unwrap() >= 1,
        "{run}"
    );
    assert!(
        run["scan_during_reconnect_max_ms"].as_f64().unwrap()
            >= run["scan_during_reconnect_p99_ms"].as_f64().unwrap(),
        "{run}"
    );
    assert!(run["server_cpu_s"].as_f64().unwrap() >= 0.0, "{run}");
    assert!(run["tablet_cpu_s_max"].as_f64().unwrap() > 0.0, "{run}");
    // Each replica's receive CPU: 3 tablets, the admin, and the door
    // tablet's own process, which took in the others' scans.
    let each = run["tablet_cpu_s"].as_array().unwrap();
    assert_eq!(each.len(), 5, "{run}");
    assert!(each[4].as_f64().unwrap() > 0.0, "{run}");

    let download = bench(
        &server.url,
        &token,
        &["--mode", "event-download", "--attendees", "500"],
    );
    assert_eq!(download["attendees"], 500, "{download}");
    assert!(download["download_until_first_answer_s"].as_f64().unwrap() > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stadium_mode_reaches_every_tablet_and_shares_the_fan_out() {
    let dir = tempfile::tempdir().unwrap();
    let token = create_token(dir.path(), Role::Admin).await;
    let server = ServerProcess::start(dir.path());
    let pid = server.child.id().to_string();
    assert_eq!(server_metric(&server.addr, SHARED_MESSAGES).await, 0.0);

    // 3 scanner replicas and 9 protocol-level readers; 20 scans/s for 2 s.
    let run = bench(
        &server.url,
        &token,
        &[
            "--mode",
            "stadium",
            "--clients",
            "12",
            "--scanners",
            "3",
            "--attendees",
            "300",
            "--rate",
            "20",
            "--duration-secs",
            "2",
            "--server-pid",
            &pid,
        ],
    );
    assert_eq!(run["errors"], serde_json::json!([]), "{run}");
    assert_eq!(run["scans"], 40, "{run}");
    assert_eq!(run["lost_on_scanners"], 0, "{run}");
    assert_eq!(run["readers_with_every_scan"], 9, "{run}");
    // Each scan seen in the two other scanners' indexes and by every reader.
    assert_eq!(run["propagation"]["samples"], 80, "{run}");
    assert_eq!(run["reader_arrival"]["samples"], 360, "{run}");
    assert!(
        run["propagation_p99_ms"].as_f64().unwrap() >= run["propagation_p50_ms"].as_f64().unwrap(),
        "{run}"
    );
    assert!(
        run["server_cpu_us_per_delivery"].as_f64().unwrap() > 0.0,
        "{run}"
    );
    // Readers sit in one sync state: most of their messages are copies.
    assert!(server_metric(&server.addr, SHARED_MESSAGES).await >= 40.0);
}

/// Sync messages the server copied from one generated for peers in the same state.
const SHARED_MESSAGES: &str = "sync_messages_made_total{how=\"shared\"}";

/// One figure of a server process's `/metrics`, summed over its labels.
async fn server_metric(addr: &str, name: &str) -> f64 {
    let text = sync_tests::http_client(None)
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_events_mode_opens_every_event_and_idle_ones_leave_for_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let token = create_token(dir.path(), Role::Admin).await;
    // Idle documents would stay 10 minutes; the budget (1 MiB: two of these
    // events of ~0.46 MiB each by the estimate) sends them away instead.
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        "evict_after_secs = 600\ndocument_memory_budget_mib = 1\n",
    )
    .unwrap();
    let server = ServerProcess::start_with(
        dir.path(),
        "127.0.0.1:0",
        &["--config", config.to_str().unwrap()],
    );
    let pid = server.child.id().to_string();
    let run = bench(
        &server.url,
        &token,
        &[
            "--mode",
            "many-events",
            "--events",
            "12",
            "--attendees",
            "1500",
            "--active",
            "4",
            "--hold-secs",
            "1",
            "--server-pid",
            &pid,
        ],
    );
    assert_eq!(run["errors"], serde_json::json!([]), "{run}");
    assert_eq!(run["events_seeded"], 12, "{run}");
    assert_eq!(run["active"], 4, "{run}");
    assert!(run["server_rss_mib"].as_f64().unwrap() > 0.0, "{run}");
    // 12 seeded and 4 opened again: every event was loaded, and those
    // opened after seeding had left for the budget and came back.
    let loads = server_metric(&server.addr, "sync_document_loads_total").await;
    assert!(loads >= 16.0, "{loads} loads");
    let budget_evictions = server_metric(
        &server.addr,
        "sync_document_evictions_total{reason=\"budget\"}",
    )
    .await;
    assert!(budget_evictions >= 10.0, "{budget_evictions}");
    // With every event idle, what stays loaded fits the budget.
    let mut estimate = f64::MAX;
    for _ in 0..50 {
        estimate = server_metric(&server.addr, "sync_documents_estimated_bytes").await;
        if estimate <= 1_048_576.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(estimate > 0.0 && estimate <= 1_048_576.0, "{estimate}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bench_runs_over_tls_trusting_a_venue_ca() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    std::fs::create_dir_all(&data).unwrap();
    let token = create_token(&data, Role::Admin).await;
    let ca = sync_tests::tls::TestCa::new("Venue CA");
    let (cert, key) = ca.issue().write(&dir.path().join("tls"));
    let ca_file = dir.path().join("tls/ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let server = ServerProcess::start_serving(
        &data,
        "127.0.0.1:0",
        &[],
        &[
            "--tls-cert".as_ref(),
            cert.as_os_str(),
            "--tls-key".as_ref(),
            key.as_os_str(),
        ],
    );
    assert!(server.url.starts_with("wss://"));
    let ca_arg = ca_file.to_str().unwrap();
    // Raw protocol clients and client-core replicas, both through TLS.
    let load = bench(
        &server.url,
        &token,
        &[
            "--clients",
            "2",
            "--docs",
            "1",
            "--changes",
            "2",
            "--ca-file",
            ca_arg,
        ],
    );
    assert_eq!(load["errors"], serde_json::json!([]), "{load}");
    assert_eq!(load["accepted_changes"], 4, "{load}");
    let download = bench(
        &server.url,
        &token,
        &[
            "--mode",
            "event-download",
            "--attendees",
            "50",
            "--ca-file",
            ca_arg,
        ],
    );
    assert_eq!(download["attendees"], 50, "{download}");
    assert!(download["download_until_first_answer_s"].as_f64().unwrap() > 0.0);
    // Without the CA, nothing connects.
    let out = Command::new(workspace_binary("sync-bench"))
        .args([
            "--url",
            &server.url,
            "--token",
            &token,
            "--clients",
            "1",
            "--docs",
            "1",
        ])
        .args(["--timeout-secs", "10"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_mode_reports_every_window_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let token = create_token(dir.path(), Role::Admin).await;
    let server = ServerProcess::start(dir.path());
    let pid = server.child.id().to_string();
    // 36 s: long enough for one fresh sign-in (every 31 s, a new TOTP
    // window), three reconnects and seven settings changes.
    let run = bench(
        &server.url,
        &token,
        &[
            "--mode",
            "soak",
            "--duration-secs",
            "36",
            "--report-every-secs",
            "12",
            "--attendees",
            "400",
            "--rate",
            "5",
            "--scanners",
            "2",
            "--server-pid",
            &pid,
        ],
    );
    assert_eq!(run["errors"], serde_json::json!([]), "{run}");
    assert_eq!(run["lost"], 0, "{run}");
    assert_eq!(run["all_arrived"], true, "{run}");
    let windows = run["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 3, "{run}");
    let total = |key: &str| -> u64 {
        windows
            .iter()
            .map(|w| w[key]["samples"].as_u64().or(w[key].as_u64()).unwrap())
            .sum()
    };
    let made = run["scans_made"].as_u64().unwrap();
    assert!((150..=185).contains(&made), "{run}");
    assert_eq!(total("scan_answer"), made, "{run}");
    assert!(total("sign_in") >= 1, "{run}");
    assert!(total("reconnect_until_synced") >= 2, "{run}");
    assert!(total("settings_changes") >= 7, "{run}");
    for window in windows {
        assert!(window["server_open_fds"].as_u64().unwrap() > 0, "{run}");
        assert!(window["server_rss_mib"].as_f64().unwrap() > 0.0, "{run}");
        assert!(window["server_threads"].as_u64().unwrap() > 0, "{run}");
    }
}
