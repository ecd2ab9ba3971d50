//! The sync connections open on this node, by who holds them, so that ending
//! a session, revoking a device or an API key, or changing a user's rights
//! closes the affected sockets at once. With several nodes the cut is
//! announced through the store and applied by every node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::auth::Principal;

/// Whose connections to close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cut {
    Session(String),
    Device(String),
    User(String),
    ApiKey(String),
}

impl Cut {
    /// `(kind, id)` as announced to other nodes.
    pub fn parts(&self) -> (&'static str, &str) {
        match self {
            Cut::Session(id) => ("session", id),
            Cut::Device(id) => ("device", id),
            Cut::User(id) => ("user", id),
            Cut::ApiKey(id) => ("api_key", id),
        }
    }

    pub fn from_parts(kind: &str, id: &str) -> Option<Self> {
        let id = id.to_owned();
        match kind {
            "session" => Some(Cut::Session(id)),
            "device" => Some(Cut::Device(id)),
            "user" => Some(Cut::User(id)),
            "api_key" => Some(Cut::ApiKey(id)),
            _ => None,
        }
    }

    fn matches(&self, principal: &Principal) -> bool {
        match self {
            Cut::Session(id) => principal.session_id() == Some(id),
            Cut::Device(id) => principal.device_id() == Some(id),
            Cut::User(id) => principal.user_id() == Some(id),
            Cut::ApiKey(id) => principal.user_id().is_none() && principal.id == *id,
        }
    }
}

struct Entry {
    principal: Principal,
    /// Set to the reason when the connection must close.
    close: watch::Sender<Option<String>>,
}

#[derive(Clone, Default)]
pub struct LiveConnections {
    entries: Arc<Mutex<HashMap<u64, Entry>>>,
}

/// Keeps a connection listed; unlists it on drop.
pub struct LiveGuard {
    entries: Arc<Mutex<HashMap<u64, Entry>>>,
    key: u64,
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.entries
            .lock()
            .expect("live connections poisoned")
            .remove(&self.key);
    }
}

impl LiveConnections {
    /// Lists a connection; the receiver turns `Some(reason)` when it must close.
    pub fn register(
        &self,
        key: u64,
        principal: &Principal,
    ) -> (LiveGuard, watch::Receiver<Option<String>>) {
        let (close, closed) = watch::channel(None);
        self.entries
            .lock()
            .expect("live connections poisoned")
            .insert(
                key,
                Entry {
                    principal: principal.clone(),
                    close,
                },
            );
        (
            LiveGuard {
                entries: self.entries.clone(),
                key,
            },
            closed,
        )
    }

    /// Closes every matching connection on this node; returns how many.
    pub fn cut(&self, cut: &Cut, reason: &str) -> usize {
        let entries = self.entries.lock().expect("live connections poisoned");
        let mut closed = 0;
        for entry in entries.values().filter(|e| cut.matches(&e.principal)) {
            entry.close.send_replace(Some(reason.to_owned()));
            closed += 1;
        }
        closed
    }

    /// The principals of every open connection (to re-check after missed notices).
    pub fn principals(&self) -> Vec<Principal> {
        self.entries
            .lock()
            .expect("live connections poisoned")
            .values()
            .map(|e| e.principal.clone())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .expect("live connections poisoned")
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Credential, Role};

    fn session(user: &str, session: &str, device: &str) -> Principal {
        Principal {
            id: user.into(),
            name: user.into(),
            role: Role::Staff,
            credential: Credential::Session {
                session_id: session.into(),
                device_id: device.into(),
                second_factor_ms: None,
                expires_ms: i64::MAX,
            },
            events: vec![],
        }
    }

    #[test]
    fn cuts_close_exactly_the_matching_connections() {
        let live = LiveConnections::default();
        let (_a, a) = live.register(1, &session("u1", "s1", "d1"));
        let (_b, b) = live.register(2, &session("u1", "s2", "d2"));
        let (_c, c) = live.register(3, &Principal::api_key("u1", "key", Role::Admin));
        assert_eq!(live.cut(&Cut::Device("d1".into()), "device revoked"), 1);
        assert_eq!(a.borrow().as_deref(), Some("device revoked"));
        assert!(b.borrow().is_none() && c.borrow().is_none());
        // An API key whose id equals a user id is not that user.
        assert_eq!(live.cut(&Cut::User("u1".into()), "signed out"), 2);
        assert!(b.borrow().is_some() && c.borrow().is_none());
        assert_eq!(live.cut(&Cut::ApiKey("u1".into()), "key revoked"), 1);
        assert!(c.borrow().is_some());
        drop(_a);
        assert_eq!(live.len(), 2);
        assert_eq!(
            Cut::from_parts("device", "x"),
            Some(Cut::Device("x".into()))
        );
        assert_eq!(Cut::from_parts("nope", "x"), None);
    }
}
