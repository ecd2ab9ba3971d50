-- Integration tokens. Only a SHA-256 of the token is kept: tokens are 256-bit
-- random values, so a fast hash is enough and lets every request be checked cheaply.
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('admin', 'staff', 'member')),
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at   TEXT
) STRICT;
