\set id random(1, :ids)
\set n random(1, 1000000)
UPDATE visitors SET
    (name, email, phone, banned, created) = (
        CASE WHEN true THEN 'Name ' || :n ELSE name END,
        CASE WHEN false THEN NULL ELSE email END,
        CASE WHEN false THEN NULL ELSE phone END,
        COALESCE(NULL::boolean, banned),
        COALESCE(NULL::timestamptz, created)),
    changed_at = CASE WHEN ('Name ' || :n, email, phone, banned, created) IS DISTINCT FROM (name, email, phone, banned, created) THEN now() ELSE changed_at END,
    change_transaction = CASE WHEN ('Name ' || :n, email, phone, banned, created) IS DISTINCT FROM (name, email, phone, banned, created) THEN pg_current_xact_id() ELSE change_transaction END,
    change_sequence = CASE WHEN ('Name ' || :n, email, phone, banned, created) IS DISTINCT FROM (name, email, phone, banned, created) THEN nextval('visitor_change_sequence') ELSE change_sequence END,
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
RETURNING id, name, email, phone, notes, external_id, banned, created, version;
