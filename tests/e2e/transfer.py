"""Contract §9 from outside, on the shared PostgreSQL:

1. Round trip at scale: E2E_TRANSFER_VISITORS (1,000,000) visitors with awkward values, seeded
   by SQL → `visitor-http export` → `visitor-http import` into an empty database, killed with
   SIGKILL part-way and run again → `visitor-http export`: the same bytes (SHA-256 printed), the
   re-run's summary counting the first part skipped and the rest created.
2. The §9.1 race across two instances on one database: 20 create_or_update at once with one new
   external_id, spread over both, 5 rounds: one 201 and 19 200 each round, never 409 or 5xx.
3. A bulk import over HTTP of 10,000 lines with a broken line every 100 (bad JSON, a key named
   twice, a bad e-mail address, a used external_id with other notes): every result line right,
   every good line stored.
"""

import concurrent.futures
import hashlib
import http.client
import json
import os
import subprocess
import tempfile
import time

from harness import (ADMIN_TOKEN, BINARY, UNLIMITED, Client, Service, check, fail, log, psql,
                     temp_database)

VISITORS = int(os.environ.get("E2E_TRANSFER_VISITORS", "1000000"))

# Every kind of value a row can hold: escapes COPY must carry (tab, newline, backslash, `\N`),
# characters outside ASCII, absent values, fractional and whole `created`, gaps in the ids.
SEED = """
INSERT INTO visitors (name, email, phone, notes, external_id, banned, created)
SELECT CASE n % 7 WHEN 0 THEN NULL
                  WHEN 1 THEN 'Zoë “' || n || '” 名前 🎉'
                  WHEN 2 THEN E'tab\\there ' || n
                  ELSE 'Visitor ' || n END,
       CASE WHEN n % 5 = 0 THEN NULL ELSE 'visitor' || n || '@example.com' END,
       CASE WHEN n % 3 = 0 THEN NULL ELSE '+65 ' || (10000000 + n) END,
       CASE n % 11 WHEN 0 THEN NULL WHEN 1 THEN '' WHEN 2 THEN E'line\\nbreak \\\\ back\\\\N'
                   ELSE 'This visitor is really cool.' END,
       CASE WHEN n % 2 = 0 THEN 'ext-' || n END,
       n % 13 = 0,
       timestamptz '2014-09-01 10:29:59+00' + make_interval(secs => n * 1.25)
FROM generate_series(1, {count} + {count} / 1000) AS n;
DELETE FROM visitors WHERE id IN (SELECT id FROM visitors WHERE id % 1000 = 17
                                  ORDER BY id LIMIT {count} / 1000);
"""


