"""The other half of `schemathesis.toml`: the statuses it accepts (400 on List and the change
feed, 412 on Update,
Delete and Create or Update, 422 on Create and Create or Update, for schema-valid requests; 412
on Update, Delete and Create or Update for schema-violating ones too) are accepted only as the
refusal of the input no schema can validate. Any such answer for another reason fails the
run."""

import json

import schemathesis

CURSORS = {"page[after]", "page[before]"}
FEED_START = {"start_time", "cursor"}

# Import Visitors takes `application/x-ndjson`, a text body schemathesis has no serializer for
# (it would report every case of the operation as not serialisable): it goes on the wire as
# schemathesis sends text/plain, the generated string as it is.
schemathesis.serializer.alias("application/x-ndjson", "text/plain")


def _body(response):
    try:
        return json.loads(response.content or b"null") or {}
    except ValueError:
        return {}


def _header(case, name):
    return next((v for k, v in (case.headers or {}).items() if k.lower() == name.lower()), None)


def _schema_valid(case):
    """True for a request generated to fit the schema (examples, positive mode, stateful)."""
    meta = getattr(case, "meta", None)
    mode = getattr(getattr(meta, "generation", None), "mode", None)
    return mode is None or getattr(mode, "value", mode) == "positive"


@schemathesis.check
def refusals_accepted_by_config_are_the_documented_ones(ctx, response, case):
    """A 400 to a schema-valid List names only cursors, one to the change feed only its start
    (a made-up cursor, or both or neither of start_time and cursor); a 412 on Update or Delete is
    PreconditionFailed and comes with `If-Match`; a 422 to a schema-valid Create is
    IdempotencyKeyMismatch and comes with `Idempotency-Key`."""
    operation = (case.operation.definition.raw.get("operationId") or "").removesuffix("Legacy")
    status = response.status_code
    body = _body(response)
    if operation == "listVisitors" and status == 400 and _schema_valid(case):
        named = set(body.get("details") or {})  # `details` maps each parameter to its problems
        sent = {key for key in (case.query or {}) if key in CURSORS}
        if body.get("error") != "BadRequest" or not named or not named <= sent:
            raise AssertionError(f"400 on List for something other than a cursor: {body}")
    elif operation == "listVisitorChanges" and status == 400 and _schema_valid(case):
        named = set(body.get("details") or {})
        sent = {key for key in (case.query or {}) if key in FEED_START}
        # A made-up cursor is refused by name; so is sending both, or neither.
        allowed = {"cursor"} if sent == {"cursor"} else FEED_START if sent != {"start_time"} else set()
        if body.get("error") != "BadRequest" or not named or not named <= allowed:
            raise AssertionError(f"400 on the change feed for something other than its start: {body}")
    elif operation in ("updateVisitor", "deleteVisitor", "createOrUpdateVisitor") and status == 412:
        if body.get("error") != "PreconditionFailed" or _header(case, "If-Match") is None:
            raise AssertionError(f"412 without If-Match, or not PreconditionFailed: {body}")
    elif operation == "createVisitor" and status == 422 and _schema_valid(case):
        if body.get("error") != "IdempotencyKeyMismatch" or _header(case, "Idempotency-Key") is None:
            raise AssertionError(f"422 on Create other than a reused Idempotency-Key: {body}")
    elif operation == "createOrUpdateVisitor" and status == 422 and _schema_valid(case):
        details = body.get("details") or {}
        problems = [problem.get("error") for problem in details.get("notes") or []]
        sent = isinstance(case.body, dict) and "notes" in case.body
        if body.get("error") != "RecordInvalid" or set(details) != {"notes"} \
                or problems != ["ReadOnly"] or not sent:
            raise AssertionError(f"422 on Create or Update other than stored notes: {body}")
