-- The job queue's table is rewritten row by row (queued, running, done), and a claim walks the front of
-- `jobs_in_order`'s queued entries, past every dead version left there since the last vacuum: measured
-- on a load with autovacuum off, 51 claims/s before a VACUUM and 1,119/s after. By default autovacuum waits
-- for a fifth of a table to be dead, and this table keeps every job ever run, so that wait grows with it.
-- Vacuumed here after a fixed number of dead versions instead, whatever the table's size.
ALTER TABLE jobs SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 5000,
    autovacuum_analyze_scale_factor = 0,
    autovacuum_analyze_threshold = 5000
);
