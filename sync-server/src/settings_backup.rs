//! Server-side backups of members' settings documents: a snapshot (as
//! JSON) some seconds after changes stop, thinned by a retention policy:
//! every backup of the last `keep_all_minutes`, the newest per hour for the
//! last `hourly_hours`, the newest per day for the last `daily_days`, and
//! always the newest of all.

use std::collections::{HashMap, HashSet};

use automerge::Automerge;

use crate::store::records::SettingsBackup;
use crate::store::{Store, StoreError};
use sync_protocol::DocumentId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub keep_all_minutes: i64,
    pub hourly_hours: i64,
    pub daily_days: i64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            keep_all_minutes: 60,
            hourly_hours: 48,
            daily_days: 30,
        }
    }
}

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// The backups to keep of `taken` (`(id, taken_ms)`, any order) at `now_ms`.
pub fn keep(taken: &[(String, i64)], now_ms: i64, retention: Retention) -> HashSet<String> {
    let mut newest_first: Vec<&(String, i64)> = taken.iter().collect();
    newest_first.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    let mut kept = HashSet::new();
    if let Some((id, _)) = newest_first.first() {
        kept.insert(id.clone());
    }
    let mut hours = HashMap::new();
    let mut days = HashMap::new();
    for (id, at) in newest_first {
        let age = now_ms - at;
        if age <= retention.keep_all_minutes * 60_000 {
            kept.insert(id.clone());
        }
        if age <= retention.hourly_hours * HOUR_MS
            && hours.insert(at.div_euclid(HOUR_MS), ()).is_none()
        {
            kept.insert(id.clone());
        }
        if age <= retention.daily_days * DAY_MS && days.insert(at.div_euclid(DAY_MS), ()).is_none()
        {
            kept.insert(id.clone());
        }
    }
    kept
}

/// Snapshots `doc` (a settings document) and applies the retention policy.
pub async fn take(
    store: &Store,
    id: DocumentId,
    doc: &Automerge,
    retention: Retention,
) -> Result<(), StoreError> {
    let settings = match settings_model::to_json(doc) {
        Ok(settings) => settings,
        Err(error) => {
            tracing::warn!(doc = %id, %error, "settings document unreadable; no backup taken");
            return Ok(());
        }
    };
    let now = crate::auth::unix_ms();
    let heads = doc
        .get_heads()
        .iter()
        .map(|h| h.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let existing = store.settings_history.settings_backups(id).await?;
    if existing.first().is_some_and(|newest| newest.heads == heads) {
        return Ok(());
    }
    store
        .settings_history
        .add_settings_backup(&SettingsBackup {
            id: uuid::Uuid::new_v4().to_string(),
            document_id: id.to_string(),
            taken_ms: now,
            settings,
            heads,
        })
        .await?;
    let all: Vec<(String, i64)> = store
        .settings_history
        .settings_backups(id)
        .await?
        .into_iter()
        .map(|b| (b.id, b.taken_ms))
        .collect();
    let kept = keep(&all, now, retention);
    let dropped: Vec<String> = all
        .into_iter()
        .filter(|(backup, _)| !kept.contains(backup))
        .map(|(backup, _)| backup)
        .collect();
    if !dropped.is_empty() {
        store
            .settings_history
            .delete_settings_backups(&dropped)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hourly_for_two_days_daily_for_a_month() {
        let now = 100 * DAY_MS;
        let mut taken = Vec::new();
        // Every 20 minutes for the last 3 days, then one a day back to 60 days.
        for i in 0..(3 * 72) {
            taken.push((format!("m{i}"), now - i * 20 * 60_000));
        }
        for d in 3..60 {
            taken.push((format!("d{d}"), now - d * DAY_MS - 5));
        }
        let kept = keep(&taken, now, Retention::default());
        assert!(kept.contains("m0"), "the newest stays");
        let last_hour = taken
            .iter()
            .filter(|(id, at)| kept.contains(id) && now - at <= HOUR_MS)
            .count();
        assert_eq!(last_hour, 4, "everything from the last hour");
        let recent = taken
            .iter()
            .filter(|(id, at)| kept.contains(id) && now - at > HOUR_MS && now - at <= 48 * HOUR_MS)
            .count();
        assert!(
            (47..=49).contains(&recent),
            "one per hour for 48 h, got {recent}"
        );
        let old: Vec<_> = taken
            .iter()
            .filter(|(id, at)| kept.contains(id) && now - at > 30 * DAY_MS)
            .collect();
        assert!(old.is_empty(), "nothing older than 30 days: {old:?}");
        assert!(kept.contains("d10"));
        assert_eq!(keep(&[], now, Retention::default()).len(), 0);
        // A lone old backup is still the newest: kept.
        assert_eq!(keep(&[("x".into(), 0)], now, Retention::default()).len(), 1);
    }
}
