-- The durable inbox: every verified webhook delivery, stored before GitHub gets its 2xx.
-- `seq` is arrival order; the event loop processes pending rows in that order.
-- The row is small and changes as the delivery is processed; the payload sits in its
-- own table, written once, because SQLite rewrites a whole record on UPDATE.
CREATE TABLE inbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id     TEXT    NOT NULL UNIQUE,      -- X-GitHub-Delivery: a redelivery repeats it
    event           TEXT    NOT NULL,             -- X-GitHub-Event
    action          TEXT,
    installation_id INTEGER,
    repository      TEXT,                         -- owner/name
    received_at     INTEGER NOT NULL,             -- unix milliseconds
    status          TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'processed', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,   -- unix milliseconds; retries wait until then
    last_error      TEXT,
    finished_at     INTEGER                       -- when processed or parked as failed
);

-- The event loop's query: pending rows in arrival order. Partial, so it stays small.
CREATE INDEX inbox_pending ON inbox (seq) WHERE status = 'pending';

CREATE TABLE inbox_payloads (
    seq     INTEGER PRIMARY KEY REFERENCES inbox (seq),
    payload BLOB    NOT NULL                      -- the exact signed bytes
);
