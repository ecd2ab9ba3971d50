//! The organisation's configuration document: one per organisation, written
//! by admins, read by every signed-in app (the server enforces both).
//!
//! ```text
//! ROOT
//!   kind: "org_config", schema: 1
//!   values: { organisation_name: "...", support_contact: "...", default_language: "en",
//!             default_annul_window_minutes: 15, kiosk_auto_lock_minutes: 5,
//!             kiosk_pin_length: 6, duplicate_alert_sound: true }
//! ```

use automerge::ReadDoc;
use automerge::transaction::Transactable;
use serde::{Deserialize, Serialize};

use crate::values::is_language_tag;
use crate::{SettingValue, SettingsError, ValuesDoc};

pub const KIND: &str = "org_config";
pub const SCHEMA_VERSION: i64 = 1;

/// Organisation configuration documents.
pub const ORG_CONFIG: ValuesDoc = ValuesDoc {
    kind: KIND,
    schema: SCHEMA_VERSION,
    validate,
    legacy_keys: &[],
};

/// The configuration apps read, with defaults for anything unset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgConfig {
    /// Shown in apps' title bars and on the kiosk screen.
    pub organisation_name: String,
    /// Whom staff call when something is wrong (free text: phone, email).
    pub support_contact: String,
    /// The language apps start in before a member picks one.
    pub default_language: String,
    /// How long after a scan staff may annul it, for new events.
    pub default_annul_window_minutes: i64,
    /// Idle minutes before a tablet locks its kiosk screen (0: never).
    pub kiosk_auto_lock_minutes: i64,
    /// Digits in a tablet's local kiosk PIN.
    pub kiosk_pin_length: i64,
    /// Whether tablets sound an alert for a duplicate or refused scan.
    pub duplicate_alert_sound: bool,
}

impl Default for OrgConfig {
    fn default() -> Self {
        Self {
            organisation_name: String::new(),
            support_contact: String::new(),
            default_language: "en".into(),
            default_annul_window_minutes: 15,
            kiosk_auto_lock_minutes: 5,
            kiosk_pin_length: 6,
            duplicate_alert_sound: true,
        }
    }
}

/// The keys there are.
pub const KEYS: [&str; 7] = [
    "organisation_name",
    "support_contact",
    "default_language",
    "default_annul_window_minutes",
    "kiosk_auto_lock_minutes",
    "kiosk_pin_length",
    "duplicate_alert_sound",
];

/// Checks a value for `key` (types and ranges).
pub fn validate(key: &str, value: &SettingValue) -> Result<(), SettingsError> {
    let invalid = |reason: &str| SettingsError::Invalid {
        key: key.to_owned(),
        reason: reason.to_owned(),
    };
    let whole = |range: std::ops::RangeInclusive<i64>, unit: &str| match value {
        SettingValue::Int(n) if range.contains(n) => Ok(()),
        _ => Err(invalid(&format!(
            "must be a whole number of {unit} from {} to {}",
            range.start(),
            range.end()
        ))),
    };
    match (key, value) {
        ("organisation_name", SettingValue::Text(t))
            if t.chars().count() <= 200 && (t.is_empty() || !t.trim().is_empty()) =>
        {
            Ok(())
        }
        ("organisation_name", _) => Err(invalid("must be a name of at most 200 characters")),
        ("support_contact", SettingValue::Text(t)) if t.chars().count() <= 200 => Ok(()),
        ("support_contact", _) => Err(invalid("must be text of at most 200 characters")),
        ("default_language", SettingValue::Text(t)) if is_language_tag(t) => Ok(()),
        ("default_language", _) => Err(invalid("must be a language tag such as `en` or `pt-BR`")),
        ("default_annul_window_minutes", _) => whole(1..=1440, "minutes"),
        ("kiosk_auto_lock_minutes", _) => whole(0..=240, "minutes"),
        ("kiosk_pin_length", _) => whole(4..=12, "digits"),
        ("duplicate_alert_sound", SettingValue::Bool(_)) => Ok(()),
        ("duplicate_alert_sound", _) => Err(invalid("must be true or false")),
        (other, _) => Err(SettingsError::UnknownKey(other.to_owned())),
    }
}

/// Makes an empty document the organisation configuration.
pub fn init<T: Transactable>(tx: &mut T) -> Result<(), SettingsError> {
    ORG_CONFIG.init(tx)
}

/// The configuration, defaults filled in (a value that fails the rules, as
/// a newer app might write, reads as the default).
pub fn read<R: ReadDoc>(doc: &R) -> Result<OrgConfig, SettingsError> {
    ORG_CONFIG.readable_schema(doc)?;
    let values = ORG_CONFIG.values_map(doc)?;
    let get = |key: &str| -> Result<Option<SettingValue>, SettingsError> {
        Ok(ORG_CONFIG
            .get(doc, &values, key)?
            .filter(|v| validate(key, v).is_ok()))
    };
    let mut out = OrgConfig::default();
    let texts = [
        ("organisation_name", &mut out.organisation_name),
        ("support_contact", &mut out.support_contact),
        ("default_language", &mut out.default_language),
    ];
    for (key, field) in texts {
        if let Some(SettingValue::Text(t)) = get(key)? {
            *field = t;
        }
    }
    let numbers = [
        (
            "default_annul_window_minutes",
            &mut out.default_annul_window_minutes,
        ),
        ("kiosk_auto_lock_minutes", &mut out.kiosk_auto_lock_minutes),
        ("kiosk_pin_length", &mut out.kiosk_pin_length),
    ];
    for (key, field) in numbers {
        if let Some(SettingValue::Int(n)) = get(key)? {
            *field = n;
        }
    }
    if let Some(SettingValue::Bool(b)) = get("duplicate_alert_sound")? {
        out.duplicate_alert_sound = b;
    }
    Ok(out)
}

