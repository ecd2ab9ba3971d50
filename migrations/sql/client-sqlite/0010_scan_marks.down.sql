ALTER TABLE scans DROP COLUMN payment_taken;
ALTER TABLE scans DROP COLUMN by_signature;
