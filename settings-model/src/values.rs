//! What member settings and the organisation configuration share: a document
//! with a `kind`, a `schema` version and a `values` map of typed keys, each
//! checked by the document type's rules before it is written (by an app) or
//! accepted (by the server).

use automerge::transaction::Transactable;
use automerge::{ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value};
use serde::{Deserialize, Serialize};

use crate::SettingsError;

pub(crate) const VALUES: &str = "values";

/// A value for a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SettingValue {
    Bool(bool),
    Int(i64),
    Text(String),
}

/// One type of typed-keys document.
pub struct ValuesDoc {
    /// `ROOT.kind`.
    pub kind: &'static str,
    /// The schema this app writes.
    pub schema: i64,
    /// The type and range of each key; `Err` for unknown keys.
    pub validate: fn(&str, &SettingValue) -> Result<(), SettingsError>,
    /// Keys of older schemas: old apps still write them (as true/false),
    /// migrations delete them.
    pub legacy_keys: &'static [&'static str],
}

impl ValuesDoc {
    /// The document's schema version; refuses a document of another kind.
    pub(crate) fn schema_of<R: ReadDoc>(&self, doc: &R) -> Result<i64, SettingsError> {
        let wrong = || SettingsError::WrongKind(self.kind);
        match doc.get(ROOT, "kind")? {
            Some((Value::Scalar(s), _)) if s.as_str() == Some(self.kind) => {}
            _ => return Err(wrong()),
        }
        match doc.get(ROOT, "schema")? {
            Some((Value::Scalar(s), _)) => s.as_i64().ok_or_else(wrong),
            _ => Err(wrong()),
        }
    }

    /// The schema version, refusing one newer than this app understands.
    pub(crate) fn readable_schema<R: ReadDoc>(&self, doc: &R) -> Result<i64, SettingsError> {
        let found = self.schema_of(doc)?;
        if found > self.schema {
            return Err(SettingsError::NewerSchema {
                found,
                understood: self.schema,
            });
        }
        Ok(found)
    }

    pub(crate) fn values_map<R: ReadDoc>(&self, doc: &R) -> Result<ObjId, SettingsError> {
        match doc.get(ROOT, VALUES)? {
            Some((Value::Object(ObjType::Map), id)) => Ok(id),
            _ => Err(SettingsError::WrongKind(self.kind)),
        }
    }

    /// Makes an empty document one of this type, at the current schema.
    pub fn init<T: Transactable>(&self, tx: &mut T) -> Result<(), SettingsError> {
        tx.put(ROOT, "kind", self.kind)?;
        tx.put(ROOT, "schema", self.schema)?;
        tx.put_object(ROOT, VALUES, ObjType::Map)?;
        Ok(())
    }

    /// Sets one key (validated).
    pub fn set<T: Transactable>(
        &self,
        tx: &mut T,
        key: &str,
        value: &SettingValue,
    ) -> Result<(), SettingsError> {
        (self.validate)(key, value)?;
        self.readable_schema(tx)?;
        let values = self.values_map(tx)?;
        match value {
            SettingValue::Bool(b) => tx.put(&values, key, *b)?,
            SettingValue::Int(i) => tx.put(&values, key, *i)?,
            SettingValue::Text(t) => tx.put(&values, key, t.as_str())?,
        }
        Ok(())
    }

    /// The value stored for `key`, if it has one of the types values have.
    pub(crate) fn get<R: ReadDoc>(
        &self,
        doc: &R,
        values: &ObjId,
        key: &str,
    ) -> Result<Option<SettingValue>, SettingsError> {
        Ok(match doc.get(values, key)? {
            Some((Value::Scalar(s), _)) => match s.as_ref() {
                ScalarValue::Boolean(b) => Some(SettingValue::Bool(*b)),
                ScalarValue::Int(i) => Some(SettingValue::Int(*i)),
                ScalarValue::Uint(u) => i64::try_from(*u).ok().map(SettingValue::Int),
                ScalarValue::Str(t) => Some(SettingValue::Text(t.to_string())),
                _ => None,
            },
            _ => None,
        })
    }

