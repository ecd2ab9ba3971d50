//! A member's settings document (and, in [`org`], the organisation's
//! configuration document, built the same way): typed keys under `values`, a schema
//! version, and migrations that are deterministic functions of the document
//! (so two devices migrating the same state at once write the same values,
//! and the merge is the same on both).
//!
//! ```text
//! ROOT
//!   kind: "settings", schema: 2
//!   values: { theme: "light"|"dark"|"system", language: "en", default_checkin_list: "...",
//!             sounds: true, notifications: true }
//! ```
//!
//! Schema 1 (the first app version) had `dark_mode: bool` and `sound: bool`.

use automerge::transaction::Transactable;
use automerge::{ROOT, ReadDoc};
use serde::{Deserialize, Serialize};

pub mod org;
mod values;

pub use values::{SettingValue, ValuesDoc};

pub const KIND: &str = "settings";
pub const SCHEMA_VERSION: i64 = 2;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("not a {} document", .0.replace('_', " "))]
    WrongKind(&'static str),
    #[error("schema {found} is newer than this app understands ({understood}); update the app")]
    NewerSchema { found: i64, understood: i64 },
    #[error("`{key}`: {reason}")]
    Invalid { key: String, reason: String },
    #[error("unknown setting `{0}`")]
    UnknownKey(String),
    #[error("document error: {0}")]
    Automerge(#[from] automerge::AutomergeError),
}

/// The settings an app reads, with defaults for anything unset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub theme: String,
    pub language: String,
    pub default_checkin_list: Option<String>,
    pub sounds: bool,
    pub notifications: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            theme: "system".into(),
            language: "en".into(),
            default_checkin_list: None,
            sounds: true,
            notifications: true,
        }
    }
}

/// The keys there are, with their types and allowed values.
pub const KEYS: [&str; 5] = [
    "theme",
    "language",
    "default_checkin_list",
    "sounds",
    "notifications",
];

/// Member settings documents.
pub const SETTINGS: ValuesDoc = ValuesDoc {
    kind: KIND,
    schema: SCHEMA_VERSION,
    validate,
    // Schema 1's keys, which migrations delete.
    legacy_keys: &["dark_mode", "sound"],
};

/// Checks a value for `key` (the schema's types and ranges).
pub fn validate(key: &str, value: &SettingValue) -> Result<(), SettingsError> {
    let invalid = |reason: &str| SettingsError::Invalid {
        key: key.to_owned(),
        reason: reason.to_owned(),
    };
    match (key, value) {
        ("theme", SettingValue::Text(t)) if ["light", "dark", "system"].contains(&t.as_str()) => {
            Ok(())
        }
        ("theme", _) => Err(invalid("must be light, dark or system")),
        ("language", SettingValue::Text(t)) if values::is_language_tag(t) => Ok(()),
        ("language", _) => Err(invalid("must be a language tag such as `en` or `pt-BR`")),
        ("default_checkin_list", SettingValue::Text(t)) if t.len() <= 200 => Ok(()),
        ("default_checkin_list", _) => Err(invalid("must be a check-in list id")),
        ("sounds" | "notifications", SettingValue::Bool(_)) => Ok(()),
        ("sounds" | "notifications", _) => Err(invalid("must be true or false")),
        (other, _) => Err(SettingsError::UnknownKey(other.to_owned())),
    }
}

/// Makes an empty document a settings document of the current schema.
pub fn init<T: Transactable>(tx: &mut T) -> Result<(), SettingsError> {
    SETTINGS.init(tx)
}

/// The settings, defaults filled in. Refuses a newer schema (the app must
/// update first) and reads an older one as it would be after migrating.
pub fn read<R: ReadDoc>(doc: &R) -> Result<Settings, SettingsError> {
    let version = SETTINGS.readable_schema(doc)?;
    let values = SETTINGS.values_map(doc)?;
    let mut out = Settings::default();
    let get = |key: &str| SETTINGS.get(doc, &values, key);
    let text = |key: &str| -> Result<Option<String>, SettingsError> {
        Ok(match get(key)? {
            Some(SettingValue::Text(t)) => Some(t),
            _ => None,
        })
    };
    let flag = |key: &str| -> Result<Option<bool>, SettingsError> {
        Ok(match get(key)? {
            Some(SettingValue::Bool(b)) => Some(b),
            _ => None,
        })
    };
    if version < 2 {
        if let Some(dark) = flag("dark_mode")? {
            out.theme = if dark { "dark" } else { "light" }.into();
        }
        if let Some(sound) = flag("sound")? {
            out.sounds = sound;
        }
    }
    if let Some(theme) =
        text("theme")?.filter(|t| validate("theme", &SettingValue::Text(t.clone())).is_ok())
    {
        out.theme = theme;
    }
    if let Some(language) = text("language")? {
        out.language = language;
    }
    out.default_checkin_list = text("default_checkin_list")?.filter(|l| !l.is_empty());
    if let Some(sounds) = flag("sounds")? {
        out.sounds = sounds;
    }
    if let Some(notifications) = flag("notifications")? {
        out.notifications = notifications;
    }
    Ok(out)
}

