-- Append-only, hash-chained audit log (see sync-server/src/audit.rs). Writers
-- on every node lock the single audit_head row, so the chain stays one chain.
CREATE TABLE audit_log (
    seq       BIGINT PRIMARY KEY,
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
);

CREATE INDEX audit_log_at ON audit_log (at);

CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);

INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;

CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
