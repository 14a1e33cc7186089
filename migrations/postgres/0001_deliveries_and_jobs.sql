-- Webhook deliveries and the durable job queue. Times are Unix milliseconds (UTC).
CREATE TABLE deliveries (
    id          TEXT PRIMARY KEY,      -- X-GitHub-Delivery: a redelivery has the same id
    event       TEXT NOT NULL,         -- X-GitHub-Event
    repository  TEXT,
    payload     BYTEA NOT NULL,        -- the verified body, for the worker
    received_at BIGINT NOT NULL
);

CREATE TABLE jobs (
    id           BIGSERIAL PRIMARY KEY,
    delivery_id  TEXT NOT NULL UNIQUE REFERENCES deliveries(id),
    state        TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    run_after    BIGINT NOT NULL,
    locked_by    TEXT,
    locked_until BIGINT,
    last_error   TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

CREATE INDEX jobs_ready ON jobs (state, run_after);
