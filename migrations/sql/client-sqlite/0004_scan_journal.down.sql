DROP TABLE scan_journal;
