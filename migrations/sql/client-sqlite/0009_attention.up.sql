-- Attention at the door (event_model::rules::Ticket): what staff must see
-- when an attendee comes in, and whether their first entry waits for staff
-- to confirm payment. A ticket type's note is in `ticket_types.rules`.
ALTER TABLE attendees ADD COLUMN attention TEXT;
ALTER TABLE attendees ADD COLUMN unpaid INTEGER NOT NULL DEFAULT 0;

-- Checked in on any list (kept with presence, event_index::reevaluate), so
-- the check-in report counts arrivals and no-shows per ticket type from
-- one covering index instead of joining presence to 100,000 attendees
-- (BENCHMARKS.md, "Offline check-in analytics").
ALTER TABLE attendees ADD COLUMN checked_in INTEGER NOT NULL DEFAULT 0;
UPDATE attendees SET checked_in = EXISTS (SELECT 1 FROM presence p
    WHERE p.document_id = attendees.document_id AND p.attendee_id = attendees.attendee_id
      AND p.checked_in);
CREATE INDEX attendees_by_type ON attendees (document_id, ticket_type, revoked, checked_in);

-- An index built before may lack the flags its document holds (written by
-- a newer administrator): read every event again.
UPDATE event_index SET indexed_heads = x'';
