//! Which changes a writer may make to an event document, checked by the
//! server on every incoming change before it is stored or forwarded:
//!
//! - Nobody edits or deletes a scan or an annulment: they are added once,
//!   under their own id, as well-formed records.
//! - Staff (assigned to the event) add scans and annulments, nothing else,
//!   and only in their own name.
//! - Administrators change the rest (details, lists, attendees), with
//!   well-formed attendee records.

use automerge::legacy::{Key, ObjectId, OpType};
use automerge::{Automerge, ExpandedChange, ObjType, ROOT, ReadDoc, ScalarValue, Value};

use crate::document::{self, Attendee};
use crate::rules::{Annulment, Scan};

/// Who is writing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventWriter {
    Admin,
    /// Staff assigned to the event; `user_id` is checked against the
    /// records' `staff_id` (None for an API key, which has no user).
    Staff {
        user_id: Option<String>,
    },
}

fn obj_key(obj: &ObjectId) -> String {
    match obj {
        ObjectId::Root => "_root".into(),
        ObjectId::Id(id) => format!("{}@{}", id.0, id.1),
    }
}

/// The document's maps, by the text form of their object ids.
struct Maps {
    attendees: String,
    scans: String,
    annulments: String,
}

fn map_key(doc: &Automerge, key: &str) -> Option<String> {
    match doc.get(ROOT, key).ok()? {
        Some((Value::Object(ObjType::Map), id)) => Some(id.to_string()),
        _ => None,
    }
}

fn maps(doc: &Automerge) -> Option<Maps> {
    Some(Maps {
        attendees: map_key(doc, "attendees")?,
        scans: map_key(doc, "scans")?,
        annulments: map_key(doc, "annulments")?,
    })
}

fn string_value(action: &OpType) -> Option<&str> {
    match action {
        OpType::Put(ScalarValue::Str(text)) => Some(text.as_str()),
        _ => None,
    }
}

