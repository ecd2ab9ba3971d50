-- Automerge documents: the latest compacted snapshot plus incremental chunks
-- appended since. Loading a document = snapshot followed by its chunks in seq order.
CREATE TABLE documents (
    id            TEXT PRIMARY KEY,            -- automerge-repo document id (bs58check)
    snapshot      BYTEA,                       -- Automerge::save() output, NULL until first compaction
    snapshot_seq  BIGINT NOT NULL DEFAULT 0,   -- chunks with seq <= this are folded into the snapshot
    last_seq      BIGINT NOT NULL DEFAULT 0,   -- allocated under the row lock, so writers on several nodes never collide
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE document_chunks (
    document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    seq         BIGINT NOT NULL,
    data        BYTEA NOT NULL,
    PRIMARY KEY (document_id, seq)
);
