-- v2: a version per visitor for conditional requests (ETag / If-Match), indexes for List's
-- filters in keyset order, and the records of idempotent creates.

-- Every change bumps the version; an update that changes nothing keeps it.
ALTER TABLE visitors ADD COLUMN version bigint NOT NULL DEFAULT 1 CHECK (version >= 1);

-- List by e-mail ignoring ASCII case: translate() folds A-Z only (lower() would fold other
-- letters too), and the index keeps each address's visitors in id order for keyset pages.
CREATE INDEX visitors_email_ascii_ci_id
    ON visitors (translate(email, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz'), id);
CREATE INDEX visitors_banned_id ON visitors (banned, id);

-- One record per (token, key). A claim is held by a running request until it records its
-- answer (visitor_id and answer set) or is released; a claim left by a dead process goes stale.
-- Erasing a visitor removes the records holding its data (ON DELETE CASCADE).
CREATE SEQUENCE idempotency_claims;
CREATE TABLE idempotency_keys (
    owner       text        NOT NULL,
    key         text        NOT NULL CHECK (char_length(key) BETWEEN 1 AND 255),
    fingerprint bytea       NOT NULL,
    claim       bigint      NOT NULL,
    claimed_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    visitor_id  bigint      REFERENCES visitors (id) ON DELETE CASCADE,
    answer      text,
    version     bigint,
    PRIMARY KEY (owner, key),
    CHECK ((visitor_id IS NULL) = (answer IS NULL) AND (answer IS NULL) = (version IS NULL))
);
CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);
CREATE INDEX idempotency_keys_visitor_id ON idempotency_keys (visitor_id);
