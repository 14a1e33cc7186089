-- How agents apply each deployment (the environment's safety, selfHeal and rollout, as signed), and each
-- agent's last heartbeat (commit, health, version, sync status, drifted paths, last result) as JSON.
ALTER TABLE deployments ADD COLUMN safety TEXT NOT NULL DEFAULT '{}';
ALTER TABLE agents ADD COLUMN heartbeat TEXT;
