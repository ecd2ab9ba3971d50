//! What the benches share: their arguments and percentiles.

use std::time::Duration;

/// The `p` quantile (0 to 1) of times sorted ascending.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// The bench's numeric arguments, in order (the harness's own flags, such
/// as `--bench`, are skipped).
pub fn numbers() -> Vec<usize> {
    std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect()
}
