-- People told, on an issue without a mission, that they may not start one. A later
-- label by the same person on that issue gets no second reply: answering every
-- refused act would let anyone who can label spend the App's rate limit on comments.
-- (Inside a mission, the mission's state remembers whom it refused.)
CREATE TABLE label_refusals (
    repo   TEXT    NOT NULL,             -- owner/name
    issue  INTEGER NOT NULL,
    login  TEXT    NOT NULL,             -- lowercase
    at     INTEGER NOT NULL,             -- unix milliseconds
    PRIMARY KEY (repo, issue, login)
);
