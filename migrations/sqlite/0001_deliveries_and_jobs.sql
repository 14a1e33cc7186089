-- Webhook deliveries and the durable job queue. Times are Unix milliseconds (UTC).
CREATE TABLE deliveries (
    id          TEXT PRIMARY KEY,      -- X-GitHub-Delivery: a redelivery has the same id
    event       TEXT NOT NULL,         -- X-GitHub-Event
    repository  TEXT,
    payload     BLOB NOT NULL,         -- the verified body, for the worker
    received_at INTEGER NOT NULL
);

CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id  TEXT NOT NULL UNIQUE REFERENCES deliveries(id),
    state        TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    run_after    INTEGER NOT NULL,
    locked_by    TEXT,
    locked_until INTEGER,
    last_error   TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);

CREATE INDEX jobs_ready ON jobs (state, run_after);
