//! Per-document access decisions. The foundation knows one kind of document,
//! the *generic* document (none of the product's kinds); admins may create,
//! read and write those. Event, settings and configuration kinds add their
//! own rules here.

use crate::auth::{Principal, Role};

/// What a principal may do with one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub read: bool,
    pub write: bool,
    pub create: bool,
}

impl Access {
    pub const NONE: Access = Access {
        read: false,
        write: false,
        create: false,
    };
}

/// Access of `principal` to a generic document.
pub fn generic_document_access(principal: &Principal) -> Access {
    match principal.role {
        Role::Admin => Access {
            read: true,
            write: true,
            create: true,
        },
        Role::Staff | Role::Member => Access::NONE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role) -> Principal {
        Principal {
            id: "k".into(),
            name: "n".into(),
            role,
        }
    }

    #[test]
    fn only_admins_touch_generic_documents() {
        let admin = generic_document_access(&principal(Role::Admin));
        assert!(admin.read && admin.write && admin.create);
        assert_eq!(
            generic_document_access(&principal(Role::Staff)),
            Access::NONE
        );
        assert_eq!(
            generic_document_access(&principal(Role::Member)),
            Access::NONE
        );
    }
}
