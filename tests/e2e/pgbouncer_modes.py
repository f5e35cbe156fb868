"""The service through PgBouncer (Debian's `pgbouncer`, 1.18), as docs/DEPLOYMENT.md advises:

1. session mode (`pool_mode = session`, `ignore_startup_parameters = extra_float_digits`, a
   pool as large as the service's): 16 clients × 200 rounds of create (with an Idempotency-Key),
   show, update and list: every answer as expected;
2. transaction mode on PgBouncer 1.18 (no `max_prepared_statements` before 1.21): sqlx's
   prepared statements collide: the service refuses to start, or answers 5xx and drops
   connections (sqlx itself panics on rows of another statement); this part documents the limit,
   and passes when the limit shows.

PgBouncer runs on a free loopback port as the postgres user (it refuses to run as root), with
its files in a folder of its own under the system's temporary folder, removed afterwards.
"""

import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from harness import SHARED_PG, Client, Service, check, fail, free_port, log, temp_database

CLIENTS = 16
ROUNDS = 200
SERVICE_POOL = 20


class PgBouncer:
    def __init__(self, workdir, database_url, mode, pool_size):
        self.workdir = workdir
        self.port = free_port()
        self.mode = mode
        server = database_url.removeprefix("postgres://").split("@", 1)[1]
        hostport, dbname = server.split("/", 1)
        host, port = hostport.rsplit(":", 1)
        (workdir / "users.txt").write_text('"postgres" ""\n')
        self.config = workdir / f"{mode}.ini"
        self.config.write_text(
            "[databases]\n"
            f"visitors = host={host} port={port} dbname={dbname} user=postgres\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {workdir / 'users.txt'}\n"
            f"pool_mode = {mode}\ndefault_pool_size = {pool_size}\nmax_client_conn = 200\n"
            # sqlx sets extra_float_digits at connection start; PgBouncer refuses unknown
            # startup parameters unless told to ignore them.
            "ignore_startup_parameters = extra_float_digits\n"
            f"logfile = {workdir / (mode + '.log')}\npidfile = {workdir / (mode + '.pid')}\n")
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if as_postgres:
            shutil.chown(workdir, "postgres")
            for path in workdir.iterdir():
                shutil.chown(path, "postgres")
        self.process = subprocess.Popen(as_postgres + [shutil.which("pgbouncer") or
                                                       "/usr/sbin/pgbouncer", str(self.config)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            check(self.process.poll() is None, f"pgbouncer ({mode}) exited at start")
            if subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port)]
                              ).returncode == 0:
                break
            time.sleep(0.1)
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/visitors"

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)


def traffic(port, mode):
    seen, unexpected = {}, []
    lock = threading.Lock()

    def call(conn, *args, **kwargs):
        """(status, body); a connection that failed is status 0 (counted, never retried)."""
        try:
            status, _, body = conn.request(*args, **kwargs)
            return status, body
        except (OSError, http.client.HTTPException):
            return 0, None

    def client(n):
        conn = Client(port, keep_alive=True)
        for k in range(ROUNDS):
            status, made = call(conn, "POST", "/api/v2/chat/visitors", {"name": f"{n}-{k}"},
                                headers={"Idempotency-Key": f"{mode}-{n}-{k}"})
            answers = [("create", status, 201)]
            if status == 201:
                path = f"/api/v2/chat/visitors/{made['id']}"
                answers.append(("show", call(conn, "GET", path)[0], 200))
                answers.append(("update", call(conn, "PUT", path, {"name": f"u{n}-{k}"})[0], 200))
            answers.append(("list", call(conn, "GET", "/api/v2/chat/visitors?page[size]=10")[0],
                            200))
            with lock:
                for name, got, expected in answers:
                    seen[(name, got)] = seen.get((name, got), 0) + 1
                    if got != expected:
                        unexpected.append((name, got))
        conn.close()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return seen, unexpected


def main():
    check(shutil.which("pgbouncer") or Path("/usr/sbin/pgbouncer").exists(),
          "pgbouncer is not installed (make e2e-pgbouncer installs Debian's)")
    version = subprocess.run(["/usr/sbin/pgbouncer", "--version"], capture_output=True,
                             text=True).stdout.splitlines()[0]
    env = {"VISITORS_RATE_LIMIT": "off", "VISITORS_DB_MAX_CONNECTIONS": str(SERVICE_POOL)}
    with temp_database() as url:
        workdir = Path(tempfile.mkdtemp(prefix="visitors-e2e-pgbouncer-"))
        bouncers = []
        try:
            # 1. Session mode, a server pool at least as large as the service's.
            session = PgBouncer(workdir, url, "session", SERVICE_POOL + 5)
            bouncers.append(session)
            with Service(database_url=session.url, extra_env=env, name="via-session") as service:
                seen, unexpected = traffic(service.port, "session")
            check(not unexpected, f"session mode: unexpected answers {unexpected[:10]} ({seen})")
            total = sum(seen.values())
            log(f"1. {version}, session mode: {total} requests from {CLIENTS} clients, "
                f"every answer as expected {dict(sorted(seen.items()))}")

            # 2. Transaction mode on a PgBouncer without max_prepared_statements.
            transaction = PgBouncer(workdir, url, "transaction", SERVICE_POOL + 5)
            bouncers.append(transaction)
            service = Service(database_url=transaction.url, extra_env=env, name="via-transaction")
            try:
                try:
                    service.start()
                except SystemExit:
                    # It refused to start: its migrations' prepared statements collided.
                    said = "".join(service.output)
                    check("prepared statement" in said, f"transaction mode failed otherwise: {said}")
                    log(f"2. {version}, transaction mode: the service refused to start (prepared "
                        "statement \"sqlx_s_1\" already exists): use session mode before 1.21")
                else:
                    seen, _ = traffic(service.port, "transaction")
                    failures = sum(count for (name, status), count in seen.items()
                                   if status >= 500 or status == 0)
                    check(failures > 0, f"transaction mode on {version} showed no failure: {seen}")
                    panics = sum("panicked" in line for line in service.output)
                    log(f"2. {version}, transaction mode: {failures} of {sum(seen.values())} "
                        f"answers were 5xx or dropped connections, {panics} worker panics inside "
                        "sqlx (statements prepared on one server connection, used on another): use "
                        "session mode before 1.21")
            finally:
                service.stop()
        finally:
            for bouncer in bouncers:
                bouncer.stop()
            shutil.rmtree(workdir, ignore_errors=True)
    log("pgbouncer: passed")


if __name__ == "__main__":
    sys.exit(main())
