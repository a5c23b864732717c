-- The schema of migrations/sqlite/0001..0004 for PostgreSQL, in one step: the
-- same tables, columns and partial indexes; 64-bit integers throughout (the App
-- reads every integer as i64) and bytea for the payloads.

-- The durable inbox: every verified webhook delivery, stored before GitHub gets its 2xx.
CREATE TABLE inbox (
    seq             BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id     TEXT    NOT NULL UNIQUE,      -- X-GitHub-Delivery: a redelivery repeats it
    event           TEXT    NOT NULL,
    action          TEXT,
    installation_id BIGINT,
    repository      TEXT,
    received_at     BIGINT  NOT NULL,             -- unix milliseconds
    status          TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'processed', 'failed')),
    attempts        BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL DEFAULT 0,
    last_error      TEXT,
    finished_at     BIGINT
);
CREATE INDEX inbox_pending ON inbox (seq) WHERE status = 'pending';

CREATE TABLE inbox_payloads (
    seq     BIGINT  PRIMARY KEY REFERENCES inbox (seq),
    payload BYTEA   NOT NULL                      -- the exact signed bytes
);

CREATE TABLE missions (
    id              BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    repo            TEXT    NOT NULL,
    issue           BIGINT  NOT NULL,
    installation_id BIGINT  NOT NULL,
    state           TEXT    NOT NULL,             -- mission::Mission as JSON
    updated_at      BIGINT  NOT NULL,
    UNIQUE (repo, issue)
);

CREATE TABLE mission_inputs (
    seq             BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    installation_id BIGINT  NOT NULL,
    repo            TEXT    NOT NULL,
    input           TEXT    NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'done', 'failed')),
    attempts        BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL DEFAULT 0,
    last_error      TEXT
);
CREATE INDEX mission_inputs_pending ON mission_inputs (seq) WHERE status = 'pending';

CREATE TABLE outbox (
    id              BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    mission_id      BIGINT  REFERENCES missions (id),
    installation_id BIGINT  NOT NULL,
    repo            TEXT    NOT NULL,
    issue           BIGINT  NOT NULL,
    effect          TEXT    NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'done', 'failed')),
    attempts        BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL DEFAULT 0,
    last_error      TEXT,
    created_at      BIGINT  NOT NULL,
    done_at         BIGINT,
    started_at      BIGINT
);
CREATE INDEX outbox_pending ON outbox (id) WHERE status = 'pending';

CREATE TABLE label_refusals (
    repo   TEXT    NOT NULL,
    issue  BIGINT  NOT NULL,
    login  TEXT    NOT NULL,
    at     BIGINT  NOT NULL,
    PRIMARY KEY (repo, issue, login)
);