/// Sets one key (validated).
pub fn set<T: Transactable>(
    tx: &mut T,
    key: &str,
    value: &SettingValue,
) -> Result<(), SettingsError> {
    SETTINGS.set(tx, key, value)
}

/// Brings the document to the current schema; returns whether it changed
/// anything. Every step writes only values computed from what the document
/// holds, so devices migrating the same state concurrently agree.
pub fn migrate<T: Transactable>(tx: &mut T) -> Result<bool, SettingsError> {
    let version = SETTINGS.schema_of(tx)?;
    if version >= SCHEMA_VERSION {
        return Ok(false);
    }
    let values = SETTINGS.values_map(tx)?;
    if version < 2 {
        // 1 -> 2: `dark_mode: bool` becomes `theme`; `sound` becomes `sounds`.
        if let Some(SettingValue::Bool(dark)) = SETTINGS.get(tx, &values, "dark_mode")?
            && tx.get(&values, "theme")?.is_none()
        {
            tx.put(&values, "theme", if dark { "dark" } else { "light" })?;
        }
        if let Some(SettingValue::Bool(sound)) = SETTINGS.get(tx, &values, "sound")?
            && tx.get(&values, "sounds")?.is_none()
        {
            tx.put(&values, "sounds", sound)?;
        }
        for key in SETTINGS.legacy_keys {
            tx.delete(&values, *key).ok();
        }
    }
    tx.put(ROOT, "schema", SCHEMA_VERSION)?;
    Ok(true)
}

/// Server-side write validation of one change to a settings document.
pub fn check_change(
    doc: &automerge::Automerge,
    change: &automerge::ExpandedChange,
) -> Result<(), String> {
    SETTINGS.check_change(doc, change)
}

/// The settings as JSON (export; server-side backups).
pub fn to_json<R: ReadDoc>(doc: &R) -> Result<serde_json::Value, SettingsError> {
    Ok(serde_json::to_value(read(doc)?).unwrap_or_default())
}

