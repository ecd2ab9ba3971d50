-- Snapshots of members' settings documents (as JSON), taken by the server
-- after changes (debounced) and thinned by a retention policy. A restore
-- writes the snapshot back as a new change, so every device receives it.
CREATE TABLE settings_backups (
    id          TEXT PRIMARY KEY,
    document_id TEXT NOT NULL,
    taken_ms    BIGINT NOT NULL,
    settings    TEXT NOT NULL,            -- JSON of the settings
    heads       TEXT NOT NULL             -- document heads it was taken at
);
CREATE INDEX settings_backups_by_document ON settings_backups (document_id, taken_ms);
