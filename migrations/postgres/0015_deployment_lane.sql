-- The deployment lane: a job that plans a deployment branch's commit (a push, a plain-Git poll's new
-- head) or carries a merged pull request's approvals to it. `honua serve` keeps one worker for these, so
-- pull-request checks waiting on GitHub never hold back a deployment. Jobs queued before this migration
-- are classified by their event; a merged pull request among them stays in the general lane.
ALTER TABLE jobs ADD COLUMN deploys INTEGER NOT NULL DEFAULT 0;
UPDATE jobs SET deploys = 1
 WHERE state IN ('queued', 'running')
   AND delivery_id IN (SELECT id FROM deliveries WHERE event IN ('push', 'honua.git_poll'));
CREATE INDEX jobs_deploys_ready ON jobs (deploys, state, run_after);
