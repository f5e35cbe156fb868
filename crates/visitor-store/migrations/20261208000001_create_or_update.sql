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

-- Applies the lines of a bulk import in order, in one call: line i is a create when
-- p_external_id[i] is null (p_set_* then only say which keys were sent), else
-- create_or_update_visitor's call. One row per line, in order, with the line's index (1-based
-- within the arrays). A line's refusal changes nothing and the others go on; an error of the
-- database fails the call, and so the transaction, whole.
CREATE FUNCTION import_visitors(
    p_external_id text[],
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
BEGIN
    FOR i IN 1 .. COALESCE(array_length(p_external_id, 1), 0) LOOP
        IF p_external_id[i] IS NULL THEN
            INSERT INTO visitors AS t (name, email, phone, notes, external_id, banned, created)
            VALUES (p_name[i], p_email[i], p_phone[i], p_notes[i], NULL,
                    COALESCE(p_banned[i], false), COALESCE(p_created[i], p_new_created))
            RETURNING t.* INTO v;
            RETURN QUERY SELECT i, 'created'::text, v.id, v.name, v.email, v.phone, v.notes,
                                v.external_id, v.banned, v.created, v.version;
        ELSE
            RETURN QUERY SELECT i, u.* FROM create_or_update_visitor(
                p_external_id[i], false, NULL, NULL, p_set_name[i], p_name[i], p_set_email[i], p_email[i],
                p_set_phone[i], p_phone[i], p_notes_sent[i], p_notes[i], p_banned[i],
                p_created[i], p_new_created) AS u;
        END IF;
    END LOOP;
END
$$;
