UPDATE documents SET snapshot =
    (SELECT data FROM document_snapshots WHERE document_id = documents.id);
DROP TABLE document_snapshots;
