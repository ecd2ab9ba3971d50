//! The operator's files under `ops/`: Prometheus accepts the alert rules and
//! their unit tests pass (Debian's `promtool`), the Grafana dashboard is
//! valid JSON, and every sync-server metric either one uses is one a running
//! server describes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use sync_tests::{ServerProcess, http_get};

fn ops() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops")
}

fn promtool(args: &[&str], dir: &Path) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool (Debian package prometheus, installed by tests/run.sh): {e}")
        });
    assert!(
        out.status.success(),
        "promtool {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The metric names a PromQL expression reads, of the families a server or
/// node_exporter exports (functions, labels and keywords are not names of
/// those shapes).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while !rest.is_empty() {
        let start = rest
            .find(|c: char| c.is_ascii_alphabetic() || c == '_')
            .unwrap_or(rest.len());
        rest = &rest[start..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        let word = &rest[..end];
        // A label value or a string ("...") is no name.
        let quoted = expr[..expr.len() - rest.len()].matches('"').count() % 2 == 1;
        if !quoted
            && (word == "up"
                || ["sync_", "store_", "process_", "http_", "node_"]
                    .iter()
                    .any(|p| word.starts_with(p)))
        {
            names.insert(word.to_owned());
        }
        rest = &rest[end..];
    }
    names
}

/// The `expr:` of every rule in a rules file (one line, or a folded block).
fn rule_exprs(rules: &str) -> Vec<String> {
    let mut exprs = Vec::new();
    let mut lines = rules.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(expr) = line.trim().strip_prefix("expr:") else {
            continue;
        };
        let mut expr = expr.trim().trim_start_matches('>').to_owned();
        while let Some(next) = lines.peek() {
            let next = next.trim();
            if next.is_empty() || next.ends_with(':') || next.contains(": ") {
                break;
            }
            expr.push(' ');
            expr.push_str(next);
            lines.next();
        }
        exprs.push(expr.trim().to_owned());
    }
    exprs
}

fn dashboard_exprs(dashboard: &serde_json::Value) -> Vec<String> {
    dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .map(|target| target["expr"].as_str().expect("expr").to_owned())
        .collect()
}

#[test]
fn promtool_accepts_the_alert_rules_and_their_unit_tests_pass() {
    let dir = ops().join("prometheus");
    promtool(&["check", "rules", "alerts.yml"], &dir);
    promtool(&["test", "rules", "alerts_test.yml"], &dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_the_alerts_use_is_served() {
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(ops().join("grafana/sync-server.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let rules = std::fs::read_to_string(ops().join("prometheus/alerts.yml")).unwrap();
    let exprs: Vec<String> = dashboard_exprs(&dashboard)
        .into_iter()
        .chain(rule_exprs(&rules))
        .collect();
    assert!(exprs.len() >= 15, "{exprs:?}");

    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let (status, served) = http_get(&server.addr, "/metrics").await;
    assert_eq!(status, 200);
    let mut used = BTreeSet::new();
    for expr in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "no metric in `{expr}`");
        used.extend(names);
    }
    // Prometheus adds `up`; node_exporter exports `node_*`.
    for name in used
        .iter()
        .filter(|n| *n != "up" && !n.starts_with("node_"))
    {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        assert!(
            served.contains(&format!("# HELP {family} ")),
            "`{name}` is used but the server does not describe `{family}`"
        );
    }
    assert!(used.contains("process_resident_memory_bytes"), "{used:?}");
}

#[test]
fn metric_names_are_found_in_expressions() {
    assert_eq!(
        metric_names(
            r#"histogram_quantile(0.99, sum by (le) (rate(store_operation_seconds_bucket{op="append_chunk"}[5m])))"#
        ),
        BTreeSet::from(["store_operation_seconds_bucket".to_owned()])
    );
    assert_eq!(
        metric_names(r#"up{job="sync-server"} == 0"#),
        BTreeSet::from(["up".to_owned()])
    );
    assert_eq!(
        rule_exprs(
            "      - alert: A\n        expr: >\n          sum(x_total)\n            > 1\n        for: 2m\n"
        ),
        ["sum(x_total) > 1"]
    );
}
