-- Create-or-update by external_id (contract §9.1) and bulk import (§9.2), each in one call.
--
-- create_or_update_visitor creates the visitor with p_external_id, or changes the one that has
-- it, in one call and without a window: it locks the holder (FOR UPDATE) and changes it; when
-- there is none it inserts with ON CONFLICT DO NOTHING, so of many concurrent calls with one new
-- external_id exactly one inserts, and the others, having waited for that insert to commit, find
-- nothing inserted, look again and update the new visitor. No call fails for the race, and no
-- id is drawn from the sequence by a call that updates.
--
-- The outcome column says what happened: 'created', 'updated', 'unchanged' (every value sent
-- was the stored one: the version stays), 'precondition_failed' (p_versions given and no
-- visitor, or another version: nothing changes), 'read_only' (notes sent and differing: nothing
-- changes). The visitor's columns follow (null when there is none). p_if_match says the request
-- carried If-Match: then nothing is created, and the visitor is changed only when
-- (id, version) is one of the pairs (p_ids[i], p_versions[i]), or whatever it is when p_ids is
-- null (If-Match: *).
CREATE FUNCTION create_or_update_visitor(
    p_external_id text, p_if_match boolean, p_ids bigint[], p_versions bigint[],
    p_set_name boolean, p_name text, p_set_email boolean, p_email text,
    p_set_phone boolean, p_phone text, p_notes_sent boolean, p_notes text,
    p_banned boolean, p_created timestamptz, p_new_created timestamptz)
