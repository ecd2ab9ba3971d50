DROP INDEX attendees_by_type;
ALTER TABLE attendees DROP COLUMN checked_in;
ALTER TABLE attendees DROP COLUMN unpaid;
ALTER TABLE attendees DROP COLUMN attention;
