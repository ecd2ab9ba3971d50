DROP TABLE quarantined_changes;
