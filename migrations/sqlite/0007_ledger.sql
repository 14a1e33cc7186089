-- When a deployment's signed record reached the Git ledger (refs/honua/ledger of its repository).
ALTER TABLE deployments ADD COLUMN ledger_at INTEGER;
