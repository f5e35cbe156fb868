-- The store's Update appending its change to the log.
\set id random(1, :ids)
\set n random(1, 1000000)
WITH v AS (UPDATE visitors SET
    name = CASE WHEN true THEN 'Name ' || :n ELSE name END,
    email = CASE WHEN false THEN NULL ELSE email END,
    phone = CASE WHEN false THEN NULL ELSE phone END,
    banned = COALESCE(NULL::boolean, banned),
    created = COALESCE(NULL::timestamptz, created),
    version = version + CASE
        WHEN (CASE WHEN true THEN 'Name ' || :n ELSE name END,
              CASE WHEN false THEN NULL ELSE email END,
              CASE WHEN false THEN NULL ELSE phone END,
              COALESCE(NULL::boolean, banned),
              COALESCE(NULL::timestamptz, created))
             IS DISTINCT FROM (name, email, phone, banned, created)
        THEN 1 ELSE 0 END
WHERE id = :id
  AND (true OR external_id IS NOT DISTINCT FROM NULL)
  AND (true OR notes IS NOT DISTINCT FROM NULL)
  AND (NULL::bigint[] IS NULL OR version = ANY(NULL::bigint[]))
RETURNING id, name, email, phone, notes, external_id, banned, created, version), l AS (INSERT INTO visitor_change_log SELECT pg_current_xact_id(), nextval($$visitor_change_sequence$$), v.id, now(), false FROM v) SELECT * FROM v;
