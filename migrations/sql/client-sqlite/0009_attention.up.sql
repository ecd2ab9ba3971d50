-- Attention at the door (event_model::rules::Ticket): what staff must see
-- when an attendee comes in, and whether their first entry waits for staff
-- to confirm payment. A ticket type's note is in `ticket_types.rules`.
ALTER TABLE attendees ADD COLUMN attention TEXT;
ALTER TABLE attendees ADD COLUMN unpaid INTEGER NOT NULL DEFAULT 0;

-- An index built before may lack the flags its document holds (written by
-- a newer administrator): read every event again.
UPDATE event_index SET indexed_heads = x'';
