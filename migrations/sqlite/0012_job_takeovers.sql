-- Takeovers: how often a job was claimed again after its worker vanished (its lease ran out while it was
-- running). A job that stops its worker twice is quarantined instead of being run a third time.
ALTER TABLE jobs ADD COLUMN takeovers INTEGER NOT NULL DEFAULT 0;
