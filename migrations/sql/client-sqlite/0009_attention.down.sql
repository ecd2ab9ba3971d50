ALTER TABLE attendees DROP COLUMN unpaid;
ALTER TABLE attendees DROP COLUMN attention;
