-- Devices, sessions (one per sign-in: a family of rotating refresh tokens),
-- their hashed tokens, pending sign-in challenges, staff assignments to
-- events and the kind/scope of each document (for per-document rights).
-- Times in these tables are unix milliseconds: the session rules compare
-- them in Rust, with a clock the caller passes in.
CREATE TABLE devices (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    app_version  TEXT NOT NULL,
    created_ms   INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    revoked_ms   INTEGER
) STRICT;
CREATE INDEX devices_by_user ON devices (user_id);

CREATE TABLE sessions (
    id               TEXT PRIMARY KEY,
    user_id          TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    device_id        TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    created_ms       INTEGER NOT NULL,
    second_factor_ms INTEGER,          -- last TOTP code entered in this session (step-up)
    revoked_ms       INTEGER,
    revoked_reason   TEXT
) STRICT;
CREATE INDEX sessions_by_user ON sessions (user_id);
CREATE INDEX sessions_by_device ON sessions (device_id);

-- SHA-256 of each token; the tokens themselves are never stored.
CREATE TABLE session_tokens (
    token_hash TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    kind       TEXT NOT NULL CHECK (kind IN ('access', 'refresh')),
    generation INTEGER NOT NULL,       -- rotations since sign-in
    expires_ms INTEGER NOT NULL,
    used_ms    INTEGER                 -- refresh tokens: when it was exchanged
) STRICT;
CREATE INDEX session_tokens_by_session ON session_tokens (session_id);

-- Between the password and the second factor (or the enrollment).
CREATE TABLE sign_in_challenges (
    token_hash  TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    purpose     TEXT NOT NULL CHECK (purpose IN ('second_factor', 'enroll')),
    device_id   TEXT,
    device_name TEXT NOT NULL,
    app_version TEXT NOT NULL,
    expires_ms  INTEGER NOT NULL,
    used_ms     INTEGER
) STRICT;

CREATE TABLE staff_assignments (
    user_id  TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    event_id TEXT NOT NULL,
    PRIMARY KEY (user_id, event_id)
) STRICT;

-- A document not listed here is a generic document (admins only).
CREATE TABLE document_scopes (
    document_id TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('event', 'settings', 'org_config')),
    scope       TEXT NOT NULL,         -- event id, owner's user id, or '' for the org configuration
    created_by  TEXT NOT NULL,
    created_ms  INTEGER NOT NULL
) STRICT;

-- Secrets shared by every node (e.g. the key that derives a rotated token
-- pair, so a retried refresh gets the same answer on any node).
CREATE TABLE server_secrets (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
) STRICT;
