//! Per-document access decisions, from the document's kind and scope (see
//! `store::records::DocumentScope`) and the caller's role and assignments:
//!
//! | role   | event (assigned) | event (other) | own settings | others' settings | org config | generic |
//! |--------|------------------|---------------|--------------|------------------|------------|---------|
//! | admin  | read/write       | read/write    | read/write   | read/write       | read/write | read/write/create |
//! | staff  | read/write       | -             | read/write   | -                | read       | -       |
//! | member | -                | -             | read/write   | -                | read       | -       |
//!
//! A document nobody registered is *generic* (admins only). Which changes a
//! writer may make inside a document it may write (staff: scans only, ...)
//! is write validation, a separate step.

use event_model::validate::EventWriter;

use crate::auth::{Principal, Role};
use crate::doc_core::WriteCheck;
use crate::store::records::{DocumentKind, DocumentScope};

/// What a principal may do with one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub read: bool,
    pub write: bool,
    /// May bring the document into existence by syncing it first.
    pub create: bool,
}

impl Access {
    pub const NONE: Access = Access {
        read: false,
        write: false,
        create: false,
    };
    pub const READ: Access = Access {
        read: true,
        write: false,
        create: false,
    };
    pub const READ_WRITE: Access = Access {
        read: true,
        write: true,
        create: true,
    };
}

/// Access of `principal` to a document with `scope` (`None`: generic).
pub fn document_access(principal: &Principal, scope: Option<&DocumentScope>) -> Access {
    if principal.role == Role::Admin {
        return Access::READ_WRITE;
    }
    let Some(scope) = scope else {
        return Access::NONE;
    };
    match scope.kind {
        DocumentKind::Event => match principal.role {
            Role::Staff if principal.assigned_to(&scope.scope) => Access::READ_WRITE,
            _ => Access::NONE,
        },
        DocumentKind::Settings => {
            if principal.user_id() == Some(scope.scope.as_str()) {
                Access::READ_WRITE
            } else {
                Access::NONE
            }
        }
        DocumentKind::OrgConfig => Access::READ,
    }
}

/// How the changes `principal` writes to a document of `scope` are checked
/// (beyond the right to write at all): event documents record by record,
/// settings documents and the organisation configuration key by key;
/// generic documents (admins only) have no schema.
pub fn write_validation(
    principal: &Principal,
    scope: Option<&DocumentScope>,
) -> Option<WriteCheck> {
    match scope.map(|s| s.kind) {
        Some(DocumentKind::Event) => Some(WriteCheck::Event(match principal.role {
            Role::Admin => EventWriter::Admin,
            Role::Staff | Role::Member => EventWriter::Staff {
                user_id: principal.user_id().map(str::to_owned),
            },
        })),
        Some(DocumentKind::Settings) => Some(WriteCheck::Settings),
        Some(DocumentKind::OrgConfig) => Some(WriteCheck::OrgConfig),
        None => None,
    }
}

/// Whether `principal` may register a document of `scope`: admins any;
/// a signed-in user their own settings document.
pub fn may_register(principal: &Principal, scope: &DocumentScope) -> bool {
    principal.role == Role::Admin
        || (scope.kind == DocumentKind::Settings
            && principal.user_id() == Some(scope.scope.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Credential;

    fn user(role: Role, events: &[&str]) -> Principal {
        Principal {
            id: "u1".into(),
            name: "n".into(),
            role,
            credential: Credential::Session {
                session_id: "s".into(),
                device_id: "d".into(),
                second_factor_ms: None,
                expires_ms: i64::MAX,
            },
            events: events.iter().map(|e| e.to_string()).collect(),
        }
    }

    fn scope(kind: DocumentKind, scope: &str) -> DocumentScope {
        DocumentScope {
            kind,
            scope: scope.into(),
        }
    }

    #[test]
    fn the_matrix() {
        let admin = user(Role::Admin, &[]);
        let staff = user(Role::Staff, &["e1"]);
        let member = user(Role::Member, &[]);
        let key_staff = Principal::api_key("k", "k", Role::Staff);
        let e1 = scope(DocumentKind::Event, "e1");
        let e2 = scope(DocumentKind::Event, "e2");
        let own = scope(DocumentKind::Settings, "u1");
        let other = scope(DocumentKind::Settings, "u2");
        let org = scope(DocumentKind::OrgConfig, "");
        use Access as A;
        let cases: [(&Principal, Option<&DocumentScope>, Access); 19] = [
            (&admin, Some(&e1), A::READ_WRITE),
            (&admin, Some(&other), A::READ_WRITE),
            (&admin, Some(&org), A::READ_WRITE),
            (&admin, None, A::READ_WRITE),
            (&staff, Some(&e1), A::READ_WRITE),
            (&staff, Some(&e2), A::NONE),
            (&staff, Some(&own), A::READ_WRITE),
            (&staff, Some(&other), A::NONE),
            (&staff, Some(&org), A::READ),
            (&staff, None, A::NONE),
            (&member, Some(&e1), A::NONE),
            (&member, Some(&own), A::READ_WRITE),
            (&member, Some(&other), A::NONE),
            (&member, Some(&org), A::READ),
            (&member, None, A::NONE),
            // An API key has no user: no settings of its own, no assignments.
            (&key_staff, Some(&e1), A::NONE),
            (&key_staff, Some(&own), A::NONE),
            (&key_staff, Some(&org), A::READ),
            (&key_staff, None, A::NONE),
        ];
        for (principal, scope, expected) in cases {
            assert_eq!(
                document_access(principal, scope),
                expected,
                "{:?} on {scope:?}",
                principal.role
            );
        }
        assert!(may_register(&member, &own));
        assert!(!may_register(&member, &other));
        assert!(!may_register(&staff, &e1));
        assert!(may_register(&admin, &e2));
    }
}
