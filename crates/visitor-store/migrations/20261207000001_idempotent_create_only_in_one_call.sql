-- Idempotent creates are made only in one call (create_visitor_idempotent): a record is always
-- written together with its answer, so no request ever holds a key without one. The two-phase
-- protocol (claim, create, release) and its stale age are gone; a record lives until it expires.

-- Claims that never completed were left only by the two-phase protocol.
DELETE FROM idempotency_keys WHERE visitor_id IS NULL;

DROP FUNCTION create_visitor_idempotent(
    text, text, bytea, double precision, double precision,
    text, text, text, text, text, boolean, timestamptz);

-- Creates the visitor under (p_owner, p_key) and records it, or reports the live record that
-- holds the key. One row: `claimed` true with the new visitor's answer; or false with the live
-- record's fingerprint, answer and version. A concurrent call that recorded the key first makes
-- this one fail with SQLSTATE VK001 (nothing of it is kept): the key is in use.
CREATE FUNCTION create_visitor_idempotent(
    p_owner text, p_key text, p_fingerprint bytea, p_ttl_secs double precision,
    p_name text, p_email text, p_phone text, p_notes text, p_external_id text,
    p_banned boolean, p_created timestamptz)
RETURNS TABLE (claimed boolean, recorded_fingerprint bytea, recorded_answer text,
               recorded_version bigint)
LANGUAGE plpgsql AS $$
DECLARE
    live idempotency_keys%ROWTYPE;
    v visitors%ROWTYPE;
    v_answer text;
BEGIN
    SELECT * INTO live FROM idempotency_keys AS k
    WHERE k.owner = p_owner AND k.key = p_key AND k.expires_at > now();
    IF FOUND THEN
        RETURN QUERY SELECT false, live.fingerprint, live.answer, live.version;
        RETURN;
    END IF;
    INSERT INTO visitors (name, email, phone, notes, external_id, banned, created)
    VALUES (p_name, p_email, p_phone, p_notes, p_external_id, p_banned, p_created)
    RETURNING * INTO v;
    v_answer := visitor_answer(v);
    -- An expired record is taken over; a live one, written by a concurrent call since the look
    -- above, wins.
    INSERT INTO idempotency_keys AS k
        (owner, key, fingerprint, claim, claimed_at, expires_at, visitor_id, answer, version)
    VALUES (p_owner, p_key, p_fingerprint, nextval('idempotency_claims'), now(),
            now() + make_interval(secs => p_ttl_secs), v.id, v_answer, v.version)
    ON CONFLICT (owner, key) DO UPDATE SET
        fingerprint = EXCLUDED.fingerprint, claim = EXCLUDED.claim,
        claimed_at = EXCLUDED.claimed_at, expires_at = EXCLUDED.expires_at,
        visitor_id = EXCLUDED.visitor_id, answer = EXCLUDED.answer, version = EXCLUDED.version
    WHERE k.expires_at <= now();
    IF NOT FOUND THEN
        RAISE EXCEPTION 'idempotency key % is in use', p_key USING ERRCODE = 'VK001';
    END IF;
    RETURN QUERY SELECT true, p_fingerprint, v_answer, v.version;
END
$$;
