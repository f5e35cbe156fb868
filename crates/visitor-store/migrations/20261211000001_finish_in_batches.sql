-- A sender ends many attempts in one call, one round trip for a batch: each attempt that was
-- sent is logged, in order, and each webhook's log pruned to its latest 100 (only rows no other
-- call holds, as in 20261210000002); 'retry' deliveries become due after their delay, 'done'
-- ones (delivered, dropped or given up) go, 'disable' (410) disables the webhook and drops its
-- pending deliveries. finish_webhook_delivery stays for the instances of the version before
-- while a rolling upgrade runs.
CREATE FUNCTION finish_webhook_deliveries(
    p_deliveries bigint[], p_webhooks bigint[], p_outcomes text[], p_retry_ms bigint[],
    p_sent boolean[], p_event_ids text[], p_events text[], p_visitors bigint[],
    p_attempts integer[], p_statuses integer[], p_errors text[]
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_attempts (webhook_id, event_id, event, visitor_id, attempt, status, error)
    SELECT e.webhook_id, e.event_id, e.event, e.visitor_id, e.attempt, e.status, e.error
    FROM unnest(p_webhooks, p_sent, p_event_ids, p_events, p_visitors, p_attempts, p_statuses,
                p_errors)
         WITH ORDINALITY AS e (webhook_id, sent, event_id, event, visitor_id, attempt, status,
                               error, n)
    WHERE e.sent
    ORDER BY e.n;
    DELETE FROM webhook_attempts
    WHERE id IN (
        SELECT a.id
        FROM (SELECT DISTINCT s.webhook_id FROM unnest(p_webhooks, p_sent) AS s (webhook_id, sent)
              WHERE s.sent) AS logged
        CROSS JOIN LATERAL (
            SELECT id FROM webhook_attempts WHERE webhook_id = logged.webhook_id
            ORDER BY id DESC OFFSET 100 LIMIT 1) AS cut
        JOIN webhook_attempts AS a ON a.webhook_id = logged.webhook_id AND a.id <= cut.id
        FOR UPDATE OF a SKIP LOCKED);
    UPDATE webhook_deliveries AS d
    SET due = now() + e.retry_ms * interval '1 millisecond', leased_until = NULL
    FROM unnest(p_deliveries, p_outcomes, p_retry_ms) AS e (id, outcome, retry_ms)
    WHERE d.id = e.id AND e.outcome = 'retry';
    DELETE FROM webhook_deliveries
    WHERE id IN (SELECT e.id FROM unnest(p_deliveries, p_outcomes) AS e (id, outcome)
                 WHERE e.outcome = 'done');
    UPDATE webhooks SET enabled = false
    WHERE id IN (SELECT e.webhook_id FROM unnest(p_webhooks, p_outcomes) AS e (webhook_id, outcome)
                 WHERE e.outcome = 'disable');
    DELETE FROM webhook_deliveries
    WHERE webhook_id IN (SELECT e.webhook_id
                         FROM unnest(p_webhooks, p_outcomes) AS e (webhook_id, outcome)
                         WHERE e.outcome = 'disable');
END
$$;
