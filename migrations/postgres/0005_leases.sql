-- Leases: work that one server of a fleet does at a time (the mission driver,
-- which also reconciles). A holder renews its lease well before it expires; a
-- lease whose holder died expires and another server takes it.
CREATE TABLE leases (
    name        TEXT    PRIMARY KEY,
    holder      TEXT    NOT NULL,             -- host, process id and a random part
    expires_at  BIGINT  NOT NULL              -- unix milliseconds
);