def command(args, url, stdin=None):
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["DATABASE_URL"] = url
    return subprocess.Popen([str(BINARY), *args], env=env, stdin=stdin,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run(args, url):
    started = time.monotonic()
    process = command(args, url)
    out, err = process.communicate()
    return process.returncode, out, err, time.monotonic() - started


def digest(path):
    sha = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def count(url):
    result = subprocess.run(["psql", url, "-tAc", "SELECT count(*) FROM visitors"],
                            capture_output=True, text=True)
    return int(result.stdout.strip() or 0) if result.returncode == 0 else 0


def round_trip(workdir):
    with temp_database() as source, temp_database() as target:
        code, _, err, _ = run(["export", "--output", os.devnull], source)  # migrates
        check(code == 0, f"export of an empty database failed: {err}")
        psql(SEED.format(count=VISITORS), source)
        stored = count(source)
        check(stored == VISITORS, f"seeded {stored} visitors, not {VISITORS}")
        first = os.path.join(workdir, "first.ndjson")
        code, _, err, seconds = run(["export", "--output", first], source)
        check(code == 0, f"export failed: {err}")
        check(f"exported {stored} visitors" in err, f"export said: {err}")
        log(f"exported {stored} visitors in {seconds:.1f} s: sha256 {digest(first)}")

        # The import, killed once it has stored a part, then run again to its end.
        code, _, err, _ = run(["export", "--output", os.devnull], target)  # migrates
        killed = command(["import", first], target)
        deadline = time.monotonic() + 600
        while count(target) < stored // 3:
            if killed.poll() is not None or time.monotonic() > deadline:
                fail(f"the import ended before it was killed: {killed.communicate()[1]}")
            time.sleep(0.2)
        killed.kill()
        killed.wait()
        kept = count(target)
        log(f"import killed with SIGKILL with {kept} of {stored} visitors stored")
        check(0 < kept < stored, "the kill came too late to prove anything")
        code, _, err, seconds = run(["import", first], target)
        summary = err.strip().splitlines()[-1] if err.strip() else ""
        log(f"import run again in {seconds:.1f} s: {summary}")
        check(code == 0, f"the second import failed ({code}): {err[-2000:]}")
        check(summary == f"created {stored - kept}, skipped {kept}, failed 0",
              f"the second import's summary: {summary}")

        second = os.path.join(workdir, "second.ndjson")
        code, _, err, _ = run(["export", "--output", second], target)
        check(code == 0, f"the second export failed: {err}")
        log(f"export after import: sha256 {digest(second)}")
        check(digest(first) == digest(second), "export, import, export: the bytes differ")
        # Ids given afterwards continue above every imported id.
        result = subprocess.run(
            ["psql", target, "-tAc",
             "INSERT INTO visitors (created) VALUES (now()) RETURNING id, "
             "(SELECT max(id) FROM visitors WHERE id <> currval('visitors_id_seq'))"],
            capture_output=True, text=True)
        new_id, highest = (int(v) for v in result.stdout.split()[0].split("|"))
        check(new_id > highest, f"a new visitor got id {new_id}, not above {highest}")
        log(f"round trip: identical bytes; the next id given is {new_id} (highest imported {highest})")


def upsert_race(ports):
    def upsert(port, external_id, n):
        return Client(port).request("POST", "/api/v2/chat/visitors/create_or_update",
                                    body={"external_id": external_id, "name": f"Caller {n}"})

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        for round_number in range(5):
            external_id = f"race-{round_number}-{time.monotonic_ns()}"
            answers = list(pool.map(lambda n: upsert(ports[n % 2], external_id, n), range(20)))
            statuses = sorted(status for status, _, _ in answers)
            check(statuses == [200] * 19 + [201], f"round {round_number}: {statuses}")
            ids = {body["id"] for _, _, body in answers}
            check(len(ids) == 1, f"round {round_number}: ids {ids}")
    log("create_or_update race on two instances: 5 rounds of 20, each one 201 and 19 200")


def bulk_import_lines(port, body):
    """POSTs an NDJSON body to Import Visitors: the status, content type and answer lines."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("POST", "/api/v2/chat/visitors/import", body=body,
                 headers={"Authorization": f"Bearer {ADMIN_TOKEN}",
                          "Content-Type": "application/x-ndjson"})
    response = conn.getresponse()
    text = response.read().decode()
    conn.close()
    lines = [json.loads(line) for line in text.splitlines()]
    return response.status, response.getheader("Content-Type"), lines


def main():
    with tempfile.TemporaryDirectory(prefix="visitors-transfer-") as workdir:
        round_trip(workdir)
    with temp_database() as url:
        with Service(url, UNLIMITED, name="first") as first, \
                Service(url, UNLIMITED, name="second") as second:
            upsert_race([first.port, second.port])
            bulk(first.port)
    log("transfer: all checks passed")


def bulk(port):
    status, _, _ = Client(port).request("POST", "/api/v2/chat/visitors",
                                        body={"external_id": "used", "notes": "original"})
    check(status == 201, f"seeding the used external_id: {status}")
    lines, expected = [], []
    for n in range(1, 10_001):
        kind = (n // 100) % 4 if n % 100 == 0 else None
        if kind == 0:
            lines.append('{"name": "broken"')
            expected.append(("failed", "BadRequest"))
        elif kind == 1:
            lines.append(f'{{"external_id": "b{n}", "name": "a", "name": "b"}}')
            expected.append(("failed", "BadRequest"))
        elif kind == 2:
            lines.append(json.dumps({"external_id": f"b{n}", "email": "not an address"}))
            expected.append(("failed", "RecordInvalid"))
        elif kind == 3:
            lines.append(json.dumps({"external_id": "used", "notes": "another"}))
            expected.append(("failed", "RecordInvalid"))
        else:
            lines.append(json.dumps({"external_id": f"b{n}", "name": f"Bulk {n}"}))
            expected.append(("created", None))
    started = time.monotonic()
    status, content_type, answer = bulk_import_lines(port, "\n".join(lines).encode())
    seconds = time.monotonic() - started
    check(status == 200 and content_type == "application/x-ndjson",
          f"import answered {status} {content_type}")
    check(len(answer) == 10_001, f"{len(answer)} answer lines for 10,000")
    for n, (line, (status, code)) in enumerate(zip(answer, expected), start=1):
        check(line["line"] == n and line["status"] == status, f"line {n}: {line}")
        check((line["error"] or {}).get("error") == code, f"line {n}: {line}")
        check((line["id"] is None) == (status == "failed"), f"line {n}: {line}")
    check(answer[-1] == {"summary": {"created": 9900, "updated": 0, "unchanged": 0, "failed": 100}},
          f"summary: {answer[-1]}")
    client = Client(port)
    for n in range(1, 10_001):
        if n % 100:
            status, _, body = client.request(
                "GET", f"/api/v2/chat/visitors?external_id=b{n}")
            check(status == 200 and [v["name"] for v in body["visitors"]] == [f"Bulk {n}"],
                  f"visitor b{n}: {status} {body}")
    log(f"bulk import of 10,000 lines over HTTP in {seconds:.2f} s: every result line right, "
        "the 9,900 good lines stored, the 100 broken ones failed alone")


if __name__ == "__main__":
    main()