    /// Writes every key of an exported JSON object (import; restore). Unknown
    /// keys and invalid values are refused before anything is written; `null`
    /// clears a text key where an empty text is allowed.
    pub fn apply_json<T: Transactable>(
        &self,
        tx: &mut T,
        json: &serde_json::Value,
    ) -> Result<(), SettingsError> {
        let Some(object) = json.as_object() else {
            return Err(SettingsError::Invalid {
                key: "(document)".into(),
                reason: "expected a JSON object".into(),
            });
        };
        let mut writes = Vec::new();
        for (key, value) in object {
            let value = match value {
                serde_json::Value::Bool(b) => SettingValue::Bool(*b),
                serde_json::Value::String(s) => SettingValue::Text(s.clone()),
                serde_json::Value::Number(n) if n.is_i64() => {
                    SettingValue::Int(n.as_i64().unwrap_or_default())
                }
                serde_json::Value::Null => SettingValue::Text(String::new()),
                other => {
                    return Err(SettingsError::Invalid {
                        key: key.clone(),
                        reason: format!("unexpected value {other}"),
                    });
                }
            };
            (self.validate)(key, &value)?;
            writes.push((key.clone(), value));
        }
        for (key, value) in writes {
            self.set(tx, &key, &value)?;
        }
        Ok(())
    }

    /// Checks one incoming change against the document it would be applied
    /// to (server-side write validation): only `kind`, `schema` and the
    /// `values` map at the root, and in `values` only known keys with valid
    /// values (legacy keys only as booleans, for old apps). `Err` says why not.
    pub fn check_change(
        &self,
        doc: &automerge::Automerge,
        change: &automerge::ExpandedChange,
    ) -> Result<(), String> {
        use automerge::legacy::{Key, ObjectId, OpType};
        let object = |obj: &ObjectId| match obj {
            ObjectId::Root => "_root".to_owned(),
            ObjectId::Id(id) => format!("{}@{}", id.0, id.1),
        };
        let what = self.kind.replace('_', " ");
        // The `values` map: the document's, or one this change makes.
        let mut values: Vec<String> = self
            .values_map(doc)
            .map(|id| vec![id.to_string()])
            .unwrap_or_default();
        for (index, op) in change.operations.iter().enumerate() {
            let key = match &op.key {
                Key::Map(key) => key.to_string(),
                Key::Seq(_) => return Err(format!("a {what} document holds no lists")),
            };
            let obj = object(&op.obj);
            if obj == "_root" {
                match (key.as_str(), &op.action) {
                    ("kind", OpType::Put(ScalarValue::Str(kind))) if kind.as_str() == self.kind => {
                    }
                    ("schema", OpType::Put(ScalarValue::Int(_) | ScalarValue::Uint(_))) => {}
                    (VALUES, OpType::Make(ObjType::Map)) => {
                        values.push(format!(
                            "{}@{}",
                            change.start_op.get() + index as u64,
                            change.actor_id
                        ));
                    }
                    _ => return Err(format!("`{key}` is not part of a {what} document")),
                }
                continue;
            }
            if !values.contains(&obj) {
                return Err(format!("a {what} document holds only values"));
            }
            let value = match &op.action {
                OpType::Delete => continue,
                OpType::Put(ScalarValue::Boolean(_))
                    if self.legacy_keys.contains(&key.as_str()) =>
                {
                    continue;
                }
                OpType::Put(ScalarValue::Boolean(b)) => SettingValue::Bool(*b),
                OpType::Put(ScalarValue::Int(i)) => SettingValue::Int(*i),
                OpType::Put(ScalarValue::Uint(u)) => {
                    SettingValue::Int(i64::try_from(*u).map_err(|_| format!("`{key}`: too large"))?)
                }
                OpType::Put(ScalarValue::Str(t)) => SettingValue::Text(t.to_string()),
                _ => return Err(format!("`{key}`: values are text, numbers or true/false")),
            };
            (self.validate)(&key, &value).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// A language tag such as `en` or `pt-BR` (letters, digits and dashes).
pub(crate) fn is_language_tag(text: &str) -> bool {
    (2..=35).contains(&text.len()) && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}