/// Sets one key (validated).
pub fn set<T: Transactable>(
    tx: &mut T,
    key: &str,
    value: &SettingValue,
) -> Result<(), SettingsError> {
    ORG_CONFIG.set(tx, key, value)
}

/// Server-side write validation of one change to the configuration.
pub fn check_change(
    doc: &automerge::Automerge,
    change: &automerge::ExpandedChange,
) -> Result<(), String> {
    ORG_CONFIG.check_change(doc, change)
}

/// The configuration as JSON (export).
pub fn to_json<R: ReadDoc>(doc: &R) -> Result<serde_json::Value, SettingsError> {
    Ok(serde_json::to_value(read(doc)?).unwrap_or_default())
}

/// Writes every key of an exported JSON object, all checked first.
pub fn apply_json<T: Transactable>(
    tx: &mut T,
    json: &serde_json::Value,
) -> Result<(), SettingsError> {
    ORG_CONFIG.apply_json(tx, json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::{Automerge, ROOT};

    fn config() -> Automerge {
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        init(&mut tx).unwrap();
        tx.commit();
        doc
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
    fn typed_keys_with_ranges_and_defaults() {
        let mut doc = config();
        assert_eq!(read(&doc).unwrap(), OrgConfig::default());
        let mut tx = doc.transaction();
        set(
            &mut tx,
            "organisation_name",
            &SettingValue::Text("Acme Events".into()),
        )
        .unwrap();
        set(&mut tx, "kiosk_pin_length", &SettingValue::Int(4)).unwrap();
        set(&mut tx, "duplicate_alert_sound", &SettingValue::Bool(false)).unwrap();
        for (key, bad) in [
            ("kiosk_pin_length", SettingValue::Int(3)),
            ("kiosk_pin_length", SettingValue::Text("6".into())),
            ("default_annul_window_minutes", SettingValue::Int(0)),
            ("kiosk_auto_lock_minutes", SettingValue::Int(241)),
            ("organisation_name", SettingValue::Text("  ".into())),
            (
                "default_language",
                SettingValue::Text("english please".into()),
            ),
            ("theme", SettingValue::Text("dark".into())),
        ] {
            assert!(set(&mut tx, key, &bad).is_err(), "{key} = {bad:?} accepted");
        }
        tx.commit();
        let read_back = read(&doc).unwrap();
        assert_eq!(read_back.organisation_name, "Acme Events");
        assert_eq!(read_back.kiosk_pin_length, 4);
        assert!(!read_back.duplicate_alert_sound);
        assert_eq!(read_back.default_annul_window_minutes, 15);
        // A settings document is not a configuration, and the other way round.
        assert!(matches!(
            crate::read(&doc),
            Err(SettingsError::WrongKind("settings"))
        ));
    }

    #[test]
    fn the_server_accepts_valid_configuration_changes_only() {
        assert_eq!(
            check(&Automerge::new(), |tx| {
                init(tx).unwrap();
                set(tx, "organisation_name", &SettingValue::Text("Acme".into())).unwrap();
            }),
            Ok(())
        );
        let doc = config();
        assert_eq!(
            check(&doc, |tx| {
                set(tx, "default_annul_window_minutes", &SettingValue::Int(30)).unwrap();
            }),
            Ok(())
        );
        let values = ORG_CONFIG.values_map(&doc).unwrap();
        let refused = [
            ("kiosk_pin_length", automerge::ScalarValue::Int(40)),
            ("kiosk_pin_length", automerge::ScalarValue::Str("6".into())),
            ("theme", automerge::ScalarValue::Str("dark".into())),
            ("dark_mode", automerge::ScalarValue::Boolean(true)),
        ];
        for (key, value) in refused {
            let v = values.clone();
            assert!(
                check(&doc, |tx| {
                    tx.put(&v, key, value.clone()).unwrap();
                })
                .is_err(),
                "{key} accepted"
            );
        }
        assert!(
            check(&doc, |tx| {
                tx.put(ROOT, "kind", "settings").unwrap();
            })
            .is_err()
        );
    }

    #[test]
    fn json_round_trip() {
        let mut doc = config();
        let mut tx = doc.transaction();
        apply_json(
            &mut tx,
            &serde_json::json!({ "organisation_name": "Acme", "kiosk_auto_lock_minutes": 0 }),
        )
        .unwrap();
        assert!(apply_json(&mut tx, &serde_json::json!({ "kiosk_pin_length": 2.5 })).is_err());
        tx.commit();
        let json = to_json(&doc).unwrap();
        assert_eq!(json["kiosk_auto_lock_minutes"], 0);
        let mut copy = config();
        let mut tx = copy.transaction();
        apply_json(&mut tx, &json).unwrap();
        tx.commit();
        assert_eq!(read(&copy).unwrap(), read(&doc).unwrap());
    }
}
