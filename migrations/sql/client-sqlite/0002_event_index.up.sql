-- Tables kept in step with the event documents, for searches, counts and
-- scan answers that must not walk a 100,000-attendee document. Everything
-- here can be rebuilt from the documents (indexed_heads says how far each is).
CREATE TABLE event_index (
    document_id   TEXT PRIMARY KEY REFERENCES documents(id) ON DELETE CASCADE,
    event_id      TEXT NOT NULL,
    name          TEXT NOT NULL,
    starts_at     TEXT NOT NULL,
    location      TEXT NOT NULL,
    annul_window_ms INTEGER NOT NULL,
    indexed_heads BLOB NOT NULL              -- document heads the rows below reflect
) STRICT;

CREATE TABLE checkin_lists (
    document_id            TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    list_id                TEXT NOT NULL,
    name                   TEXT NOT NULL,
    allow_multiple_entries INTEGER NOT NULL,
    allow_entry_after_exit INTEGER NOT NULL,
    PRIMARY KEY (document_id, list_id)
) STRICT;

CREATE TABLE attendees (
    -- Never reused (AUTOINCREMENT), so a full-text entry can never point at
    -- a different attendee than the one it was made for.
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    attendee_id TEXT NOT NULL,
    ticket_code TEXT NOT NULL,
    name        TEXT NOT NULL,
    email       TEXT NOT NULL,
    ticket_type TEXT NOT NULL,
    revoked     INTEGER NOT NULL,
    lists       TEXT NOT NULL,               -- JSON array; empty: valid on every list
    UNIQUE (document_id, attendee_id)
) STRICT;
CREATE INDEX attendees_by_code ON attendees (document_id, ticket_code);

-- Any part of a name or email (trigrams). Kept in step by the code, not by
-- triggers: a bulk load then rebuilds it in one pass, about six times faster
-- than a trigger per row for 100,000 attendees.
CREATE VIRTUAL TABLE attendees_fts USING fts5(
    name, email, content = 'attendees', content_rowid = 'id', tokenize = 'trigram'
);

CREATE TABLE scans (
    document_id  TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    scan_id      TEXT NOT NULL,
    attendee_id  TEXT NOT NULL,
    list_id      TEXT NOT NULL,
    direction    TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    staff_id     TEXT NOT NULL,
    hlc          TEXT NOT NULL,              -- sortable text form
    wall_ms      INTEGER NOT NULL,
    outcome      TEXT NOT NULL DEFAULT '',   -- counted, duplicate, annulled, not_inside
    duplicate_of TEXT,
    PRIMARY KEY (document_id, scan_id)
) STRICT;
CREATE INDEX scans_by_attendee ON scans (document_id, attendee_id);
CREATE INDEX scans_by_hlc ON scans (document_id, hlc);

CREATE TABLE annulments (
    document_id   TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    annulment_id  TEXT NOT NULL,
    scan_id       TEXT NOT NULL,
    record        TEXT NOT NULL,             -- JSON of the annulment
    PRIMARY KEY (document_id, annulment_id)
) STRICT;
CREATE INDEX annulments_by_scan ON annulments (document_id, scan_id);

-- An attendee's state on a list, from the rules over their scans.
CREATE TABLE presence (
    document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    attendee_id TEXT NOT NULL,
    list_id     TEXT NOT NULL,
    inside      INTEGER NOT NULL,
    checked_in  INTEGER NOT NULL,
    first_entry TEXT,
    last_entry  TEXT,
    exited      INTEGER NOT NULL,
    PRIMARY KEY (document_id, attendee_id, list_id)
) STRICT;
CREATE INDEX presence_by_list ON presence (document_id, list_id);
