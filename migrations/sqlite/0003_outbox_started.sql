-- When an attempt at an effect began and its outcome is not yet recorded. Set
-- (and committed) before the REST calls, cleared with the outcome: a row found
-- with it set was interrupted by a crash, so GitHub may already have done it.
ALTER TABLE outbox ADD COLUMN started_at INTEGER;
