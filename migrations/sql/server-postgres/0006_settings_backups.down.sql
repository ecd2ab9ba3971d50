DROP TABLE settings_backups;
