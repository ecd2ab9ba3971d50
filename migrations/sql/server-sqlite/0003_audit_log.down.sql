DROP TRIGGER audit_log_no_delete;
DROP TRIGGER audit_log_no_update;
DROP TABLE audit_head;
DROP INDEX audit_log_at;
DROP TABLE audit_log;
