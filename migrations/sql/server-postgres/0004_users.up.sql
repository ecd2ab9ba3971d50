-- People who sign in. Emails are stored lower-case; the password is an
-- Argon2id PHC string; the TOTP secret is base32 (needed to check codes).
CREATE TABLE users (
    id                TEXT PRIMARY KEY,
    email             TEXT NOT NULL UNIQUE,
    role              TEXT NOT NULL CHECK (role IN ('admin', 'staff', 'member')),
    password_hash     TEXT NOT NULL,
    totp_secret       TEXT,
    totp_confirmed_at TIMESTAMPTZ,
    totp_last_step    BIGINT,            -- newest accepted TOTP step: older or equal ones are replays
    disabled_at       TIMESTAMPTZ,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE recovery_codes (
    user_id   TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,             -- SHA-256 of an 80-bit code
    used_at   TIMESTAMPTZ,
    PRIMARY KEY (user_id, code_hash)
);
