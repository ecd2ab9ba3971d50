-- The client's copy of every document it holds. A local change is appended to
-- document_chunks (and committed) before it is ever sent.
CREATE TABLE documents (
    id            TEXT PRIMARY KEY,
    snapshot      BLOB,
    snapshot_seq  INTEGER NOT NULL DEFAULT 0,
    server_heads  BLOB,                      -- heads the server confirmed it has (hashes, 32 bytes each)
    wanted        INTEGER NOT NULL DEFAULT 0,-- asked for with find() but nothing received yet
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
) STRICT;

CREATE TABLE document_chunks (
    document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    data        BLOB NOT NULL,
    PRIMARY KEY (document_id, seq)
) STRICT;

CREATE TABLE sync_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
