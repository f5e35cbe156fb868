"""Contract §10 from outside: two instances on one PostgreSQL database under mixed traffic, one
of them killed with SIGKILL and started again in the middle; a webhook receiver that verifies
every delivery with the reference `standardwebhooks` package, answers 500 to the first two
attempts of some deliveries, and a second endpoint that answers 410 after a while; a change
feed reader keeping a copy. Then:

- every change answered with success is delivered at least once (a create or update of a
  visitor erased before it was sent may be dropped, its erasure is delivered);
- no delivery fails verification; no visitor's state goes backwards at the receiver;
- the 410 endpoint receives nothing more once disabled (bar attempts already in flight);
- the feed reader's copy equals the service's visitors, byte for byte, with no erased one;
- nothing of an erased visitor's data is in the change log or the deliveries tables.

Prints deliveries, duplicates and the delivery lag (p50, p99)."""

import json
import os
import random
import statistics
import subprocess
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

from harness import (UNLIMITED, Client, Service, check, fail, free_port, log, temp_database)

SECONDS = float(os.environ.get("E2E_WEBHOOK_SECONDS", "20"))
MARK = "e2e-private"  # in every visitor's data: must never reach the log or deliveries tables


class Receiver:
    """Records every delivery; `/flaky` answers 500 to the first two attempts of one delivery
    in five, `/gone` answers 204 until `gone_after` deliveries, then 410."""

    def __init__(self, gone_after=30):
        self.lock = threading.Lock()
        self.secrets = {}
        self.got = []  # (path, webhook-id, status answered, body, received at, verified)
        self.attempts = {}
        self.gone_after = gone_after
        self.gone_at = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                status = receiver.answer(self.path, dict(self.headers), body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # a sender killed mid-request resets its connection: expected here

        self.port = free_port()
        self.server = Server(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, path, headers, body):
        now = time.time()
        headers = {k.lower(): v for k, v in headers.items()}
        try:
            payload = Webhook(self.secrets[path]).verify(body, headers)
            verified = True
        except Exception as error:  # the reference library's verdict, whatever it raises
            payload, verified = {"error": str(error)}, False
        with self.lock:
            message = headers.get("webhook-id", "")
            attempt = self.attempts.get((path, message), 0) + 1
            self.attempts[(path, message)] = attempt
            if path == "/gone":
                if self.gone_at is not None:
                    status = 410
                elif sum(1 for g in self.got if g[0] == "/gone") >= self.gone_after:
                    status = 410
                    self.gone_at = now
                else:
                    status = 204
            elif hash(message) % 5 == 0 and attempt <= 2:
                status = 500
            else:
                status = 200
            self.got.append((path, message, status, payload, now, verified))
        return status

    def stop(self):
        self.server.shutdown()


class Traffic:
    """Mixed writes against the instances; what was answered with success is recorded."""

    def __init__(self, instances):
        self.instances = instances
        self.lock = threading.Lock()
        self.live = {}  # visitor id -> the counter of its last successful write
        self.erased = set()
        self.changes = []  # (id, type) of every change answered with success
        self.counter = 0
        self.stop = threading.Event()
        self.failed_requests = 0

    def next(self):
        with self.lock:
            self.counter += 1
            return self.counter

    def pick(self):
        with self.lock:
            return random.choice(list(self.live)) if self.live else None

    def record(self, visitor, kind, n=None):
        with self.lock:
            self.changes.append((visitor, kind))
            if kind == "visitor.deleted":
                self.live.pop(visitor, None)
                self.erased.add(visitor)
            elif visitor not in self.erased:
                self.live[visitor] = n

    def body(self, n):
        return {"name": f"v{n}", "notes": f"{MARK} notes", "email": f"{MARK}-{n}@example.com"}

    def run(self, worker):
        rng = random.Random(worker)
        while not self.stop.is_set():
            instance = self.instances[rng.randrange(len(self.instances))]
            if not instance.alive():
                time.sleep(0.01)
                continue
            client = Client(instance.port)
            roll = rng.random()
            n = self.next()
            try:
                visitor = self.pick()
                if roll < 0.35 or visitor is None:
                    status, _, answer = client.request("POST", "/api/v2/chat/visitors", self.body(n))
                    if status == 201:
                        self.record(answer["id"], "visitor.created", n)
                elif roll < 0.75:
                    status, _, answer = client.request("PUT", f"/api/v2/chat/visitors/{visitor}", {"name": f"v{n}"})
                    if status == 200:
                        self.record(visitor, "visitor.updated", n)
                elif roll < 0.85:
                    status, _, _ = client.request("DELETE", f"/api/v2/chat/visitors/{visitor}")
                    if status == 204:
                        self.record(visitor, "visitor.deleted")
                else:
                    lines = [json.dumps({**self.body(n), "external_id": f"ext-{worker}-{n}-{k}"}) for k in range(3)]
                    status, _, _ = client.request(
                        "POST", "/api/v2/chat/visitors/import", raw="\n".join(lines).encode(),
                        headers={"Content-Type": "application/x-ndjson"})
                    self.import_ids(client, worker, n, status)
            except Exception:
                with self.lock:
                    self.failed_requests += 1
            finally:
                client.close()

    def import_ids(self, client, worker, n, status):
        """The visitors an import created, found by their external ids."""
        if status != 200:
            return
        for k in range(3):
            s, _, page = client.request("GET", f"/api/v2/chat/visitors?external_id=ext-{worker}-{n}-{k}")
            if s == 200 and page["visitors"]:
                self.record(page["visitors"][0]["id"], "visitor.created", n)


def feed_reader(port, copy, stop, errors):
    client = Client(port, keep_alive=True)
    url = "/api/v2/chat/incremental/visitors?start_time=0&per_page=500"
    while True:
        try:
            status, _, page = client.request("GET", url)
        except Exception:
            time.sleep(0.1)
            continue
        if status != 200:
            errors.append((status, page))
            return
        for item in page["changes"]:
            if item["deleted"]:
                copy.pop(item["id"], None)
            else:
                copy[item["id"]] = item["visitor"]
        url = page["after_url"].split(str(port), 1)[1]
        if page["end_of_stream"]:
            if stop.is_set():
                return
            time.sleep(0.2)


def everyone(port):
    client = Client(port)
    found, url = {}, "/api/v2/chat/visitors?page[size]=1000"
    while url:
        status, _, page = client.request("GET", url)
        check(status == 200, f"List answered {status}")
        for visitor in page["visitors"]:
            found[visitor["id"]] = visitor
        url = page["links"]["next"] and page["links"]["next"].split(str(port), 1)[1]
    return found


def sql(url, query):
    return subprocess.run(["psql", url, "-At", "-v", "ON_ERROR_STOP=1", "-c", query],
                          check=True, capture_output=True, text=True).stdout.strip()


def main():
    env = {**UNLIMITED, "VISITORS_WEBHOOK_TIMEOUT": "2", "VISITORS_WEBHOOK_RETRY_SCHEDULE": "1,1,1,1,1,1"}
    receiver = Receiver()
    with temp_database() as url:
        a = Service(url, env, "instance A").start()
        b = Service(url, env, "instance B").start()
        admin = Client(a.port)
        for path in ("/flaky", "/gone"):
            status, _, hook = admin.request("POST", "/api/v2/chat/webhooks", {"url": receiver.url(path)})
            check(status == 201, f"registering {path}: {status} {hook}")
            receiver.secrets[path] = hook["secret"]
        traffic = Traffic([a, b])
        copy, feed_errors, feed_stop = {}, [], threading.Event()
        reader = threading.Thread(target=feed_reader, args=(a.port, copy, feed_stop, feed_errors))
        reader.start()
        workers = [threading.Thread(target=traffic.run, args=(w,)) for w in range(4)]
        for worker in workers:
            worker.start()
        time.sleep(SECONDS * 0.4)
        b.process.kill()  # SIGKILL: whatever it was sending is lost in flight
        b.process.wait()
        log(f"instance B killed with SIGKILL at {SECONDS * 0.4:.0f} s")
        time.sleep(2)
        b = Service(url, env, "instance B (again)").start()
        traffic.instances[1] = b
        time.sleep(SECONDS * 0.6 - 2)
        traffic.stop.set()
        for worker in workers:
            worker.join()
        log(f"traffic: {len(traffic.changes)} changes answered with success, "
            f"{traffic.failed_requests} requests failed (instance B down)")

        deadline = time.monotonic() + 90
        while sql(url, "SELECT count(*) FROM webhook_deliveries") != "0":
            check(time.monotonic() < deadline, "deliveries still pending 90 s after the traffic")
            time.sleep(0.2)
        feed_stop.set()
        reader.join(timeout=30)
        check(not feed_errors, f"the feed answered an error: {feed_errors}")

        got = list(receiver.got)
        unverified = [g for g in got if not g[5]]
        check(not unverified, f"{len(unverified)} deliveries failed verification: {unverified[:3]}")
        flaky = [g for g in got if g[0] == "/flaky"]
        delivered = [g for g in flaky if g[2] == 200]
        by_visitor = {}
        for _, message, status, payload, at, _ in flaky:
            if status == 200:
                by_visitor.setdefault(payload["data"]["id"], []).append((payload["type"], payload["data"], at))
        # Every change answered with success, delivered.
        missing = []
        for visitor, kind in traffic.changes:
            kinds = [t for t, _, _ in by_visitor.get(visitor, [])]
            if kind == "visitor.deleted" or visitor not in traffic.erased:
                if kind not in kinds:
                    missing.append((visitor, kind))
        counts = {}
        for visitor, kind in traffic.changes:
            counts[(visitor, kind)] = counts.get((visitor, kind), 0) + 1
        for (visitor, kind), n in counts.items():
            if visitor in traffic.erased and kind != "visitor.deleted":
                continue
            received = sum(1 for t, _, _ in by_visitor.get(visitor, []) if t == kind)
            if received < n:
                missing.append((visitor, kind, f"{received} of {n}"))
        check(not missing, f"changes answered with success never delivered: {missing[:10]}")
        # No state backwards; nothing after an erasure.
        for visitor, events in by_visitor.items():
            counters = [int(d["name"][1:]) for t, d, _ in events if t != "visitor.deleted"]
            check(counters == sorted(counters), f"visitor {visitor} went backwards: {counters}")
            types = [t for t, _, _ in events]
            if "visitor.deleted" in types:
                check(all(t == "visitor.deleted" for t in types[types.index("visitor.deleted"):]),
                      f"visitor {visitor} got a change after its erasure: {types}")
        # The 410 endpoint: nothing more once disabled, but what was already in flight.
        gone = [g for g in got if g[0] == "/gone"]
        check(receiver.gone_at is not None, "the 410 endpoint was never reached 30 times")
        late = [g for g in gone if g[4] > receiver.gone_at + 3]
        in_flight = [g for g in gone if receiver.gone_at < g[4] <= receiver.gone_at + 3]
        check(not late, f"the disabled endpoint still received {len(late)} deliveries")
        # Delivery figures.
        ids = [g[1] for g in delivered]
        duplicates = len(ids) - len(set(ids))
        lags = sorted(at - datetime.fromisoformat(p["timestamp"].replace("Z", "+00:00")).timestamp()
                      for _, _, _, p, at, _ in delivered)
        p50 = statistics.median(lags)
        p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))]
        retried = sum(1 for g in flaky if g[2] == 500)
        log(f"deliveries: {len(delivered)} delivered to /flaky ({retried} answered 500 first and retried), "
            f"{len(got)} requests in all, {len(unverified)} failed verification (standardwebhooks {Webhook.__module__})")
        log(f"duplicates: {duplicates} (a webhook-id answered 2xx more than once: an attempt whose outcome was lost)")
        log(f"lag from the change to the receiver, delivered attempts: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms "
            "(the 500s' retries and the killed instance's leases included)")
        log(f"/gone: {len(gone)} requests, disabled after 30; {len(in_flight)} already in flight then, 0 later")

        # The feed reader's copy: the service's visitors, byte for byte.
        service = everyone(a.port)
        check(set(copy) == set(service), f"the copy has {len(copy)} visitors, the service {len(service)}: "
              f"{sorted(set(copy) ^ set(service))[:10]}")
        differ = [k for k in service if json.dumps(service[k], sort_keys=True) != json.dumps(copy[k], sort_keys=True)]
        check(not differ, f"visitors differ in the copy: {differ[:5]}")
        check(not (set(copy) & traffic.erased), "an erased visitor is in the copy")
        log(f"feed: the reader's copy holds {len(copy)} visitors, equal to the service's, none of the "
            f"{len(traffic.erased)} erased")
        # Nothing of an erased visitor's data in the log or the deliveries.
        for table in ("visitor_changes", "visitor_erasures", "webhook_deliveries", "webhook_attempts"):
            found = sql(url, f"SELECT count(*) FROM {table} AS t WHERE t::text LIKE '%{MARK}%' OR t::text LIKE '%example.com%'")
            check(found == "0", f"{table} holds visitor data in {found} rows")
        erased_rows = sql(url, "SELECT count(*) FROM visitor_changes WHERE erased")
        log(f"database: {erased_rows} erasures in the change log, each only an id and a time; no visitor data "
            "in visitor_changes, visitor_erasures, webhook_deliveries or webhook_attempts")
        a.stop()
        b.stop()
    receiver.stop()
    log("webhooks: passed")


if __name__ == "__main__":
    main()
