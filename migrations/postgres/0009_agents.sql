-- Edge agents: the last check-in of each (known by its token's name), and every phase an agent reported.
-- A report is idempotent by (agent, deployment, phase): an agent re-sending after a crash changes nothing.
CREATE TABLE agents (
    name            TEXT PRIMARY KEY,
    environment     TEXT NOT NULL,
    last_seen       BIGINT NOT NULL,
    last_deployment TEXT,
    last_phase      TEXT,
    last_message    TEXT
);

CREATE TABLE agent_reports (
    id            BIGSERIAL PRIMARY KEY,
    deployment_id TEXT NOT NULL REFERENCES deployments(id),
    agent         TEXT NOT NULL,
    phase         TEXT NOT NULL,
    message       TEXT NOT NULL,
    at            BIGINT NOT NULL,
    UNIQUE (agent, deployment_id, phase)
);
CREATE INDEX agent_reports_by_deployment ON agent_reports (deployment_id);
