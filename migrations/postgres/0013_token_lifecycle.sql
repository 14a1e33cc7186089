-- Token lifecycle: when each token was last used (to the minute), and rotation with a grace period: the
-- previous secret's hash stays valid until `previous_expires_at`.
ALTER TABLE api_tokens ADD COLUMN last_used_at BIGINT;
ALTER TABLE api_tokens ADD COLUMN previous_hash TEXT;
ALTER TABLE api_tokens ADD COLUMN previous_expires_at BIGINT;
CREATE INDEX api_tokens_previous_hash ON api_tokens (previous_hash);
