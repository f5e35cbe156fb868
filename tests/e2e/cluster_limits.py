"""The cluster's shared rate limits (contract §11), as `cluster.py` runs them on its three
instances behind HAProxy, restarted with `--rate-limit-store` on a Redis of this check's own
(a `redis-server` on a free loopback port, so it can be stopped and started again):

5. one token sending ten times its limit for 30 s through the balancer: the total admitted is
   within 5 % of what one instance alone admits for that rate and time (burst + rate × time);
6. a client (source address 127.0.0.2) sending wrong tokens through the balancer is refused
   with 429 once over its limit, counted across the instances, while another client (127.0.0.3)
   with the right token gets 200 throughout;
7. Redis stopped for 10 s in the middle of steady traffic and started again: no 5xx, no failed
   request, no request slower than 100 ms, the fallback counted in /metrics, and the instances
   calling Redis's script again afterwards.
"""

import http.client
import shutil
import subprocess
import threading
import time

from harness import ADMIN_TOKEN, check, free_port, log

RATE = 20  # per second, the token limit of phase 5 (VISITORS_RATE_LIMIT=20/s)
FLOOD_SECONDS = 30.0
FLOOD_THREADS = 8
FAILURE_LIMIT = 30  # a minute: the default --auth-failure-limit


class Redis:
    """A redis-server of this check's own on a free loopback port."""

    def __init__(self):
        check(shutil.which("redis-server"), "redis-server is not installed (make e2e-cluster installs it)")
        self.port = free_port()
        self.process = None
        self.start()

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def cli(self, *args):
        return subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True,
                              text=True, timeout=5).stdout.strip()

    def start(self):
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while self.cli("ping") != "PONG":
            check(time.monotonic() < deadline, f"redis-server did not answer on {self.port}")
            time.sleep(0.05)

    def stop(self):
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


class Caller:
    """Requests on one kept-alive connection from a given source address; every outcome kept."""

    def __init__(self, port, source="127.0.0.1", token=ADMIN_TOKEN):
        self.port, self.source, self.token = port, source, token
        self.conn = None
        self.statuses = []
        self.latencies = []
        self.errors = []

    def get(self, path="/api/v2/chat/visitors?page[size]=1"):
        started = time.monotonic()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10,
                                                       source_address=(self.source, 0))
            self.conn.request("GET", path, headers={"Authorization": f"Bearer {self.token}"})
            response = self.conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as error:
            self.errors.append(f"{type(error).__name__}: {error}")
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            return None
        self.latencies.append(time.monotonic() - started)
        self.statuses.append(response.status)
        if response.getheader("Connection", "").lower() == "close":
            self.conn.close()
            self.conn = None
        return response.status


