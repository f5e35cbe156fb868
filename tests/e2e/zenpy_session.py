"""A real Zendesk client against the service: zenpy's Chat API (`zp.chats.visitors`), on the
in-memory store and on PostgreSQL."""

import os

from harness import ADMIN_TOKEN, Service, check, log, temp_database

from zenpy import Zenpy
from zenpy.lib.api_objects.chat_objects import Visitor
from zenpy.lib.exception import APIException, RecordNotFoundException


def session(service):
    os.environ["ZENPY_FORCE_SCHEME"] = "http"
    os.environ["ZENPY_FORCE_NETLOC"] = f"127.0.0.1:{service.port}"
    zp = Zenpy(subdomain="test", oauth_token=ADMIN_TOKEN)
    calls = 0

    created = zp.chats.visitors.create(
        Visitor(name="Visitor 1", email="visitor1@example.com",
                notes="This visitor is really cool.", phone="+65 12345678"))
    calls += 1
    check(isinstance(created, Visitor), f"create returned {created!r}")
    check(created.id and created.id > 0, f"create gave no id: {created.to_dict()}")
    check(created.name == "Visitor 1" and created.email == "visitor1@example.com",
          f"create: {created.to_dict()}")

    shown = zp.chats.visitors(id=created.id)
    calls += 1
    check(shown.to_dict() == created.to_dict(), f"show: {shown.to_dict()} != {created.to_dict()}")

    shown.name = "John"
    updated = zp.chats.visitors.update(shown)
    calls += 1
    check(updated.name == "John", f"update: {updated.to_dict()}")
    again = zp.chats.visitors(id=created.id)
    calls += 1
    for key in ("email", "phone", "notes"):
        check(getattr(again, key) == getattr(created, key), f"update lost {key}: {again.to_dict()}")
    check(again.name == "John", "the update did not persist")

    try:
        zp.chats.visitors(id=987654321)
        fail_missing = True
    except RecordNotFoundException:
        fail_missing = False
    calls += 1
    check(not fail_missing, "a missing id did not raise RecordNotFoundException")

    bad = Zenpy(subdomain="test", oauth_token="not-a-token")
    try:
        bad.chats.visitors(id=created.id)
        status = None
    except APIException as error:
        status = error.response.status_code
    calls += 1
    check(status == 401, f"a bad token gave {status}, not 401")
    return calls


def main():
    with Service(name="memory") as service:
        calls = session(service)
        log(f"zenpy on memory: {calls} calls, all as expected")
    with temp_database() as url, Service(database_url=url, name="postgres") as service:
        calls = session(service)
        log(f"zenpy on postgres: {calls} calls, all as expected")
    log("zenpy: passed")


if __name__ == "__main__":
    main()
