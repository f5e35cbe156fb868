"""Three instances behind HAProxy (Debian's `haproxy` 2.6, configured by docs/haproxy.cfg, with
health checks on /readyz) on one PostgreSQL database, through a rolling restart:

1. mixed traffic (create, update, show, list) through HAProxy for at least 30 s while each
   instance in turn gets SIGTERM (it drains for 3 s, then exits 0) and is started again; not one
   request may fail (no 5xx, no connection error, no timeout, no unexpected status);
2. at the end, every visitor created is read back through HAProxy with its last write;
3. racing creates of one external_id, sent to the three instances at once: exactly one 201;
4. one idempotent create retried through each instance in turn, and three at once with another
   key: one visitor each;
5-7. the instances restarted with one Redis as their rate-limit store: one token at ten times
   its limit, a client locked out alone, a Redis outage (see cluster_limits.py).
"""

import csv
import http.client
import io
import json
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cluster_limits
from harness import ROOT, Client, Service, check, free_port, log, temp_database

CONFIG = ROOT / "docs" / "haproxy.cfg"
WORKERS = 6
MIN_SECONDS = 30.0
DRAIN_SECONDS = "3"


class LoadBalancer:
    def __init__(self, instance_ports, workdir):
        self.port = free_port()
        self.socket = str(workdir / "haproxy.sock")
        env = {
            "VISITORS_LB_BIND": f"127.0.0.1:{self.port}",
            "VISITORS_LB_SOCKET": self.socket,
            **{f"VISITORS_{n + 1}": f"127.0.0.1:{port}" for n, port in enumerate(instance_ports)},
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        }
        self.log = (workdir / "haproxy.log").open("w")
        self.process = subprocess.Popen([shutil.which("haproxy"), "-db", "-f", str(CONFIG)],
                                        env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def admin(self, command):
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(self.socket)
            sock.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def states(self):
        """Each server's health as HAProxy sees it: {'visitors1': 'UP', ...}."""
        text = self.admin("show stat").lstrip("# ")
        return {row["svname"]: row["status"] for row in csv.DictReader(io.StringIO(text))
                if row["pxname"] == "visitors" and row["svname"].startswith("visitors")}

    def wait_until(self, server, state, limit=20.0):
        started = time.monotonic()
        while time.monotonic() - started < limit:
            check(self.process.poll() is None, "haproxy exited")
            try:
                if self.states().get(server, "").startswith(state):
                    return time.monotonic() - started
            except OSError:
                pass  # the admin socket is not there yet
            time.sleep(0.1)
        check(False, f"{server} was not {state} within {limit}s: {self.states()}")

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)
        self.log.close()


class Traffic(threading.Thread):
    """One client through the balancer on a kept-alive connection: create a visitor, update it,
    show it, list, and again. Every answer is checked; nothing is retried."""

    def __init__(self, port, number, stop):
        super().__init__(daemon=True)
        self.port, self.number, self.stop = port, number, stop
        self.conn = None
        self.requests = 0
        self.failures = []
        self.latencies = []
        self.visitors = {}  # id -> the body of its last successful write

    def call(self, method, path, body, expected):
        headers = {"Authorization": f"Bearer {Client(self.port).token}"}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        started = time.monotonic()
        self.requests += 1
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            self.conn.request(method, path, body=payload, headers=headers)
            response = self.conn.getresponse()
            data = response.read()
            if response.getheader("Connection", "").lower() == "close":
                self.conn.close()
                self.conn = None
        except (OSError, http.client.HTTPException) as error:
            self.failures.append(f"{method} {path}: {type(error).__name__}: {error}")
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            return None
        self.latencies.append(time.monotonic() - started)
        if response.status != expected:
            self.failures.append(f"{method} {path}: {response.status} {data[:200]!r}")
            return None
        return json.loads(data) if data else None

    def run(self):
        n = 0
        while not self.stop.is_set():
            n += 1
            tag = f"w{self.number}-{n}-{secrets.token_hex(3)}"
            made = self.call("POST", "/api/v2/chat/visitors",
                             {"name": f"Rolling {tag}", "external_id": f"cluster-{tag}"}, 201)
            if made is None:
                continue
            self.visitors[made["id"]] = made
            for k in range(2):
                updated = self.call("PUT", f"/api/v2/chat/visitors/{made['id']}",
                                    {"name": f"Rolling {tag} #{k}",
                                     "email": f"{tag}-{k}@example.com"}, 200)
                if updated is not None:
                    self.visitors[made["id"]] = updated
            shown = self.call("GET", f"/api/v2/chat/visitors/{made['id']}", None, 200)
            if shown is not None and shown != self.visitors[made["id"]]:
                self.failures.append(f"show {made['id']} gave {shown}, not its last write")
            self.call("GET", "/api/v2/chat/visitors?page[size]=20&sort=-id", None, 200)


