-- Concurrent ends of attempts to one webhook each pruned its attempts log to the latest 100,
-- deleting overlapping rows in their own orders: they could deadlock. The pruning now takes
-- only rows no other call holds (SKIP LOCKED); a row left now goes with a later call.
CREATE OR REPLACE FUNCTION finish_webhook_delivery(
    p_delivery bigint, p_webhook bigint, p_outcome text, p_retry_ms bigint, p_sent boolean,
    p_event_id text, p_event text, p_visitor bigint, p_attempt integer, p_status integer,
    p_error text
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_sent THEN
        INSERT INTO webhook_attempts (webhook_id, event_id, event, visitor_id, attempt, status,
                                      error)
        VALUES (p_webhook, p_event_id, p_event, p_visitor, p_attempt, p_status, p_error);
        DELETE FROM webhook_attempts
        WHERE id IN (
            SELECT id FROM webhook_attempts
            WHERE webhook_id = p_webhook AND id <= (
                SELECT id FROM webhook_attempts WHERE webhook_id = p_webhook
                ORDER BY id DESC OFFSET 100 LIMIT 1)
            FOR UPDATE SKIP LOCKED);
    END IF;
    IF p_outcome = 'retry' THEN
        UPDATE webhook_deliveries
        SET due = now() + p_retry_ms * interval '1 millisecond', leased_until = NULL
        WHERE id = p_delivery;
    ELSIF p_outcome = 'disable' THEN
        UPDATE webhooks SET enabled = false WHERE id = p_webhook;
        DELETE FROM webhook_deliveries WHERE webhook_id = p_webhook;
    ELSE
        DELETE FROM webhook_deliveries WHERE id = p_delivery;
    END IF;
END
$$;
