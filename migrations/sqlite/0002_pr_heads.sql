-- Every pull-request head the service has queued work for, by webhook or by polling: the poller queues
-- only heads it has never seen, so a missed webhook is caught up once and a delivered one is not redone.
CREATE TABLE pr_heads (
    repository TEXT NOT NULL,
    number     INTEGER NOT NULL,
    head_sha   TEXT NOT NULL,
    seen_at    INTEGER NOT NULL,
    PRIMARY KEY (repository, number, head_sha)
);
