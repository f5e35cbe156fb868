-- An idempotent create in one call: one round trip and one commit, where claiming the key,
-- creating the visitor and recording the answer took five round trips and two commits. No other
-- request ever sees the claim: it is written with its answer, in the same transaction.

-- Keys are compared for equality only: byte order is exact and the cheapest to keep an index in.
ALTER TABLE idempotency_keys
    ALTER COLUMN owner TYPE text COLLATE "C",
    ALTER COLUMN key TYPE text COLLATE "C";

-- A visitor as the API writes it (the eight keys; `created` as RFC 3339 in UTC), for the
-- recorded answer of an idempotent create. Postgres counts 1 BC as year -1; RFC 3339 as 0000.
CREATE FUNCTION visitor_answer(v visitors) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT json_build_object(
        'banned', v.banned,
        'created',
            lpad((extract(year FROM t)::int + (extract(year FROM t) < 0)::int)::text, 4, '0')
            || to_char(t, '-MM-DD"T"HH24:MI:SS.US"Z"'),
        'email', v.email,
        'external_id', v.external_id,
        'id', v.id,
        'name', v.name,
        'notes', v.notes,
        'phone', v.phone
    )::text
    FROM (SELECT v.created AT TIME ZONE 'UTC' AS t) AS utc
$$;

-- Creates the visitor under (p_owner, p_key) and records it, or reports the live record that
-- holds the key. One row: `claimed` true with the new visitor's answer; or false with the live
-- record's fingerprint, answer and version (answer and version null while its request runs).
-- A concurrent call that recorded the key first makes this one fail with SQLSTATE VK001
-- (nothing of it is kept): the key is in use.
CREATE FUNCTION create_visitor_idempotent(
    p_owner text, p_key text, p_fingerprint bytea,
    p_ttl_secs double precision, p_stale_secs double precision,
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
    -- A live record: not expired, and either answered or claimed less than p_stale_secs ago.
    SELECT * INTO live FROM idempotency_keys AS k
    WHERE k.owner = p_owner AND k.key = p_key
      AND k.expires_at > now()
      AND (k.visitor_id IS NOT NULL
           OR k.claimed_at > now() - make_interval(secs => p_stale_secs));
    IF FOUND THEN
        RETURN QUERY SELECT false, live.fingerprint, live.answer, live.version;
        RETURN;
    END IF;
    INSERT INTO visitors (name, email, phone, notes, external_id, banned, created)
    VALUES (p_name, p_email, p_phone, p_notes, p_external_id, p_banned, p_created)
    RETURNING * INTO v;
    v_answer := visitor_answer(v);
    -- A dead record (expired, or a claim gone stale) is taken over; a live one, written by a
    -- concurrent call since the look above, wins.
    INSERT INTO idempotency_keys AS k
        (owner, key, fingerprint, claim, claimed_at, expires_at, visitor_id, answer, version)
    VALUES (p_owner, p_key, p_fingerprint, nextval('idempotency_claims'), now(),
            now() + make_interval(secs => p_ttl_secs), v.id, v_answer, v.version)
    ON CONFLICT (owner, key) DO UPDATE SET
        fingerprint = EXCLUDED.fingerprint, claim = EXCLUDED.claim,
        claimed_at = EXCLUDED.claimed_at, expires_at = EXCLUDED.expires_at,
        visitor_id = EXCLUDED.visitor_id, answer = EXCLUDED.answer, version = EXCLUDED.version
    WHERE k.expires_at <= now()
       OR (k.visitor_id IS NULL AND k.claimed_at <= now() - make_interval(secs => p_stale_secs));
    IF NOT FOUND THEN
        RAISE EXCEPTION 'idempotency key % is in use', p_key USING ERRCODE = 'VK001';
    END IF;
    RETURN QUERY SELECT true, p_fingerprint, v_answer, v.version;
END
$$;
