ALTER TABLE presence DROP COLUMN entries_that_day;
ALTER TABLE presence DROP COLUMN entry_day;
ALTER TABLE presence DROP COLUMN stay_ends_at_ms;
DROP TABLE ticket_types;
ALTER TABLE checkin_lists DROP COLUMN rules;
ALTER TABLE event_index DROP COLUMN time_zone;
