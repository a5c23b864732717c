-- Missions: one row per (repository, issue), the state machine's state as JSON.
CREATE TABLE missions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    repo            TEXT    NOT NULL,             -- owner/name
    issue           INTEGER NOT NULL,
    installation_id INTEGER NOT NULL,
    state           TEXT    NOT NULL,             -- mission::Mission as JSON
    updated_at      INTEGER NOT NULL,             -- unix milliseconds
    UNIQUE (repo, issue)
);

-- Facts taken from handled webhooks, waiting for the mission driver. Written in the
-- event loop's transaction, so a delivery is marked processed exactly when its
-- input is recorded.
CREATE TABLE mission_inputs (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    installation_id INTEGER NOT NULL,
    repo            TEXT    NOT NULL,
    input           TEXT    NOT NULL,             -- engine::missions::MissionInput as JSON
    status          TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'done', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT
);
CREATE INDEX mission_inputs_pending ON mission_inputs (seq) WHERE status = 'pending';

-- Effects on GitHub, recorded with the state change that decided them and
-- performed afterwards, in order per mission.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    mission_id      INTEGER REFERENCES missions (id),  -- NULL: a reply outside any mission
    installation_id INTEGER NOT NULL,
    repo            TEXT    NOT NULL,
    issue           INTEGER NOT NULL,
    effect          TEXT    NOT NULL,             -- mission::Effect as JSON
    status          TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'done', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    done_at         INTEGER
);
CREATE INDEX outbox_pending ON outbox (id) WHERE status = 'pending';
