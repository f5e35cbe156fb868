-- v3 (§10.2): webhooks and their deliveries, owned by the database. A delivery is a row written
-- by the change log's triggers in the transaction of the change, for every enabled webhook that
-- takes its event; any instance may send it, claiming it for a lease (FOR UPDATE SKIP LOCKED),
-- so a killed sender loses nothing: its lease runs out and another claims the delivery again.
-- Neither table holds data of a visitor beyond its id.
CREATE TABLE webhooks (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url         text        NOT NULL,
    events      text[]      NOT NULL CHECK (cardinality(events) > 0),
    description text        CHECK (char_length(description) <= 255),
    secret      text        NOT NULL,
    created     timestamptz NOT NULL DEFAULT now(),
    enabled     boolean     NOT NULL DEFAULT true
);

CREATE TABLE webhook_deliveries (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id   bigint      NOT NULL REFERENCES webhooks ON DELETE CASCADE,
    event        text        NOT NULL,
    visitor_id   bigint      NOT NULL,
    changed_at   timestamptz NOT NULL,
    attempts     integer     NOT NULL DEFAULT 0,
    due          timestamptz NOT NULL,
    leased_until timestamptz
);
-- A visitor's deliveries to a webhook, oldest first: only the oldest is ever claimed.
CREATE INDEX webhook_deliveries_in_order ON webhook_deliveries (webhook_id, visitor_id, id);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (due, id);

CREATE TABLE webhook_attempts (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id bigint      NOT NULL REFERENCES webhooks ON DELETE CASCADE,
    event_id   text        NOT NULL,
    event      text        NOT NULL,
    visitor_id bigint      NOT NULL,
    attempt    integer     NOT NULL,
    status     integer,
    error      text,
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_attempts_latest ON webhook_attempts (webhook_id, id DESC);

-- The change log's trigger function, now also writing the deliveries of each change.
CREATE OR REPLACE FUNCTION record_visitor_changes() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed bigint[];
    erased boolean := TG_OP = 'DELETE';
    event text := CASE TG_OP WHEN 'INSERT' THEN 'visitor.created'
                             WHEN 'UPDATE' THEN 'visitor.updated'
                             ELSE 'visitor.deleted' END;
BEGIN
    IF TG_OP = 'INSERT' THEN
        changed := ARRAY(SELECT id FROM new_rows ORDER BY id);
    ELSIF TG_OP = 'UPDATE' THEN
        -- Only the rows that changed: an update that changes nothing is no change.
        changed := ARRAY(SELECT n.id FROM new_rows AS n JOIN old_rows AS o ON o.id = n.id
                         WHERE n IS DISTINCT FROM o ORDER BY n.id);
    ELSE
        changed := ARRAY(SELECT id FROM old_rows ORDER BY id);
    END IF;
    IF cardinality(changed) = 0 THEN
        RETURN NULL;
    END IF;
    INSERT INTO visitor_changes AS c (visitor_id, erased, changed_at, transaction, sequence)
    SELECT v.id, erased, now(), pg_current_xact_id(), nextval('visitor_change_sequence')
    FROM unnest(changed) WITH ORDINALITY AS v (id, n)
    ORDER BY v.n
    ON CONFLICT (visitor_id) DO UPDATE
        SET erased = EXCLUDED.erased, changed_at = EXCLUDED.changed_at,
            transaction = EXCLUDED.transaction, sequence = EXCLUDED.sequence;
    IF EXISTS (SELECT 1 FROM webhooks WHERE enabled AND event = ANY (events)) THEN
        INSERT INTO webhook_deliveries (webhook_id, event, visitor_id, changed_at, due)
        SELECT w.id, event, v.id, now(), now()
        FROM unnest(changed) AS v (id)
        CROSS JOIN webhooks AS w
        WHERE w.enabled AND event = ANY (w.events)
        ORDER BY v.id, w.id;
    END IF;
    RETURN NULL;
END
$$;

-- Ends an attempt of a claimed delivery in one round trip: logs it (when it was sent; the
-- latest 100 per webhook are kept) and applies the outcome: 'done' (delivered, dropped or given
-- up), 'retry' (due again after p_retry_ms), 'disable' (410: the webhook is disabled and its
-- pending deliveries dropped).
CREATE FUNCTION finish_webhook_delivery(
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
        WHERE webhook_id = p_webhook AND id <= (
            SELECT id FROM webhook_attempts WHERE webhook_id = p_webhook
            ORDER BY id DESC OFFSET 100 LIMIT 1);
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
