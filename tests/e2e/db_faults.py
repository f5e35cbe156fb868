"""Database faults, against a throwaway PostgreSQL cluster this check creates itself (initdb on a
free loopback port, in a directory of its own under the system's temporary folder so that the
postgres user can reach it wherever the checkout is, removed on every way out; never the shared
server):

1. data survives a service restart;
2. the database stopped mid-run: 503 with Retry-After, /readyz 503, the process stays up;
3. the database back: recovery without a restart, data intact;
4. the service started while the database is down: it starts, answers 503, and recovers when
   the database comes up (running its migrations then).
"""

import sys
import threading
import time

from harness import UNLIMITED, Client, Service, ThrowawayCluster, check, log, psql


def wait_ready(client, limit=30.0):
    """Polls /readyz until 200; returns the seconds it took. Fails past `limit`."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        status, _, _ = client.request("GET", "/readyz", token=None)
        if status == 200:
            return time.monotonic() - started
        time.sleep(0.1)
    fail_after = time.monotonic() - started
    check(False, f"/readyz did not recover within {fail_after:.1f}s")


def expect_unavailable(service, client, visitor_id):
    for method, path, body in [
        ("POST", "/api/v2/chat/visitors", {"name": "while down"}),
        ("GET", f"/api/v2/chat/visitors/{visitor_id}", None),
        ("PUT", f"/api/v2/chat/visitors/{visitor_id}", {"name": "while down"}),
    ]:
        status, headers, body = client.request(method, path, body)
        check(status == 503, f"{method} {path} while the database is down gave {status} {body}")
        check(body and body.get("error") == "ServiceUnavailable", f"503 body: {body}")
        retry = headers.get("retry-after", "")
        check(retry.isdigit() and int(retry) > 0, f"Retry-After is {retry!r}")
    status, _, _ = client.request("GET", "/readyz", token=None)
    check(status == 503, f"/readyz while the database is down gave {status}")
    status, _, _ = client.request("GET", "/healthz", token=None)
    check(status == 200, f"/healthz while the database is down gave {status}")
    check(service.alive(), "the service exited while the database was down")


def main():
    cluster = ThrowawayCluster().init()
    requests = 0
    try:
        cluster.start()
        log(f"throwaway cluster on 127.0.0.1:{cluster.port} in {cluster.dir}")
        psql("CREATE DATABASE visitors", cluster.url)
        psql("CREATE DATABASE visitors_late", cluster.url)
        url = cluster.url.rsplit("/", 1)[0] + "/visitors"
        late_url = cluster.url.rsplit("/", 1)[0] + "/visitors_late"

        # 1. Data survives a service restart.
        with Service(database_url=url, name="first", extra_env=UNLIMITED) as first:
            status, _, created = Client(first.port).request(
                "POST", "/api/v2/chat/visitors",
                {"name": "Durable", "email": "durable@example.com", "external_id": "durable-1"})
            requests += 1
            check(status == 201, f"create gave {status}")
        check(first.process.returncode == 0, f"the first service stopped with {first.process.returncode}")
        visitor_id = created["id"]
        with Service(database_url=url, name="second", extra_env=UNLIMITED) as second:
            client = Client(second.port)
            status, _, shown = client.request("GET", f"/api/v2/chat/visitors/{visitor_id}")
            requests += 1
            check(status == 200 and shown == created, f"after a restart: {status} {shown}")
            log("1. data survives a service restart")

            # 2. The database stops mid-run.
            cluster.stop()
            expect_unavailable(second, client, visitor_id)
            requests += 5
            log("2. database stopped: 503 with Retry-After, /readyz 503, /healthz 200, process up")

            # 3. The database comes back: recovery without a restart.
            cluster.start()
            took = wait_ready(client)
            status, _, shown = client.request("GET", f"/api/v2/chat/visitors/{visitor_id}")
            check(status == 200 and shown == created, f"after recovery: {status} {shown}")
            status, _, updated = client.request("PUT", f"/api/v2/chat/visitors/{visitor_id}", {"name": "Back"})
            check(status == 200 and updated["name"] == "Back", f"update after recovery: {status}")
            requests += 2
            check(second.alive(), "the service restarted or died")
            log(f"3. database back: ready again in {took:.2f}s without a restart, data intact")

            # 3b. A one-second database restart with no traffic meanwhile: the pooled connections
            # it killed are replaced, never handed to a request, so the first requests succeed.
            def burst():
                burst_client = Client(second.port)
                for _ in range(20):
                    burst_client.request("GET", f"/api/v2/chat/visitors/{visitor_id}")
            threads = [threading.Thread(target=burst) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            cluster.stop()
            time.sleep(1.0)  # the outage lasts a second: the model of a restart, not a wait
            cluster.start()
            for _ in range(30):
                status, _, shown = client.request("GET", f"/api/v2/chat/visitors/{visitor_id}")
                check(status == 200, f"right after a one-second restart: {status} {shown}")
            requests += 190
            log("3b. one-second database restart: every request after it succeeded (30 of 30)")

        # 4. The service starts while the database is down.
        cluster.stop()
        with Service(database_url=late_url, name="late", extra_env=UNLIMITED) as late:
            client = Client(late.port)
            expect_unavailable(late, client, 1)
            requests += 5
            cluster.start()
            took = wait_ready(client)
            status, _, made = client.request("POST", "/api/v2/chat/visitors", {"name": "Late"})
            check(status == 201, f"create after the database came up gave {status} {made}")
            status, _, shown = client.request("GET", f"/api/v2/chat/visitors/{made['id']}")
            check(status == 200 and shown == made, "show after the database came up")
            requests += 2
            log(f"4. started with the database down: 503, then ready {took:.2f}s after it came up")
        log(f"database faults: passed ({requests} API requests checked)")
    finally:
        cluster.remove()


if __name__ == "__main__":
    sys.exit(main())
