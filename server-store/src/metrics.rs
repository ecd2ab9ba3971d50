//! The names of the metric families the store records. The server describes
//! them (help text, starting series) with the rest of its families; the
//! store only records into them.

/// Seconds per store operation, labelled by `op`.
pub const STORE_SECONDS: &str = "store_operation_seconds";
/// Document writes committed together by the embedded store's writer.
pub const STORE_GROUP_SIZE: &str = "store_group_commit_writes";