def paced(caller, per_second, seconds, stop=None):
    """Sends `per_second` requests a second for `seconds` (catching up when behind)."""
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < seconds and not (stop and stop.is_set()):
        caller.get()
        n += 1
        delay = started + n / per_second - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def flood(balancer_port, ports):
    """Phase 5: ten times the limit, one token, through the balancer."""
    before = store_errors(ports)
    callers = [Caller(balancer_port) for _ in range(FLOOD_THREADS)]
    per_thread = RATE * 10 / FLOOD_THREADS
    started = time.monotonic()
    threads = [threading.Thread(target=paced, args=(c, per_thread, FLOOD_SECONDS)) for c in callers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    statuses = [s for c in callers for s in c.statuses]
    errors = [e for c in callers for e in c.errors]
    admitted, refused = statuses.count(200), statuses.count(429)
    allowed = RATE + RATE * elapsed  # the whole burst at once, then the rate
    others = len(statuses) - admitted - refused
    alone = store_errors(ports) - before
    log(f"5. one token at 10x its limit ({RATE}/s) through haproxy for {elapsed:.1f}s: sent "
        f"{len(statuses)}, admitted {admitted}, refused {refused} (429), other {others}, "
        f"errors {len(errors)}; one instance alone admits {allowed:.0f}: ratio "
        f"{admitted / allowed:.3f}; decisions Redis did not answer in time: {alone:.0f}")
    check(not errors and others == 0, f"flood: errors {errors[:5]}, statuses {set(statuses)}")
    check(abs(admitted - allowed) <= 0.05 * allowed,
          f"admitted {admitted} is not within 5% of {allowed:.0f}")


def lockout(balancer_port):
    """Phase 6: a client with wrong tokens is locked out alone."""
    good = Caller(balancer_port, source="127.0.0.3")
    stop = threading.Event()
    good_thread = threading.Thread(target=paced, args=(good, 10, 60, stop))
    good_thread.start()
    bad = Caller(balancer_port, source="127.0.0.2", token="wrong-" + ADMIN_TOKEN)
    # 40 failures within about a second: the limit refills one every 2 s, so all ten past the
    # thirtieth are over it.
    for _ in range(FAILURE_LIMIT + 10):
        bad.get()
        time.sleep(0.02)
    # The right token from the locked-out address: still refused.
    bad.token = ADMIN_TOKEN
    locked = bad.get()
    stop.set()
    good_thread.join()
    first_429 = bad.statuses.index(429) if 429 in bad.statuses else None
    log(f"6. wrong tokens from 127.0.0.2 through haproxy: {bad.statuses.count(401)} x 401, then "
        f"429 from request {first_429 + 1 if first_429 is not None else '-'} on (limit "
        f"{FAILURE_LIMIT}/min, counted across 3 instances), its right token then {locked}; "
        f"meanwhile 127.0.0.3: {len(good.statuses)} requests, {good.statuses.count(200)} x 200")
    check(not bad.errors and not good.errors, f"errors: {bad.errors[:3]} {good.errors[:3]}")
    check(bad.statuses[:FAILURE_LIMIT] == [401] * FAILURE_LIMIT,
          f"the first {FAILURE_LIMIT} failures: {bad.statuses[:FAILURE_LIMIT]}")
    check(set(bad.statuses[FAILURE_LIMIT:]) == {429}, f"over the limit: {bad.statuses[FAILURE_LIMIT:]}")
    check(good.statuses and set(good.statuses) == {200}, f"the other client: {set(good.statuses)}")


def store_errors(ports):
    total = 0.0
    for port in ports:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
        for line in text.splitlines():
            if line.startswith("rate_limit_store_errors_total "):
                total += float(line.split()[1])
    return total


def outage(balancer_port, ports, redis):
    """Phase 7: Redis stopped for 10 s under steady traffic, then started again."""
    callers = [Caller(balancer_port) for _ in range(4)]
    stop = threading.Event()
    # 4 x 4 = 16 requests a second: under the 20/s limit whether counted together or alone.
    threads = [threading.Thread(target=paced, args=(c, 4, 25, stop)) for c in callers]
    before = store_errors(ports)
    for thread in threads:
        thread.start()
    time.sleep(5)  # shared counting under traffic first: part of the scenario
    redis.stop()
    stopped_at = time.monotonic()
    time.sleep(10)  # the outage itself
    redis.start()
    restarted_at = time.monotonic()
    for thread in threads:
        thread.join()
    statuses = [s for c in callers for s in c.statuses]
    errors = [e for c in callers for e in c.errors]
    slowest = max(latency for c in callers for latency in c.latencies) * 1000
    counted = store_errors(ports) - before
    # The restarted Redis started empty: every script call it counts came after the restart.
    calls = sum(int(part.split("=", 1)[1])
                for line in redis.cli("info", "commandstats").splitlines()
                if line.startswith(("cmdstat_evalsha:", "cmdstat_eval:"))
                for part in line.split(":", 1)[1].split(",") if part.startswith("calls="))
    log(f"7. Redis stopped {restarted_at - stopped_at:.1f}s under {len(statuses)} requests: "
        f"{statuses.count(200)} x 200, {sum(1 for s in statuses if s >= 500)} x 5xx, "
        f"{len(errors)} errors, slowest {slowest:.1f} ms; rate_limit_store_errors_total +{counted:.0f} "
        f"over the instances; after the restart the instances called Redis's script {calls} times")
    check(not errors and set(statuses) == {200}, f"outage: {set(statuses)} {errors[:3]}")
    check(slowest < 100, f"a request took {slowest:.1f} ms")
    check(counted >= 1, "the fallback was not counted in /metrics")
    check(calls > 0, "the instances did not go back to counting in Redis")
