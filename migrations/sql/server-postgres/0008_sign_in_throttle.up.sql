-- Failed sign-in steps per key (`account:<email or id>`, `address:<ip>`),
-- shared by every node on this database so an attacker spreading attempts
-- over nodes is throttled as one. Times are unix milliseconds.
CREATE TABLE sign_in_throttle (
    key             TEXT PRIMARY KEY,
    failures        BIGINT NOT NULL,
    last_failure_ms BIGINT NOT NULL,
    not_before_ms   BIGINT NOT NULL
);
CREATE INDEX sign_in_throttle_last_failure ON sign_in_throttle (last_failure_ms);
