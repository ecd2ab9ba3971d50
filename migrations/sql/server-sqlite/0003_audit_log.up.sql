-- Append-only, hash-chained audit log (see sync-server/src/audit.rs for the
-- hash). audit_head keeps the chain's last entry so truncation is detectable.
CREATE TABLE audit_log (
    seq       INTEGER PRIMARY KEY,
    at        TEXT NOT NULL,              -- UTC, RFC 3339 with milliseconds
    actor     TEXT NOT NULL,
    device    TEXT,
    address   TEXT,
    action    TEXT NOT NULL,
    target    TEXT,
    result    TEXT NOT NULL,
    details   TEXT NOT NULL,              -- JSON, hashed exactly as stored
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
) STRICT;

CREATE INDEX audit_log_at ON audit_log (at);

CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash TEXT NOT NULL
) STRICT;

INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- The application never updates or deletes entries; neither may anyone else
-- through SQL without first dropping these (which verification would still catch).
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