RETURNS TABLE (outcome text, id bigint, name text, email text, phone text, notes text,
               external_id text, banned boolean, created timestamptz, version bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v visitors%ROWTYPE;
    v_outcome text;
BEGIN
    LOOP
        SELECT * INTO v FROM visitors AS t WHERE t.external_id = p_external_id FOR UPDATE;
        IF FOUND THEN
            IF p_if_match AND p_ids IS NOT NULL AND (v.id, v.version) NOT IN (
                   SELECT tag.id, tag.version
                   FROM unnest(p_ids, p_versions) AS tag (id, version)) THEN
                v_outcome := 'precondition_failed';
            ELSIF p_notes_sent AND v.notes IS DISTINCT FROM p_notes THEN
                v_outcome := 'read_only';
            ELSIF (CASE WHEN p_set_name THEN p_name ELSE v.name END,
                   CASE WHEN p_set_email THEN p_email ELSE v.email END,
                   CASE WHEN p_set_phone THEN p_phone ELSE v.phone END,
                   COALESCE(p_banned, v.banned),
                   COALESCE(p_created, v.created))
                  IS DISTINCT FROM (v.name, v.email, v.phone, v.banned, v.created) THEN
                UPDATE visitors AS t SET
                    name = CASE WHEN p_set_name THEN p_name ELSE t.name END,
                    email = CASE WHEN p_set_email THEN p_email ELSE t.email END,
                    phone = CASE WHEN p_set_phone THEN p_phone ELSE t.phone END,
                    banned = COALESCE(p_banned, t.banned),
                    created = COALESCE(p_created, t.created),
                    version = t.version + 1
                WHERE t.id = v.id
                RETURNING t.* INTO v;
                v_outcome := 'updated';
            ELSE
                v_outcome := 'unchanged';
            END IF;
            RETURN QUERY SELECT v_outcome, v.id, v.name, v.email, v.phone, v.notes,
                                v.external_id, v.banned, v.created, v.version;
            RETURN;
        END IF;
        IF p_if_match THEN
            -- RFC 9110 §13.1.1: If-Match never matches a visitor that does not exist.
            RETURN QUERY SELECT 'precondition_failed'::text, NULL::bigint, NULL::text,
                                NULL::text, NULL::text, NULL::text, NULL::text, NULL::boolean,
                                NULL::timestamptz, NULL::bigint;
            RETURN;
        END IF;
        INSERT INTO visitors AS t (name, email, phone, notes, external_id, banned, created)
        VALUES (CASE WHEN p_set_name THEN p_name END, CASE WHEN p_set_email THEN p_email END,
                CASE WHEN p_set_phone THEN p_phone END, p_notes, p_external_id,
                COALESCE(p_banned, false), COALESCE(p_created, p_new_created))
        ON CONFLICT (external_id) DO NOTHING
        RETURNING t.* INTO v;
        IF FOUND THEN
            RETURN QUERY SELECT 'created'::text, v.id, v.name, v.email, v.phone, v.notes,
                                v.external_id, v.banned, v.created, v.version;
            RETURN;
        END IF;
        -- A concurrent call inserted it after the look above, and has committed: look again.
    END LOOP;
END
$$;

-- Applies the lines of a bulk import in one call: line i is a create when p_external_id[i] is
-- null (p_set_* then only say which keys were sent), else create_or_update_visitor's call. One
-- row per line, with the line's index (1-based within the arrays), in no particular order. A
-- line's refusal changes nothing and the others go on; an error of the database fails the
-- call, and so the transaction, whole.
--
-- Lines that name no external_id twice are independent of each other, so the new visitors among
-- them are inserted by one plain INSERT (ids drawn for them first, in line order; rows inserted
-- in external_id order, so two concurrent imports meet their keys in one order), and only the
-- lines whose external_id a visitor holds already go through create_or_update_visitor one by
-- one. When a concurrent call takes one of the new external_ids first, the insert fails
-- (unique_violation, or a deadlock) and the whole call with it; the caller then calls again with
-- p_one_by_one, and every line goes one by one, which meets the race as
-- create_or_update_visitor does. When the batch names an external_id twice, its lines depend on
-- each other: all go one by one, in order.
CREATE FUNCTION import_visitors(
    p_one_by_one boolean, p_external_id text[],
    p_set_name boolean[], p_name text[], p_set_email boolean[], p_email text[],
    p_set_phone boolean[], p_phone text[], p_notes_sent boolean[], p_notes text[],
    p_banned boolean[], p_created timestamptz[], p_new_created timestamptz)
RETURNS TABLE (line integer, outcome text, id bigint, name text, email text, phone text,
               notes text, external_id text, banned boolean, created timestamptz,
               version bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v visitors%ROWTYPE;
    i integer;
    lines integer := COALESCE(array_length(p_external_id, 1), 0);
    one_by_one integer[];
BEGIN
    IF p_one_by_one OR (SELECT count(DISTINCT e COLLATE "C") <> count(e) FROM unnest(p_external_id) AS e)
    THEN
        one_by_one := ARRAY(SELECT generate_series(1, lines));
    ELSE
        RETURN QUERY
        WITH fresh AS MATERIALIZED (
            SELECT nextval(pg_get_serial_sequence('visitors', 'id')) AS id, u.*
            FROM (SELECT *
                  FROM unnest(p_external_id, p_set_name, p_name, p_set_email, p_email,
                              p_set_phone, p_phone, p_notes, p_banned, p_created)
                       WITH ORDINALITY
                       AS u (external_id, set_name, name, set_email, email, set_phone,
                             phone, notes, banned, created, line)
                  WHERE u.external_id IS NULL OR NOT EXISTS (
                      SELECT 1 FROM visitors AS t WHERE t.external_id = u.external_id)
                  ORDER BY u.line) AS u
        ), stored AS (
            SELECT f.line, f.id, CASE WHEN f.set_name THEN f.name END AS name,
                   CASE WHEN f.set_email THEN f.email END AS email,
                   CASE WHEN f.set_phone THEN f.phone END AS phone, f.notes, f.external_id,
                   COALESCE(f.banned, false) AS banned,
                   COALESCE(f.created, p_new_created) AS created
            FROM fresh AS f
        ), inserted AS (
            INSERT INTO visitors (id, name, email, phone, notes, external_id, banned,
                                  created)
            OVERRIDING SYSTEM VALUE
            SELECT s.id, s.name, s.email, s.phone, s.notes, s.external_id, s.banned,
                   s.created
            FROM stored AS s ORDER BY s.external_id COLLATE "C"
        )
        SELECT s.line::integer, 'created'::text, s.id, s.name, s.email, s.phone, s.notes,
               s.external_id, s.banned, s.created, 1::bigint
        FROM stored AS s;
        -- The rest: the lines with an external_id this transaction did not just write (a
        -- visitor held it, or held it and has been erased since), in external_id order.
        one_by_one := ARRAY(
            SELECT u.line::integer
            FROM unnest(p_external_id) WITH ORDINALITY AS u (external_id, line)
            WHERE u.external_id IS NOT NULL AND NOT EXISTS (
                SELECT 1 FROM visitors AS t
                WHERE t.external_id = u.external_id AND t.xmin = pg_current_xact_id()::xid)
            ORDER BY u.external_id COLLATE "C");
    END IF;
    FOREACH i IN ARRAY one_by_one LOOP
        IF p_external_id[i] IS NULL THEN
            INSERT INTO visitors AS t (name, email, phone, notes, external_id, banned, created)
            VALUES (p_name[i], p_email[i], p_phone[i], p_notes[i], NULL,
                    COALESCE(p_banned[i], false), COALESCE(p_created[i], p_new_created))
            RETURNING t.* INTO v;
            RETURN QUERY SELECT i, 'created'::text, v.id, v.name, v.email, v.phone, v.notes,
                                v.external_id, v.banned, v.created, v.version;
        ELSE
            RETURN QUERY SELECT i, u.* FROM create_or_update_visitor(
                p_external_id[i], false, NULL, NULL, p_set_name[i], p_name[i], p_set_email[i],
                p_email[i], p_set_phone[i], p_phone[i], p_notes_sent[i], p_notes[i],
                p_banned[i], p_created[i], p_new_created) AS u;
        END IF;
    END LOOP;
END
$$;