/// Checks one change against the document it would be applied to.
/// `Err` says why it is refused.
pub fn check_event_change(
    doc: &Automerge,
    change: &ExpandedChange,
    writer: &EventWriter,
) -> Result<(), String> {
    let is_admin = *writer == EventWriter::Admin;
    let Some(maps) = maps(doc).filter(|_| document::check(doc).is_ok()) else {
        // Not (yet) an event document: only an administrator creates one.
        return if is_admin {
            Ok(())
        } else {
            Err("only an administrator creates an event document".into())
        };
    };
    let staff_user = match writer {
        EventWriter::Staff { user_id } => user_id.as_deref(),
        EventWriter::Admin => None,
    };
    let scans = doc.get(ROOT, "scans").ok().flatten().map(|(_, id)| id);
    let annulments = doc.get(ROOT, "annulments").ok().flatten().map(|(_, id)| id);
    let mut added = std::collections::HashSet::new();
    for op in &change.operations {
        let obj = obj_key(&op.obj);
        let key = match &op.key {
            Key::Map(key) => key.to_string(),
            Key::Seq(_) => String::new(),
        };
        let record_map = if obj == maps.scans {
            Some(("scan", &scans))
        } else if obj == maps.annulments {
            Some(("annulment", &annulments))
        } else {
            None
        };
        if let Some((what, map)) = record_map {
            let exists = map
                .as_ref()
                .and_then(|m| doc.get(m, key.as_str()).ok().flatten())
                .is_some();
            if exists || !added.insert((what, key.clone())) {
                return Err(format!(
                    "{what} `{key}` already exists: records are never edited"
                ));
            }
            let Some(json) = string_value(&op.action) else {
                return Err(format!(
                    "{what}s are added as records, never deleted or changed"
                ));
            };
            let (id, staff) = if what == "scan" {
                let scan: Scan = serde_json::from_str(json)
                    .map_err(|e| format!("malformed scan `{key}`: {e}"))?;
                (scan.id, scan.staff_id)
            } else {
                let annulment: Annulment = serde_json::from_str(json)
                    .map_err(|e| format!("malformed annulment `{key}`: {e}"))?;
                (annulment.id, annulment.staff_id)
            };
            if id != key {
                return Err(format!("{what} `{key}` carries the id `{id}`"));
            }
            if let Some(user) = staff_user
                && staff != user
            {
                return Err(format!(
                    "{what} `{key}` is signed by `{staff}`, not by its writer"
                ));
            }
            continue;
        }
        if !is_admin {
            return Err("staff may only add scans and annulments".into());
        }
        if obj == maps.attendees
            && let Some(json) = string_value(&op.action)
        {
            let attendee: Attendee = serde_json::from_str(json)
                .map_err(|e| format!("malformed attendee `{key}`: {e}"))?;
            if attendee.id != key {
                return Err(format!("attendee `{key}` carries the id `{}`", attendee.id));
            }
        }
        if obj == "_root"
            && ["scans", "annulments", "attendees", "lists", "event"].contains(&key.as_str())
        {
            return Err(format!("the `{key}` map cannot be replaced"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::{EventInfo, init, put_annulment, put_attendee, put_scan};
    use crate::hlc::Hlc;
    use crate::rules::Direction;
    use automerge::transaction::Transactable;

    fn event() -> Automerge {
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        init(&mut tx, &EventInfo::new("e", "E")).unwrap();
        tx.commit();
        doc
    }

    fn scan(id: &str, staff: &str) -> Scan {
        Scan {
            id: id.into(),
            attendee_id: "a".into(),
            list_id: "main".into(),
            direction: Direction::Entry,
            device_id: "d".into(),
            staff_id: staff.into(),
            hlc: Hlc {
                wall_ms: 1,
                counter: 0,
                node: "d".into(),
            },
            wall_ms: 1,
        }
    }

    /// The change `f` makes on a fork of `doc`, checked against `doc`.
    fn check(
        doc: &Automerge,
        writer: &EventWriter,
        f: impl FnOnce(&mut automerge::transaction::Transaction<'_>),
    ) -> Result<(), String> {
        let mut fork = doc.fork();
        let before = fork.get_heads();
        let mut tx = fork.transaction();
        f(&mut tx);
        tx.commit();
        let changes = fork.get_changes(&before);
        assert_eq!(changes.len(), 1);
        check_event_change(doc, &changes[0].decode(), writer)
    }

    #[test]
    fn staff_add_scans_in_their_own_name_and_nothing_else() {
        let doc = event();
        let staff = EventWriter::Staff {
            user_id: Some("sam".into()),
        };
        assert_eq!(
            check(&doc, &staff, |tx| {
                put_scan(tx, &scan("s1", "sam")).unwrap();
            }),
            Ok(())
        );
        assert!(
            check(&doc, &staff, |tx| {
                put_scan(tx, &scan("s1", "eve")).unwrap();
            })
            .unwrap_err()
            .contains("signed by")
        );
        let attendee = Attendee {
            id: "a".into(),
            ticket_code: "T".into(),
            name: "N".into(),
            email: String::new(),
            ticket_type: String::new(),
            revoked: false,
            lists: vec![],
        };
        assert!(
            check(&doc, &staff, |tx| {
                put_attendee(tx, &attendee).unwrap();
            })
            .unwrap_err()
            .contains("only add scans")
        );
        assert_eq!(
            check(&doc, &EventWriter::Admin, |tx| {
                put_attendee(tx, &attendee).unwrap();
            }),
            Ok(())
        );
        assert!(
            check(&doc, &staff, |tx| {
                tx.put(ROOT, "name", "x").unwrap();
            })
            .is_err()
        );
        let annulment = Annulment {
            id: "x1".into(),
            scan_id: "s1".into(),
            device_id: "d".into(),
            staff_id: "sam".into(),
            hlc: Hlc {
                wall_ms: 2,
                counter: 0,
                node: "d".into(),
            },
            wall_ms: 2,
        };
        assert_eq!(
            check(&doc, &staff, |tx| {
                put_annulment(tx, &annulment).unwrap();
            }),
            Ok(())
        );
    }

    #[test]
    fn nobody_edits_or_deletes_a_scan_or_forges_a_record() {
        let mut doc = event();
        let mut tx = doc.transaction();
        put_scan(&mut tx, &scan("s1", "sam")).unwrap();
        tx.commit();
        let scans = doc.get(ROOT, "scans").unwrap().unwrap().1;
        for writer in [EventWriter::Admin, EventWriter::Staff { user_id: None }] {
            let s2 = scans.clone();
            assert!(
                check(&doc, &writer, |tx| {
                    tx.delete(&s2, "s1").unwrap();
                })
                .is_err()
            );
            let s3 = scans.clone();
            assert!(
                check(&doc, &writer, |tx| {
                    tx.put(&s3, "s1", "{}").unwrap();
                })
                .unwrap_err()
                .contains("already exists")
            );
            let s4 = scans.clone();
            assert!(
                check(&doc, &writer, |tx| {
                    tx.put(&s4, "s9", "not json").unwrap();
                })
                .unwrap_err()
                .contains("malformed")
            );
            let s5 = scans.clone();
            let forged = serde_json::to_string(&scan("other", "sam")).unwrap();
            assert!(
                check(&doc, &writer, |tx| {
                    tx.put(&s5, "s8", forged).unwrap();
                })
                .unwrap_err()
                .contains("carries the id")
            );
        }
        assert!(
            check(&doc, &EventWriter::Admin, |tx| {
                tx.put_object(ROOT, "scans", ObjType::Map).unwrap();
            })
            .is_err()
        );
        // Only an administrator makes a document an event.
        let empty = Automerge::new();
        assert!(
            check(&empty, &EventWriter::Staff { user_id: None }, |tx| {
                init(tx, &EventInfo::new("e", "E")).unwrap();
            })
            .is_err()
        );
        assert_eq!(
            check(&empty, &EventWriter::Admin, |tx| {
                init(tx, &EventInfo::new("e", "E")).unwrap();
            }),
            Ok(())
        );
    }
}
