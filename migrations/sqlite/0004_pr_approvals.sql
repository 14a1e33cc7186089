-- Approvals given on open pull requests, bound to the plan of one head; and merges, which carry a
-- still-valid approval to the deployment of the merge commit when its plan is the same.
CREATE TABLE pr_approvals (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    repository     TEXT NOT NULL,
    number         INTEGER NOT NULL,
    environment    TEXT NOT NULL,
    head_sha       TEXT NOT NULL,
    plan_digest    TEXT NOT NULL,
    change_digest  TEXT NOT NULL,               -- environment + changes + decision, without revisions
    actor          TEXT NOT NULL,
    breaking       INTEGER NOT NULL,
    at             INTEGER NOT NULL,
    invalidated_at INTEGER,                     -- a later push, or a withdrawal
    invalidated_by TEXT
);
CREATE INDEX pr_approvals_by_pr ON pr_approvals (repository, number);

CREATE TABLE pr_merges (
    repository TEXT NOT NULL,
    number     INTEGER NOT NULL,
    merge_sha  TEXT NOT NULL,
    head_sha   TEXT NOT NULL,
    at         INTEGER NOT NULL,
    PRIMARY KEY (repository, number)
);
CREATE INDEX pr_merges_by_commit ON pr_merges (repository, merge_sha);
