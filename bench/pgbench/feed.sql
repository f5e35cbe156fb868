-- The change feed's page as the store reads it (PgStore::changes): after the position
-- (:transaction, :sequence), below the oldest transaction in flight, with each visitor as it is.
WITH horizon AS (
    SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin,
           0 <> p.purges AND (:transaction::text::xid8, :sequence::bigint)
               < (p.transaction, p.sequence) AS expired,
           p.purges
    FROM visitor_change_purges AS p
), held AS (
    SELECT EXISTS (SELECT 1 FROM visitor_changes
                   WHERE transaction >= (SELECT xmin FROM horizon)) AS held_back
), page AS (
    SELECT c.transaction, c.sequence, c.visitor_id, c.changed_at,
           v.id, v.name, v.email, v.phone, v.notes, v.external_id, v.banned, v.created, v.version
    FROM visitor_changes AS c LEFT JOIN visitors AS v ON v.id = c.visitor_id
    WHERE (c.transaction, c.sequence) > (:transaction::text::xid8, :sequence::bigint)
      AND c.transaction < (SELECT xmin FROM horizon)
      AND c.changed_at >= '1970-01-01T00:00:00Z'
    ORDER BY c.transaction, c.sequence
    LIMIT 1000
)
SELECT h.xmin::text::bigint, h.expired, (SELECT held_back FROM held), h.purges,
       page.transaction::text::bigint, page.sequence, page.visitor_id, page.changed_at, page.id,
       page.name, page.email, page.phone, page.notes, page.external_id, page.banned,
       page.created, page.version
FROM horizon AS h LEFT JOIN page ON true
ORDER BY page.transaction, page.sequence;