def direct(port, method, path, body=None, headers=None):
    return Client(port).request(method, path, body, headers=headers)


def main():
    check(shutil.which("haproxy"), "haproxy is not installed (make e2e-cluster installs it)")
    workdir = Path(tempfile.mkdtemp(prefix="visitors-e2e-cluster-"))
    ports = [free_port() for _ in range(3)]
    instances = []
    balancer = None
    try:
        with temp_database() as url:
            # HAProxy connects from 127.0.0.1: the instances trust it for X-Forwarded-For.
            env = {"VISITORS_DRAIN_SECONDS": DRAIN_SECONDS, "VISITORS_RATE_LIMIT": "off",
                   "VISITORS_TRUSTED_PROXIES": "127.0.0.1", "RUST_LOG": "info"}
            instances = [Service(database_url=url, extra_env=env, name=f"visitors{n + 1}")
                         for n in range(3)]
            for instance, port in zip(instances, ports):
                instance.start(port)
            balancer = LoadBalancer(ports, workdir)
            for n in range(3):
                balancer.wait_until(f"visitors{n + 1}", "UP")
            log(f"haproxy on 127.0.0.1:{balancer.port} over instances on ports {ports}")

            # 1. Rolling restart under traffic.
            stop = threading.Event()
            workers = [Traffic(balancer.port, n, stop) for n in range(WORKERS)]
            started = time.monotonic()
            for worker in workers:
                worker.start()
            time.sleep(3.0)  # traffic before the first restart: part of the scenario, not a wait
            for n, (instance, port) in enumerate(zip(instances, ports)):
                name = f"visitors{n + 1}"
                signalled = time.monotonic()
                code = instance.stop()
                check(code == 0, f"{name} exited with {code} after SIGTERM")
                stopped = time.monotonic() - signalled
                down = balancer.states().get(name, "")
                check(not down.startswith("UP"), f"{name} stopped but haproxy has it {down}")
                restarted = Service(database_url=url, extra_env=env, name=name)
                instances[n] = restarted
                restarted.start(port)
                up = balancer.wait_until(name, "UP")
                log(f"{name}: SIGTERM -> exit 0 in {stopped:.1f}s (drain {DRAIN_SECONDS}s), "
                    f"started again, UP in haproxy {up:.1f}s later")
            while time.monotonic() - started < MIN_SECONDS:
                time.sleep(0.2)  # the rest of the 30 s of traffic
            stop.set()
            for worker in workers:
                worker.join(timeout=30)
            elapsed = time.monotonic() - started
            requests = sum(w.requests for w in workers)
            failures = [f for w in workers for f in w.failures]
            latencies = sorted(latency for w in workers for latency in w.latencies)
            p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000 if latencies else 0.0
            log(f"1. {requests} requests through haproxy in {elapsed:.1f}s over 3 rolling "
                f"restarts: {len(failures)} failed; p99 {p99:.1f} ms (debug build)")
            check(not failures, "failed requests:\n  " + "\n  ".join(failures[:20]))

            # 2. Every visitor has its last write.
            visitors = {vid: body for w in workers for vid, body in w.visitors.items()}
            reader = Client(balancer.port, keep_alive=True)
            for vid, last in visitors.items():
                status, _, shown = reader.request("GET", f"/api/v2/chat/visitors/{vid}")
                check(status == 200 and shown == last, f"visitor {vid}: {status} {shown} != {last}")
            reader.close()
            log(f"2. all {len(visitors)} visitors created read back with their last write")

            # 3. Racing creates of one external_id through the three instances.
            for round_number in range(5):
                external_id = f"race-{round_number}-{secrets.token_hex(4)}"
                results = []
                barrier = threading.Barrier(9)

                def race(port):
                    barrier.wait()
                    status, _, _ = direct(port, "POST", "/api/v2/chat/visitors",
                                          {"name": "Racer", "external_id": external_id})
                    results.append(status)
                racers = [threading.Thread(target=race, args=(ports[k % 3],)) for k in range(9)]
                for racer in racers:
                    racer.start()
                for racer in racers:
                    racer.join()
                check(sorted(results) == [201] + [409] * 8,
                      f"racing creates of {external_id}: {sorted(results)}")
            log("3. racing creates of one external_id on 3 instances: one 201 and eight 409, "
                "5 rounds of 9")

            # 4. One idempotent create retried through each instance in turn.
            key = "cluster-" + secrets.token_hex(8)
            body = {"name": "Once", "external_id": "idem-" + secrets.token_hex(4)}
            answers = [direct(port, "POST", "/api/v2/chat/visitors", body,
                              headers={"Idempotency-Key": key}) for port in ports]
            ids = {answer[2]["id"] for answer in answers}
            check([a[0] for a in answers] == [201, 201, 201] and len(ids) == 1,
                  f"idempotent retries: {[(a[0], a[2]) for a in answers]}")
            replayed = [a[1].get("idempotent-replayed") for a in answers]
            check(replayed == [None, "true", "true"], f"Idempotent-Replayed: {replayed}")
            # And three at once with another key: one visitor; the losers get 409 InUse and
            # their retry replays it.
            key = "cluster-" + secrets.token_hex(8)
            body = {"name": "Once at once", "external_id": "idem-" + secrets.token_hex(4)}
            statuses, made = [], set()
            barrier = threading.Barrier(3)

            def idem(port):
                barrier.wait()
                status, headers, answer = direct(port, "POST", "/api/v2/chat/visitors", body,
                                                 headers={"Idempotency-Key": key})
                statuses.append(status)
                if status == 201:
                    made.add(answer["id"])
            racers = [threading.Thread(target=idem, args=(port,)) for port in ports]
            for racer in racers:
                racer.start()
            for racer in racers:
                racer.join()
            check(all(s in (201, 409) for s in statuses) and statuses.count(201) >= 1,
                  f"idempotent creates at once: {statuses}")
            for port in ports:
                status, _, answer = direct(port, "POST", "/api/v2/chat/visitors", body,
                                           headers={"Idempotency-Key": key})
                check(status == 201, f"retry after the race: {status} {answer}")
                made.add(answer["id"])
            check(len(made) == 1, f"idempotent creates at once made {made}")
            status, _, page = direct(ports[0], "GET",
                                     f"/api/v2/chat/visitors?external_id={body['external_id']}")
            check(status == 200 and len(page["visitors"]) == 1, f"list by external_id: {page}")
            log(f"4. one idempotent create retried on each instance: one visitor; three at once "
                f"({sorted(statuses)}) then retried: one visitor")
            for instance in instances:
                check(instance.stop() == 0, f"{instance.name} did not exit 0")

            # 5-7. The same instances again, counting their limits in one Redis.
            redis = cluster_limits.Redis()
            try:
                limited = dict(env, VISITORS_RATE_LIMIT=f"{cluster_limits.RATE}/s",
                               VISITORS_RATE_LIMIT_STORE=redis.url)
                instances = [Service(database_url=url, extra_env=limited, name=f"visitors{n + 1}")
                             for n in range(3)]
                for instance, port in zip(instances, ports):
                    instance.start(port)
                for n in range(3):
                    balancer.wait_until(f"visitors{n + 1}", "UP")
                cluster_limits.flood(balancer.port, ports)
                cluster_limits.lockout(balancer.port)
                cluster_limits.outage(balancer.port, ports, redis)
                for instance in instances:
                    check(instance.stop() == 0, f"{instance.name} did not exit 0")
            finally:
                redis.stop()
        log(f"cluster: passed ({requests} requests in {elapsed:.1f}s, 3 rolling restarts, "
            "0 failed)")
    finally:
        for instance in instances:
            instance.stop()
        if balancer is not None:
            balancer.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
