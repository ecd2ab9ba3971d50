DROP TABLE sync_meta;
DROP TABLE document_chunks;
DROP TABLE documents;
