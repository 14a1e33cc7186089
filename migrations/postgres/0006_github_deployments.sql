-- The mirror of each deployment in GitHub's Deployments API: its id there and the last state whose
-- status was posted. A reconciler posts what is missing, so a GitHub outage only delays the mirror.
ALTER TABLE deployments ADD COLUMN github_id BIGINT;
ALTER TABLE deployments ADD COLUMN github_state TEXT;
