DROP TABLE presence;
DROP TABLE annulments;
DROP TABLE scans;
DROP TABLE attendees_fts;
DROP TABLE attendees;
DROP TABLE checkin_lists;
DROP TABLE event_index;
