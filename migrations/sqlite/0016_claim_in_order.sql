-- Claims walk the ready jobs in id order: one index per lane on (state, id), so the first due job is
-- found at the front of its state's entries instead of by sorting every due job on each claim (which
-- slowed every claim as a backlog grew, and so grew the backlog). The (state, run_after) indexes served
-- only that sort.
DROP INDEX jobs_ready;
DROP INDEX jobs_deploys_ready;
CREATE INDEX jobs_in_order ON jobs (state, id);
CREATE INDEX jobs_lane_in_order ON jobs (deploys, state, id);
