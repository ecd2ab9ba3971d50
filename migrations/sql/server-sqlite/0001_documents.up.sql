-- Automerge documents: the latest compacted snapshot plus incremental chunks
-- appended since. Loading a document = snapshot followed by its chunks in seq order.
CREATE TABLE documents (
    id            TEXT PRIMARY KEY,          -- automerge-repo document id (bs58check)
    snapshot      BLOB,                      -- Automerge::save() output, NULL until first compaction
    snapshot_seq  INTEGER NOT NULL DEFAULT 0,-- chunks with seq <= this are folded into the snapshot
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
) STRICT;

CREATE TABLE document_chunks (
    document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    data        BLOB NOT NULL,               -- Automerge::save_after() output (one or more changes)
    PRIMARY KEY (document_id, seq)
) STRICT;
