-- 100,000 visitors, each with an external_id, as the benchmark's seeded database has them.
INSERT INTO visitors (name, external_id, created)
SELECT 'Visitor ' || n, 'ext-' || n, now() FROM generate_series(1, 100000) AS n;
VACUUM ANALYZE;
