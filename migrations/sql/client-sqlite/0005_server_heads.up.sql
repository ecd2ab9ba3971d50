-- The heads the server confirmed, in a small row of their own. They change
-- with nearly every sync message; beside the snapshot in `documents` each
-- change rewrote the whole row, snapshot included (a 30,000-attendee event:
-- ~100 pages to the WAL and an fsync per message). `documents.server_heads`
-- is no longer read or written (kept so the down migration can restore it).
CREATE TABLE document_server_heads (
    document_id TEXT PRIMARY KEY REFERENCES documents(id) ON DELETE CASCADE,
    heads       BLOB NOT NULL                -- hashes, 32 bytes each
) STRICT;

INSERT INTO document_server_heads (document_id, heads)
    SELECT id, server_heads FROM documents WHERE server_heads IS NOT NULL;

UPDATE documents SET server_heads = NULL;
