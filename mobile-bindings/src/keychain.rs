//! Session tokens go to the platform's secure storage (Android Keystore,
//! iOS Keychain), which only the app can reach: the app passes a
//! [`SecureStore`] and client-core's keychain calls (through keyring-core)
//! are forwarded to it. keyring-core has no Android store, and handing the
//! choice to the app keeps the library free of platform code.

use std::collections::HashMap;
use std::sync::Arc;

use keyring_core::api::{CredentialApi, CredentialStoreApi};
use keyring_core::{Credential, Entry, Error, Result};

/// The app's secure storage for secrets (session tokens).
#[uniffi::export(with_foreign)]
pub trait SecureStore: Send + Sync {
    /// The secret saved under `key`, if any.
    fn load(&self, key: String) -> Option<Vec<u8>>;
    fn save(&self, key: String, secret: Vec<u8>);
    fn delete(&self, key: String);
}

/// keyring-core's view of the app's [`SecureStore`].
pub(crate) struct ForeignStore(pub Arc<dyn SecureStore>);

struct ForeignCredential {
    store: Arc<dyn SecureStore>,
    service: String,
    user: String,
}

impl ForeignCredential {
    fn key(&self) -> String {
        format!("{}|{}", self.service, self.user)
    }
}

impl CredentialApi for ForeignCredential {
    fn set_secret(&self, secret: &[u8]) -> Result<()> {
        self.store.save(self.key(), secret.to_vec());
        Ok(())
    }

    fn get_secret(&self) -> Result<Vec<u8>> {
        self.store.load(self.key()).ok_or(Error::NoEntry)
    }

    fn delete_credential(&self) -> Result<()> {
        if self.store.load(self.key()).is_none() {
            return Err(Error::NoEntry);
        }
        self.store.delete(self.key());
        Ok(())
    }

    fn get_credential(&self) -> Result<Option<Arc<Credential>>> {
        // This is the credential itself, not a wrapper of another.
        Ok(None)
    }

    fn get_specifiers(&self) -> Option<(String, String)> {
        Some((self.service.clone(), self.user.clone()))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl CredentialStoreApi for ForeignStore {
    fn vendor(&self) -> String {
        "sync-core app secure store".into()
    }

    fn id(&self) -> String {
        "app".into()
    }

    fn build(
        &self,
        service: &str,
        user: &str,
        _modifiers: Option<&HashMap<&str, &str>>,
    ) -> Result<Entry> {
        Ok(Entry::new_with_credential(Arc::new(ForeignCredential {
            store: self.0.clone(),
            service: service.to_owned(),
            user: user.to_owned(),
        })))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
