UPDATE documents SET server_heads =
    (SELECT heads FROM document_server_heads WHERE document_id = documents.id);
DROP TABLE document_server_heads;
