//! The organisation's configuration document on this device: admins create
//! and edit it, every app reads it (the server refuses writes from others).
//! Signed-in apps find it with [`crate::Account::open_org_config`].

use settings_model::SettingValue;
use settings_model::org::{self, OrgConfig};
use sync_protocol::DocumentId;

use crate::{ClientCore, ClientError};

const META_KEY: &str = "org_config_document";

impl ClientCore {
    /// Makes the (empty) document `id` the organisation configuration.
    pub(crate) fn init_org_config(&self, id: DocumentId) -> Result<(), ClientError> {
        self.change(id, |tx| org::init(tx))?;
        self.set_meta(META_KEY, &id.to_string())
    }

    /// Uses the organisation's configuration document `id`: fetched on the next sync.
    pub fn use_org_config(&self, id: DocumentId) -> Result<(), ClientError> {
        self.find(id)?;
        self.set_meta(META_KEY, &id.to_string())
    }

    /// The configuration document this device uses, if it knows one.
    pub fn org_config_document(&self) -> Result<Option<DocumentId>, ClientError> {
        Ok(self
            .meta(META_KEY)?
            .and_then(|id| DocumentId::parse(&id).ok()))
    }

    /// The configuration, defaults filled in; defaults too while the
    /// document has not arrived yet (a new device before its first sync).
    pub fn org_config(&self, id: DocumentId) -> Result<OrgConfig, ClientError> {
        Ok(self.read(id, |doc| {
            if doc.get_heads().is_empty() {
                Ok(OrgConfig::default())
            } else {
                org::read(doc)
            }
        })??)
    }

    /// Changes one key (validated here, and again by the server).
    pub fn set_org_config(
        &self,
        id: DocumentId,
        key: &str,
        value: SettingValue,
    ) -> Result<(), ClientError> {
        self.change(id, |tx| org::set(tx, key, &value))
    }

    pub fn export_org_config(&self, id: DocumentId) -> Result<serde_json::Value, ClientError> {
        Ok(self.read(id, org::to_json)??)
    }

    /// Imports an exported configuration as one change (all keys checked first).
    pub fn import_org_config(
        &self,
        id: DocumentId,
        json: &serde_json::Value,
    ) -> Result<(), ClientError> {
        self.change(id, |tx| org::apply_json(tx, json))
    }
}
