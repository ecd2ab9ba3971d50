//! Which changes a writer may make to an event document, checked by the
//! server on every incoming change before it is stored or forwarded:
//!
//! - Nobody edits or deletes a scan or an annulment: they are added once,
//!   under their own id, as well-formed records.
//! - Staff (assigned to the event) add scans and annulments, nothing else,
//!   and only in their own name.
//! - Administrators change the rest (details, lists, attendees, ticket
//!   types), with well-formed attendee and ticket type records, list rules
//!   of the right kind, and a time zone this server knows.

use automerge::legacy::{Key, ObjectId, OpType};
use automerge::{Automerge, ExpandedChange, ReadDoc, ScalarValue};

use crate::calendar::Calendar;
use crate::document::{self, Attendee, RecordKind, RecordObjects, RuleObjects};
use crate::rules::{Annulment, Scan, TicketType};

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
    let records = document::check(doc)
        .ok()
        .and_then(|()| RecordObjects::new(doc).ok());
    let Some(mut records) = records else {
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
    let mut added = std::collections::HashSet::new();
    // Read only for an administrator's change beside records (a scan's
    // change never needs it: the server's hot path).
    let mut rule_objects: Option<RuleObjects> = None;
    for (index, op) in change.operations.iter().enumerate() {
        let obj = obj_key(&op.obj);
        let key = match &op.key {
            Key::Map(key) => key.to_string(),
            Key::Seq(_) => String::new(),
        };
        if let Some(kind) = records.bucket_map(&obj) {
            return Err(format!(
                "the buckets of the {} map are made once, with the event",
                kind.name()
            ));
        }
        let record = records.record_at(&obj, &key);
        if let Some((kind, map)) = record
            .clone()
            .filter(|(kind, _)| *kind != RecordKind::Attendee)
        {
            let what = kind.name();
            let exists = doc.get(&map, key.as_str()).ok().flatten().is_some();
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
            let (id, staff) = if kind == RecordKind::Scan {
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
        if record.is_some() {
            if let Some(json) = string_value(&op.action) {
                let attendee: Attendee = serde_json::from_str(json)
                    .map_err(|e| format!("malformed attendee `{key}`: {e}"))?;
                if attendee.id != key {
                    return Err(format!("attendee `{key}` carries the id `{}`", attendee.id));
                }
            }
        } else if records.is_bucket(&obj) {
            // A record outside the bucket its id names would be missing to
            // every lookup by id.
            return Err(format!("`{key}` is not in the bucket of its id"));
        }
        let objects = match &mut rule_objects {
            Some(objects) => objects,
            None => rule_objects.insert(RuleObjects::new(doc).map_err(|e| e.to_string())?),
        };
        // A list or a ticket type map made by this change is checked like
        // one already there.
        if let OpType::Make(automerge::ObjType::Map) = op.action {
            let made = format!(
                "{}@{}",
                change.start_op.get() + index as u64,
                change.actor_id
            );
            if obj == objects.lists {
                objects.list_maps.insert(made);
            } else if obj == "_root" && key == "ticket_types" {
                objects.ticket_type_maps.insert(made);
            }
        }
        check_rules_op(objects, &obj, &key, &op.action)?;
        if obj == "_root"
            && ["scans", "annulments", "attendees", "lists", "event"].contains(&key.as_str())
        {
            return Err(format!("the `{key}` map cannot be replaced"));
        }
        // Made once (by `init`, or at the first use in an event older
        // than them); replacing one would drop what it holds.
        if obj == "_root"
            && ["revoked_tickets", "ticket_types"].contains(&key.as_str())
            && doc
                .get(automerge::ROOT, key.as_str())
                .ok()
                .flatten()
                .is_some()
        {
            return Err(format!("the `{key}` map cannot be replaced"));
        }
    }
    Ok(())
}

/// An administrator's write to the event's time zone, a list's rules or a
/// ticket type: of the kind every replica reads.
fn check_rules_op(
    objects: &RuleObjects,
    obj: &str,
    key: &str,
    action: &OpType,
) -> Result<(), String> {
    if obj == objects.event && key == "time_zone" {
        let zone = string_value(action).ok_or("the time zone is a name")?;
        return Calendar::named(zone).map(drop).map_err(|e| e.to_string());
    }
    if objects.list_maps.contains(obj) {
        return match action {
            OpType::Put(value) => document::check_list_field(key, value),
            _ => Ok(()),
        };
    }
    if objects.ticket_type_maps.contains(obj) {
        let Some(json) = string_value(action) else {
            return match action {
                OpType::Delete => Ok(()),
                _ => Err(format!("ticket type `{key}` is written as a record")),
            };
        };
        let ticket_type: TicketType = serde_json::from_str(json)
            .map_err(|e| format!("malformed ticket type `{key}`: {e}"))?;
        if ticket_type.name != key {
            return Err(format!(
                "ticket type `{key}` carries the name `{}`",
                ticket_type.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::{
        EventInfo, init, init_schema_1, put_annulment, put_attendee, put_scan, record_map_for,
    };
    use crate::hlc::Hlc;
    use crate::rules::Direction;
    use automerge::transaction::Transactable;

    use automerge::{ObjType, ROOT};

    fn event() -> Automerge {
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        init(&mut tx, &EventInfo::new("e", "E")).unwrap();
        tx.commit();
        doc
    }

    /// An event made before schema 2: one flat map per kind of record.
    fn flat_event() -> Automerge {
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        init_schema_1(&mut tx, &EventInfo::new("e", "E")).unwrap();
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
            by_signature: false,
            payment_taken: false,
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
            ..Attendee::default()
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
        for mut doc in [event(), flat_event()] {
            let mut tx = doc.transaction();
            put_scan(&mut tx, &scan("s1", "sam")).unwrap();
            tx.commit();
            let home = |id: &str| record_map_for(&doc, "scans", id).unwrap();
            for writer in [EventWriter::Admin, EventWriter::Staff { user_id: None }] {
                let s1 = home("s1");
                assert!(
                    check(&doc, &writer, |tx| {
                        tx.delete(&s1, "s1").unwrap();
                    })
                    .is_err()
                );
                assert!(
                    check(&doc, &writer, |tx| {
                        tx.put(&s1, "s1", "{}").unwrap();
                    })
                    .unwrap_err()
                    .contains("already exists")
                );
                let s9 = home("s9");
                assert!(
                    check(&doc, &writer, |tx| {
                        tx.put(&s9, "s9", "not json").unwrap();
                    })
                    .unwrap_err()
                    .contains("malformed")
                );
                let s8 = home("s8");
                let forged = serde_json::to_string(&scan("other", "sam")).unwrap();
                assert!(
                    check(&doc, &writer, |tx| {
                        tx.put(&s8, "s8", forged).unwrap();
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
        }
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

    #[test]
    fn only_administrators_set_the_ticket_key_and_revoke_and_the_revocations_stay() {
        use crate::document::{revoke_ticket, set_ticket_key};
        let staff = EventWriter::Staff {
            user_id: Some("sam".into()),
        };
        for doc in [event(), flat_event()] {
            assert_eq!(
                check(&doc, &EventWriter::Admin, |tx| {
                    set_ticket_key(tx, "ed25519:KEY").unwrap();
                    revoke_ticket(tx, "ada", 1_000).unwrap();
                }),
                Ok(()),
                "including the first revocation of an event older than the map"
            );
            for write in [
                (|tx: &mut automerge::transaction::Transaction<'_>| {
                    set_ticket_key(tx, "ed25519:MINE").unwrap();
                }) as fn(&mut automerge::transaction::Transaction<'_>),
                |tx| revoke_ticket(tx, "ada", 1_000).unwrap(),
            ] {
                let err = check(&doc, &staff, write).unwrap_err();
                assert!(err.contains("only add scans"), "{err}");
            }
        }
        let doc = event();
        let err = check(&doc, &EventWriter::Admin, |tx| {
            tx.put_object(ROOT, "revoked_tickets", ObjType::Map)
                .unwrap();
        })
        .unwrap_err();
        assert!(err.contains("cannot be replaced"), "{err}");
    }

    #[test]
    fn list_rules_ticket_types_and_time_zones_are_checked_for_their_kind() {
        use crate::document::{CheckinList, put_list, put_ticket_type, set_info};
        use crate::rules::ListRules;
        for doc in [event(), flat_event()] {
            assert_eq!(
                check(&doc, &EventWriter::Admin, |tx| {
                    let mut rules = ListRules::default();
                    rules.window.weekdays = "sat,sun".parse().unwrap();
                    rules.exit_all_at = "04:00".parse().ok();
                    rules.max_entries_per_day = std::num::NonZeroU32::new(2);
                    rules.window.valid_from_ms = Some(5);
                    let list = CheckinList {
                        id: "new".into(),
                        name: "New door".into(),
                        rules,
                    };
                    put_list(tx, &list).unwrap();
                    put_ticket_type(tx, &TicketType::default()).unwrap();
                    let info = EventInfo {
                        time_zone: "America/New_York".into(),
                        ..EventInfo::new("e", "E")
                    };
                    set_info(tx, &info).unwrap();
                }),
                Ok(()),
                "including a list and the ticket type map made by the same change"
            );
        }
        let mut doc = event();
        let mut tx = doc.transaction();
        put_list(
            &mut tx,
            &CheckinList {
                id: "main".into(),
                name: "Main".into(),
                rules: ListRules::default(),
            },
        )
        .unwrap();
        tx.commit();
        let list = |doc: &Automerge| {
            let lists = doc.get(ROOT, "lists").unwrap().unwrap().1;
            doc.get(&lists, "main").unwrap().unwrap().1
        };
        let main = list(&doc);
        for (key, value, expected) in [
            ("weekdays", ScalarValue::Str("someday".into()), "someday"),
            ("exit_all_at", ScalarValue::Str("4 am".into()), "4 am"),
            (
                "max_entries_per_day",
                ScalarValue::Int(0),
                "max_entries_per_day",
            ),
            (
                "valid_from_ms",
                ScalarValue::Str("tomorrow".into()),
                "valid_from_ms",
            ),
        ] {
            let err = check(&doc, &EventWriter::Admin, |tx| {
                tx.put(&main, key, value.clone()).unwrap();
            })
            .unwrap_err();
            assert!(err.contains(expected), "{key}: {err}");
        }
        let err = check(&doc, &EventWriter::Admin, |tx| {
            let info = EventInfo {
                time_zone: "Atlantis/Capital".into(),
                ..EventInfo::new("e", "E")
            };
            set_info(tx, &info).unwrap();
        })
        .unwrap_err();
        assert!(err.contains("Atlantis/Capital"), "{err}");
        let err = check(&doc, &EventWriter::Admin, |tx| {
            let types = tx.get(ROOT, "ticket_types").unwrap().unwrap().1;
            tx.put(&types, "vip", r#"{"name":"staff"}"#).unwrap();
        })
        .unwrap_err();
        assert!(err.contains("carries the name"), "{err}");
        let err = check(&doc, &EventWriter::Admin, |tx| {
            tx.put_object(ROOT, "ticket_types", ObjType::Map).unwrap();
        })
        .unwrap_err();
        assert!(err.contains("cannot be replaced"), "{err}");
        let staff = EventWriter::Staff {
            user_id: Some("sam".into()),
        };
        let err = check(&doc, &staff, |tx| {
            put_ticket_type(tx, &TicketType::default()).unwrap();
        })
        .unwrap_err();
        assert!(err.contains("only add scans"), "{err}");
    }

    #[test]
    fn buckets_are_never_replaced_and_records_stay_in_the_bucket_of_their_id() {
        let doc = event();
        let scans = doc.get(ROOT, "scans").unwrap().unwrap().1;
        let staff = EventWriter::Staff {
            user_id: Some("sam".into()),
        };
        // Find a bucket that is not the one "s1" belongs in.
        let right = record_map_for(&doc, "scans", "s1").unwrap();
        let wrong = (0..)
            .map(|n| record_map_for(&doc, "scans", &format!("x{n}")).unwrap())
            .find(|bucket| *bucket != right)
            .unwrap();
        let json = serde_json::to_string(&scan("s1", "sam")).unwrap();
        for writer in [EventWriter::Admin, staff.clone()] {
            let err = check(&doc, &writer, |tx| {
                tx.put_object(&scans, "00", ObjType::Map).unwrap();
            })
            .unwrap_err();
            assert!(err.contains("made once"), "{err}");
            let err = check(&doc, &writer, |tx| {
                tx.delete(&scans, "7f").unwrap();
            })
            .unwrap_err();
            assert!(err.contains("made once"), "{err}");
            let err = check(&doc, &writer, |tx| {
                tx.put(&wrong, "s1", json.as_str()).unwrap();
            })
            .unwrap_err();
            assert!(
                err.contains("bucket of its id") || err.contains("only add scans"),
                "{err}"
            );
        }
        assert_eq!(
            check(&doc, &staff, |tx| {
                tx.put(&right, "s1", json.as_str()).unwrap();
            }),
            Ok(())
        );
    }
}
