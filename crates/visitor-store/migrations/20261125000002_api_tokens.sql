-- v2: API tokens managed at run time (`visitor-http tokens create|list|revoke`). Only the
-- SHA-256 digest of a token is stored; every running instance re-reads the active ones every
-- few seconds. A revoked token keeps its row (with the time it was revoked) for the record.
CREATE TABLE api_tokens (
    id      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name    text        CHECK (char_length(name) BETWEEN 1 AND 255),
    role    text        NOT NULL CHECK (role IN ('administrator', 'agent')),
    digest  bytea       NOT NULL UNIQUE CHECK (octet_length(digest) = 32),
    created timestamptz NOT NULL DEFAULT now(),
    revoked timestamptz
);
