-- Notifications from the policy's `notifications` block: each deployment keeps the block it was
-- planned under and the last state notified; an outbox holds every message until it is delivered,
-- retried with backoff, or marked undeliverable (no transport) so nothing is silently lost.
ALTER TABLE deployments ADD COLUMN notifications TEXT;
ALTER TABLE deployments ADD COLUMN notified_state TEXT;

CREATE TABLE notifications (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment_id TEXT NOT NULL REFERENCES deployments(id),
    event         TEXT NOT NULL,                 -- onApprovalRequired | onDeploymentCompleted | onDeploymentFailed
    kind          TEXT NOT NULL,                 -- slack | webhook | email | pagerduty | …
    url           TEXT,
    payload       TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed', 'undeliverable')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_at       INTEGER NOT NULL,
    last_error    TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX notifications_due ON notifications (state, next_at);
