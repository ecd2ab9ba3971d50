//! A member's settings document on this device: create or adopt it, read
//! typed settings, change one key, migrate older schemas, export and import
//! JSON. Changes sync like any document and reach the member's other
//! devices; watch them with `subscribe` (`DocEvent::Changed` for its id).

use settings_model::{SettingValue, Settings};
use sync_protocol::DocumentId;

use crate::{ClientCore, ClientError};

const META_KEY: &str = "settings_document";

impl From<settings_model::SettingsError> for ClientError {
    fn from(error: settings_model::SettingsError) -> Self {
        ClientError::Settings(error.to_string())
    }
}

impl ClientCore {
    /// Creates a settings document locally and remembers it. A server only
    /// accepts it once it is registered as the member's: signed-in apps use
    /// [`crate::Account::create_settings`], which registers it first.
    pub fn create_settings(&self) -> Result<DocumentId, ClientError> {
        let id = self.create_document()?;
        self.init_settings(id)?;
        Ok(id)
    }

    /// Makes the (empty) document `id` this device's settings document.
    pub(crate) fn init_settings(&self, id: DocumentId) -> Result<(), ClientError> {
        self.change(id, |tx| settings_model::init(tx))?;
        self.set_meta(META_KEY, &id.to_string())
    }

    /// Uses an existing settings document (another device made it): it is
    /// fetched on the next sync.
    pub fn use_settings(&self, id: DocumentId) -> Result<(), ClientError> {
        self.find(id)?;
        self.set_meta(META_KEY, &id.to_string())
    }

    /// The settings document this device uses, if any.
    pub fn settings_document(&self) -> Result<Option<DocumentId>, ClientError> {
        Ok(self
            .meta(META_KEY)?
            .and_then(|id| DocumentId::parse(&id).ok()))
    }

    /// The settings, defaults filled in (an older schema reads as migrated).
    pub fn settings(&self, id: DocumentId) -> Result<Settings, ClientError> {
        Ok(self.read(id, settings_model::read)??)
    }

    /// Changes one setting (validated), migrating the document first if needed.
    pub fn set_setting(
        &self,
        id: DocumentId,
        key: &str,
        value: SettingValue,
    ) -> Result<(), ClientError> {
        self.change(id, |tx| {
            settings_model::migrate(tx)?;
            settings_model::set(tx, key, &value)
        })
    }

    /// Brings the document to this app's schema; true if it changed.
    pub fn migrate_settings(&self, id: DocumentId) -> Result<bool, ClientError> {
        self.change(id, |tx| settings_model::migrate(tx))
    }

    pub fn export_settings(&self, id: DocumentId) -> Result<serde_json::Value, ClientError> {
        Ok(self.read(id, settings_model::to_json)??)
    }

    /// Imports exported settings as one change (all keys checked first).
    pub fn import_settings(
        &self,
        id: DocumentId,
        json: &serde_json::Value,
    ) -> Result<(), ClientError> {
        self.change(id, |tx| {
            settings_model::migrate(tx)?;
            settings_model::apply_json(tx, json)
        })
    }
}
