-- GitHub's content-creation budget of each installation, shared by every replica: the theoretical arrival
-- time (ms) of the next write in each of two GCRA buckets (per minute, per hour), kept in one row so a
-- single UPDATE takes from both or from neither.
CREATE TABLE write_budgets (
    installation BIGINT PRIMARY KEY,
    minute_tat BIGINT NOT NULL,
    hour_tat BIGINT NOT NULL
);
