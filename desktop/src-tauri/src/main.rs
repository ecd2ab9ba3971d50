//! Placeholder until the Tauri app lands (issue 5).
fn main() {}
