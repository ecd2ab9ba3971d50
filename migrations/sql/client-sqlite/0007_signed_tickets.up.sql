-- Signed ticket codes (event_model::tickets): the event's public key and
-- its revocation list, kept in step with the event document like the rest
-- of the index, and a key learned from the server before the document
-- arrives, so a fresh tablet admits signed codes during its download.
ALTER TABLE event_index ADD COLUMN ticket_key TEXT NOT NULL DEFAULT '';

CREATE TABLE revoked_tickets (
    document_id   TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    attendee_id   TEXT NOT NULL,
    revoked_at_ms INTEGER NOT NULL,   -- codes issued at or before this are refused
    PRIMARY KEY (document_id, attendee_id)
) STRICT;

CREATE TABLE learned_ticket_keys (
    document_id TEXT PRIMARY KEY REFERENCES documents(id) ON DELETE CASCADE,
    public_key  TEXT NOT NULL
) STRICT;
