-- Each document's snapshot in a row of its own. In `documents` the snapshot
-- came before `snapshot_seq` and `updated_at`, which every accepted write
-- reads and writes: SQLite walked the snapshot's whole overflow chain for
-- each write (a megabyte-sized event document: hundreds of pages read per
-- scan). Now the `documents` row stays small. `documents.snapshot` is no
-- longer read or written (kept so the down migration can restore it).
-- PostgreSQL keeps large values out of line (TOAST) and needs no such move.
CREATE TABLE document_snapshots (
    document_id TEXT PRIMARY KEY REFERENCES documents(id) ON DELETE CASCADE,
    data        BLOB NOT NULL
) STRICT;

INSERT INTO document_snapshots (document_id, data)
    SELECT id, snapshot FROM documents WHERE snapshot IS NOT NULL;

UPDATE documents SET snapshot = NULL;
