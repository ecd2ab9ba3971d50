-- Scans answered at the door but not yet written into their event document.
-- A scan is durable (and counted, through the index tables) as soon as its
-- row is here; a background writer moves scans into the document in
-- batches, deleting their rows in the same transaction as the document
-- chunk that holds them. Rows left after a crash are replayed at the next
-- open, idempotently by scan id.
-- Rowids grow with each answer, so batches keep the order scans were made in.
CREATE TABLE scan_journal (
    document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    scan_id     TEXT NOT NULL,
    record      TEXT NOT NULL,               -- the scan as event_model writes it (JSON)
    PRIMARY KEY (document_id, scan_id)
) STRICT;