/// Writes every key of an exported JSON object (import; restore), all
/// checked before anything is written.
pub fn apply_json<T: Transactable>(
    tx: &mut T,
    json: &serde_json::Value,
) -> Result<(), SettingsError> {
    SETTINGS.apply_json(tx, json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::{Automerge, ObjType};

    /// A schema-1 document as the first app version wrote it.
    fn version_one(dark: bool) -> Automerge {
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        tx.put(ROOT, "kind", KIND).unwrap();
        tx.put(ROOT, "schema", 1).unwrap();
        let values = tx.put_object(ROOT, values::VALUES, ObjType::Map).unwrap();
        tx.put(&values, "dark_mode", dark).unwrap();
        tx.put(&values, "sound", false).unwrap();
        tx.put(&values, "language", "de").unwrap();
        tx.commit();
        doc
    }

    #[test]
    fn typed_keys_are_validated_and_read_with_defaults() {
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        init(&mut tx).unwrap();
        set(&mut tx, "theme", &SettingValue::Text("dark".into())).unwrap();
        assert!(set(&mut tx, "theme", &SettingValue::Text("pink".into())).is_err());
        assert!(set(&mut tx, "sounds", &SettingValue::Text("yes".into())).is_err());
        assert!(matches!(
            set(&mut tx, "volume", &SettingValue::Bool(true)),
            Err(SettingsError::UnknownKey(_))
        ));
        tx.commit();
        let settings = read(&doc).unwrap();
        assert_eq!(settings.theme, "dark");
        assert!(settings.sounds && settings.notifications);
        assert_eq!(settings.language, "en");
    }

    #[test]
    fn two_devices_migrating_at_once_converge() {
        let original = version_one(true);
        let mut a = original.fork();
        let mut b = original.fork();
        for doc in [&mut a, &mut b] {
            let mut tx = doc.transaction();
            assert!(migrate(&mut tx).unwrap());
            tx.commit();
        }
        a.merge(&mut b).unwrap();
        b.merge(&mut a.clone()).unwrap();
        let (sa, sb) = (read(&a).unwrap(), read(&b).unwrap());
        assert_eq!(sa, sb);
        assert_eq!(sa.theme, "dark");
        assert!(!sa.sounds);
        assert_eq!(sa.language, "de");
        assert_eq!(SETTINGS.schema_of(&a).unwrap(), SCHEMA_VERSION);
        let values = SETTINGS.values_map(&a).unwrap();
        assert!(a.get(&values, "dark_mode").unwrap().is_none());
        // Migrating again changes nothing; reading an unmigrated copy agrees.
        let mut tx = a.transaction();
        assert!(!migrate(&mut tx).unwrap());
        tx.commit();
        assert_eq!(read(&version_one(true)).unwrap(), sa);
    }

    /// The one change `f` makes on a fork of `doc`, checked against `doc`.
    fn check(
        doc: &Automerge,
        f: impl FnOnce(&mut automerge::transaction::Transaction<'_>),
    ) -> Result<(), String> {
        let mut fork = doc.fork();
        let before = fork.get_heads();
        let mut tx = fork.transaction();
        f(&mut tx);
        tx.commit();
        let changes = fork.get_changes(&before);
        check_change(doc, &changes[0].decode())
    }

    #[test]
    fn the_server_accepts_valid_settings_changes_only() {
        let empty = Automerge::new();
        assert_eq!(
            check(&empty, |tx| {
                init(tx).unwrap();
                set(tx, "theme", &SettingValue::Text("dark".into())).unwrap();
            }),
            Ok(())
        );
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        init(&mut tx).unwrap();
        tx.commit();
        assert_eq!(
            check(&doc, |tx| {
                set(tx, "sounds", &SettingValue::Bool(false)).unwrap();
            }),
            Ok(())
        );
        let values = SETTINGS.values_map(&doc).unwrap();
        let v = values.clone();
        assert!(
            check(&doc, |tx| {
                tx.put(&v, "theme", "pink").unwrap();
            })
            .is_err()
        );
        let v = values.clone();
        assert!(
            check(&doc, |tx| {
                tx.put(&v, "volume", 11).unwrap();
            })
            .is_err()
        );
        assert!(
            check(&doc, |tx| {
                tx.put(ROOT, "extra", "x").unwrap();
            })
            .is_err()
        );
        let v = values.clone();
        assert_eq!(
            check(&doc, |tx| {
                tx.put(&v, "dark_mode", true).unwrap();
            }),
            Ok(()),
            "old apps still write their keys"
        );
        let v = values.clone();
        assert_eq!(
            check(&doc, |tx| {
                tx.delete(&v, "theme").ok();
                tx.put(&v, "language", "de").unwrap();
            }),
            Ok(())
        );
        // A migration is a valid change.
        let old = version_one(true);
        assert_eq!(
            check(&old, |tx| {
                migrate(tx).unwrap();
            }),
            Ok(())
        );
    }

    #[test]
    fn json_round_trip_and_newer_schemas_are_refused() {
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        init(&mut tx).unwrap();
        apply_json(&mut tx, &serde_json::json!({ "theme": "light", "sounds": false, "default_checkin_list": "vip" })).unwrap();
        assert!(apply_json(&mut tx, &serde_json::json!({ "theme": 3 })).is_err());
        assert!(
            apply_json(
                &mut tx,
                &serde_json::json!({ "theme": "dark", "bogus": true })
            )
            .is_err()
        );
        tx.commit();
        let json = to_json(&doc).unwrap();
        assert_eq!(json["theme"], "light", "a refused import wrote nothing");
        assert_eq!(json["default_checkin_list"], "vip");
        let mut copy = Automerge::new();
        let mut tx = copy.transaction();
        init(&mut tx).unwrap();
        apply_json(&mut tx, &json).unwrap();
        tx.commit();
        assert_eq!(read(&copy).unwrap(), read(&doc).unwrap());
        let mut tx = doc.transaction();
        tx.put(ROOT, "schema", SCHEMA_VERSION + 1).unwrap();
        tx.commit();
        assert!(matches!(read(&doc), Err(SettingsError::NewerSchema { .. })));
    }
}
