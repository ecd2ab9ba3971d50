-- Each document's snapshot in a row of its own. In `documents` the snapshot
-- came before `snapshot_seq`, `wanted` and `updated_at`, which every appended
-- chunk (one per sync message) reads or writes: SQLite walked the snapshot's
-- whole overflow chain for each (a 30,000-attendee event with 20,000 scans:
-- ~15 % of a scanning tablet's CPU, all of it holding the store). Now the
-- `documents` row stays small. `documents.snapshot` is no longer read or
-- written (kept so the down migration can restore it).
CREATE TABLE document_snapshots (
    document_id TEXT PRIMARY KEY REFERENCES documents(id) ON DELETE CASCADE,
    data        BLOB NOT NULL
) STRICT;

INSERT INTO document_snapshots (document_id, data)
    SELECT id, snapshot FROM documents WHERE snapshot IS NOT NULL;

UPDATE documents SET snapshot = NULL;
