-- What a scan record says of how it was admitted (event_model::rules::Scan):
-- on a signed code's word, and with payment taken at the door, so the
-- report counts each device's payments.
ALTER TABLE scans ADD COLUMN by_signature INTEGER NOT NULL DEFAULT 0;
ALTER TABLE scans ADD COLUMN payment_taken INTEGER NOT NULL DEFAULT 0;
