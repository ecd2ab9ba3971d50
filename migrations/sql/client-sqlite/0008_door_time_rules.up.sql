-- Door rules of time and count (event_model::rules): the event's time zone,
-- each list's whole rules as JSON (ListRules; the two flags stay in their
-- columns too), each ticket type's window, and what a stay needs for the
-- rules of count and time (when it ends by the list's check-out of
-- everyone, and the entries counted on the day of the last one).
ALTER TABLE event_index ADD COLUMN time_zone TEXT NOT NULL DEFAULT '';

ALTER TABLE checkin_lists ADD COLUMN rules TEXT NOT NULL DEFAULT '{}';
UPDATE checkin_lists SET rules = json_object(
    'allow_multiple_entries', json(CASE WHEN allow_multiple_entries THEN 'true' ELSE 'false' END),
    'allow_entry_after_exit', json(CASE WHEN allow_entry_after_exit THEN 'true' ELSE 'false' END));

CREATE TABLE ticket_types (
    document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    rules       TEXT NOT NULL,   -- JSON of event_model::rules::TicketType
    PRIMARY KEY (document_id, name)
) STRICT;

ALTER TABLE presence ADD COLUMN stay_ends_at_ms INTEGER;
ALTER TABLE presence ADD COLUMN entry_day INTEGER;
ALTER TABLE presence ADD COLUMN entries_that_day INTEGER NOT NULL DEFAULT 0;

-- An index built by an app before these rules may lack rules its document
-- holds (written by a newer administrator): read every event again.
UPDATE event_index SET indexed_heads = x'';
