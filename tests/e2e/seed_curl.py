"""The seed document's own curl commands, run as the seed writes them: only the host
(`https://{subdomain}.zendesk.com`), `{token}` and the visitor id placeholder are substituted.
Status and body are checked against the seed's example responses, ignoring the values of `id`
and `created`.

Two artefacts of the copied page are handled as the contract (§1) says:
- `[email protected]` (a hidden address) is not an e-mail address: the literal command is run
  and must be refused with 422 naming `email`; the replay then uses `visitor1@example.com`.
- The Create example shows `"external_id": "john_extid"` though the request sends none: the
  service answers `null`, so `external_id` is expected to be null.
The page also lost its line breaks: each `\\ ` (a line continuation followed by the next line's
indentation) is turned back into a backslash-newline before the command runs.
"""

import json
import re
import subprocess
import sys

from harness import ADMIN_TOKEN, ROOT, Service, check, log, temp_database

SEED = ROOT / "tests" / "e2e" / "seed" / "zendesk-chat-visitors-api.txt"
SHARED_SEED = ROOT.parent / "shared" / "seed" / "zendesk-chat-visitors-api.txt"
HIDDEN_EMAIL = "[email\u00a0protected]"
REAL_EMAIL = "visitor1@example.com"


def seed_samples():
    """(curl command, expected status, expected body) for Create, Show and Update, in order."""
    text = SEED.read_text()
    if SHARED_SEED.exists():
        check(SHARED_SEED.read_text() == text, f"{SEED} differs from the shared seed {SHARED_SEED}")
    lines = text.splitlines()
    samples = []
    for index, line in enumerate(lines):
        if not line.startswith("curl https://{subdomain}.zendesk.com"):
            continue
        status_index = next(i for i in range(index, len(lines)) if lines[i].startswith("// Status "))
        status = int(lines[status_index].split()[2])
        body = json.loads(lines[status_index + 1])
        samples.append((line, status, body))
    check(len(samples) == 3, f"expected three curl commands in the seed, found {len(samples)}")
    return samples


def run(command, base, visitor_id=None):
    command = command.replace("https://{subdomain}.zendesk.com", base)
    command = command.replace("{token}", ADMIN_TOKEN)
    if visitor_id is not None:
        command = command.replace("(visitor_id)", str(visitor_id)).replace("{visitor_id}", str(visitor_id))
    command = re.sub(r"\\ +", "\\\\\n  ", command)
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30)
    check(result.returncode == 0, f"curl failed ({result.returncode}): {result.stderr[-500:]}")
    status_lines = re.findall(r"^< HTTP/[\d.]+ (\d{3})", result.stderr, re.MULTILINE)
    check(status_lines, f"no status line in curl -v output: {result.stderr[-500:]}")
    return int(status_lines[-1]), json.loads(result.stdout)


def compare(label, status, body, expected_status, expected_body):
    check(status == expected_status, f"{label}: status {status}, the seed shows {expected_status}")
    expected = dict(expected_body, email=REAL_EMAIL, external_id=None)
    check(set(body) == set(expected), f"{label}: keys {sorted(body)} != {sorted(expected)}")
    for key, value in expected.items():
        if key in ("id", "created"):
            continue
        check(body[key] == value, f"{label}: {key} is {body[key]!r}, the seed shows {value!r}")
    log(f"  {label}: {status}, body as the seed shows")


def replay(service, label):
    (create, create_status, create_body), (show, show_status, show_body), (update, update_status, update_body) = seed_samples()
    status, body = run(create, service.base)
    check(status == 422 and "email" in body.get("details", {}),
          f"the literal create with {HIDDEN_EMAIL!r} gave {status} {body}")
    log(f"  {label}: the literal create (hidden address) is refused: 422 naming email")
    status, created = run(create.replace(HIDDEN_EMAIL, REAL_EMAIL), service.base)
    compare(f"{label} create", status, created, create_status, create_body)
    status, shown = run(show, service.base, created["id"])
    compare(f"{label} show", status, shown, show_status, show_body)
    check(shown == created, f"{label}: show differs from create: {shown} != {created}")
    status, updated = run(update, service.base, created["id"])
    compare(f"{label} update", status, updated, update_status, update_body)
    check(updated["created"] == created["created"] and updated["id"] == created["id"],
          f"{label}: update changed id or created")


def main():
    with Service(name="memory") as service:
        replay(service, "memory")
    with temp_database() as url, Service(database_url=url, name="postgres") as service:
        replay(service, "postgres")
    log("seed curl commands: passed")


if __name__ == "__main__":
    sys.exit(main())
