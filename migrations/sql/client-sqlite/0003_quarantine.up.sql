-- Local changes the server refused (write validation, lost rights): taken
-- out of the document so it matches what the server accepted, and kept here,
-- whole, for people to see and deal with. Never sent again.
CREATE TABLE quarantined_changes (
    document_id TEXT NOT NULL,
    change_hash TEXT NOT NULL,
    data        BLOB NOT NULL,               -- the change as automerge encodes it
    reason      TEXT NOT NULL,
    at_ms       INTEGER NOT NULL,
    PRIMARY KEY (document_id, change_hash)
) STRICT;
