DROP TABLE learned_ticket_keys;
DROP TABLE revoked_tickets;
ALTER TABLE event_index DROP COLUMN ticket_key;
