-- An approval timeout: a deployment awaiting its approval (or blocked) past `expires_at` (Unix ms, from the
-- environment's `approvalTimeout` when it was planned) expires; NULL waits for as long as it takes.
ALTER TABLE deployments ADD COLUMN expires_at BIGINT;
CREATE INDEX deployments_expiring ON deployments (expires_at);
