DROP TABLE server_secrets;
DROP TABLE document_scopes;
DROP TABLE staff_assignments;
DROP TABLE sign_in_challenges;
DROP TABLE session_tokens;
DROP TABLE sessions;
DROP TABLE devices;
