-- Visitors of the Zendesk Chat Visitors API. The domain crate enforces every rule; the checks
-- here are a second line of defence so no other writer can store what the API would refuse.
CREATE TABLE visitors (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text        CHECK (char_length(name) BETWEEN 1 AND 255),
    email       text        CHECK (char_length(email) BETWEEN 1 AND 254),
    phone       text        CHECK (char_length(phone) BETWEEN 1 AND 32),
    notes       text        CHECK (char_length(notes) <= 10000),
    external_id text        CHECK (char_length(external_id) BETWEEN 1 AND 255),
    banned      boolean     NOT NULL DEFAULT false,
    created     timestamptz NOT NULL
);

-- Uniqueness of external_id holds across every service instance sharing the database.
CREATE UNIQUE INDEX visitors_external_id_key ON visitors (external_id);
