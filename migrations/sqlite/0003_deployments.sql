-- Deployments, approvals, the append-only audit log, API tokens, the service's signing key and the
-- branch heads the service has deployed from. Times are Unix milliseconds (UTC).
CREATE TABLE deployments (
    id          TEXT PRIMARY KEY,                -- prod-20241004123456-abc1234
    repository  TEXT NOT NULL,                   -- owner/name, or the remote URL in plain-Git mode
    environment TEXT NOT NULL,
    seq         INTEGER NOT NULL,                -- per repository and environment, increasing
    commit_sha  TEXT NOT NULL,
    from_sha    TEXT,                            -- the last completed deployment's commit, if any
    plan_digest TEXT NOT NULL,
    plan        TEXT NOT NULL,                   -- the Plan, JSON
    state       TEXT NOT NULL CHECK (state IN ('pending', 'awaiting_approval', 'approved', 'applying', 'completed',
                    'failed', 'rolled_back', 'blocked', 'rejected', 'superseded', 'expired')),
    gate        TEXT NOT NULL CHECK (gate IN ('auto', 'approval', 'breaking', 'closed')),
    reasons     TEXT NOT NULL,                   -- JSON array of the policy's reasons
    windows     TEXT NOT NULL,                   -- the policy's deployment windows and blackouts, JSON
    cause       TEXT NOT NULL,                   -- push | rollback
    record      TEXT,                            -- the signed record (canonical JSON), once approved
    signature   TEXT,                            -- Ed25519 over `record`, hex
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (repository, environment, seq)
);
CREATE INDEX deployments_by_environment ON deployments (repository, environment, state);

CREATE TABLE deployment_sequences (
    repository  TEXT NOT NULL,
    environment TEXT NOT NULL,
    last        INTEGER NOT NULL,
    PRIMARY KEY (repository, environment)
);

CREATE TABLE approvals (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment_id TEXT NOT NULL REFERENCES deployments(id),
    actor         TEXT NOT NULL,
    via           TEXT NOT NULL,                 -- policy | comment | api | cli
    plan_digest   TEXT NOT NULL,
    breaking      INTEGER NOT NULL,              -- breaking changes acknowledged
    at            INTEGER NOT NULL
);

CREATE TABLE audit (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at            INTEGER NOT NULL,
    actor         TEXT NOT NULL,
    action        TEXT NOT NULL,                 -- transition | approve | reject | refuse | token.create
    repository    TEXT,
    environment   TEXT,
    deployment_id TEXT,
    from_state    TEXT,
    to_state      TEXT,
    message       TEXT NOT NULL
);
CREATE INDEX audit_by_deployment ON audit (deployment_id);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

CREATE TABLE branch_heads (
    repository TEXT NOT NULL,
    branch     TEXT NOT NULL,
    sha        TEXT NOT NULL,
    seen_at    INTEGER NOT NULL,
    PRIMARY KEY (repository, branch)
);

CREATE TABLE api_tokens (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('viewer', 'approver', 'admin', 'agent')),
    environment TEXT,                            -- an agent token serves one environment
    token_hash  TEXT NOT NULL UNIQUE,            -- SHA-256 of the token; the token itself is never stored
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

CREATE TABLE service_keys (
    name       TEXT PRIMARY KEY,
    secret     BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
