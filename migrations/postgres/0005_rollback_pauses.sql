-- After a rollback, automatic deployments of the environment pause until a commit newer than the one
-- rolled back from lands, so the broken commit is not re-deployed by itself.
CREATE TABLE environment_pauses (
    repository  TEXT NOT NULL,
    environment TEXT NOT NULL,
    commit_sha  TEXT NOT NULL,      -- the branch head when the rollback was made
    deployment  TEXT NOT NULL,      -- the rollback deployment
    actor       TEXT NOT NULL,
    at          BIGINT NOT NULL,
    PRIMARY KEY (repository, environment)
);
