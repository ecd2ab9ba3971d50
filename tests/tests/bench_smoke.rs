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
