"""/metrics scraped by a real Prometheus (Debian's `prometheus`, 2.42): the service on PostgreSQL,
Prometheus on a free loopback port with a generated configuration that scrapes it every second;
known traffic; then Prometheus's HTTP API is asked for the request count by status and for the
99th percentile of request duration by route, and the answers are checked against the traffic
sent."""

import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from harness import Client, Service, check, free_port, log, temp_database

CREATES = 40
SHOWS_PER_VISITOR = 5
MISSING = 15
UNAUTHORIZED = 10  # under the default failed-authentication limit (30/min)
PACE = 0.02  # seconds between requests: about 6 s of traffic
P99 = ('histogram_quantile(0.99, sum by (le, http_route) '
       '(rate(http_server_request_duration_seconds_bucket[1m])))')
BY_STATUS = ('sum by (http_response_status_code) '
             '(http_server_request_duration_seconds_count{job="visitors",http_route=~"/api/.*"})')


# Loopback only: no proxy from the environment.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def wait_until_ready(port, process, limit=60.0):
    """Waits for Prometheus's /-/ready (its start-up: opening the database, loading the
    configuration); fails when it exits or past the limit."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        check(process.poll() is None, f"prometheus exited with {process.returncode}")
        try:
            with OPENER.open(f"http://127.0.0.1:{port}/-/ready", timeout=5) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.2)
    check(False, f"prometheus was not ready within {limit}s")


def query(port, promql):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with OPENER.open(url, timeout=10) as response:
        answer = json.load(response)
    check(answer.get("status") == "success", f"Prometheus refused {promql}: {answer}")
    return answer["data"]["result"]


def wait_for(port, promql, accept, limit=30.0):
    """Asks Prometheus until its answer is accepted (it scrapes every second); fails past limit."""
    started = time.monotonic()
    result = None
    while time.monotonic() - started < limit:
        result = query(port, promql)
        if accept(result):
            return result
        time.sleep(0.5)
    check(False, f"Prometheus did not answer as expected within {limit}s: {promql} -> {result}")


def main():
    prometheus = shutil.which("prometheus")
    check(prometheus, "prometheus is not installed (make e2e-prometheus installs Debian's)")
    workdir = Path(tempfile.mkdtemp(prefix="visitors-e2e-prometheus-"))
    process = None
    try:
        with temp_database() as url, Service(database_url=url, name="scraped",
                                             extra_env={"RUST_LOG": "info"}) as service:
            port = free_port()
            (workdir / "prometheus.yml").write_text(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                "scrape_configs:\n  - job_name: visitors\n    metrics_path: /metrics\n"
                f"    static_configs:\n      - targets: ['127.0.0.1:{service.port}']\n")
            process = subprocess.Popen(
                [prometheus, f"--config.file={workdir / 'prometheus.yml'}",
                 f"--storage.tsdb.path={workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                stdout=(workdir / "prometheus.log").open("w"), stderr=subprocess.STDOUT)
            took = wait_until_ready(port, process)
            log(f"prometheus ready in {took:.1f}s")
            wait_for(port, 'up{job="visitors"}',
                     lambda r: r and r[0]["value"][1] == "1")
            log(f"prometheus on 127.0.0.1:{port} scrapes the service on 127.0.0.1:{service.port}")

            # Paced over several scrapes (rate() needs a series to change between two of them),
            # with the default limits on: whatever each request got (a 429 included) is what
            # Prometheus must count.
            client = Client(service.port, keep_alive=True)
            sent = {}

            def send(method, path, allowed, **kwargs):
                time.sleep(PACE)
                status, _, body = client.request(method, path, **kwargs)
                check(status in allowed, f"{method} {path} gave {status} {body}")
                sent[status] = sent.get(status, 0) + 1
                return status, body
            ids = []
            for n in range(CREATES):
                status, body = send("POST", "/api/v2/chat/visitors", (201, 429),
                                    body={"name": f"Scraped {n}"})
                if status == 201:
                    ids.append(body["id"])
            check(ids, "no visitor was created")
            for visitor_id in ids:
                for _ in range(SHOWS_PER_VISITOR):
                    send("GET", f"/api/v2/chat/visitors/{visitor_id}", (200, 429))
            for n in range(MISSING):
                send("GET", f"/api/v2/chat/visitors/{10**9 + n}", (404, 429))
            for n in range(UNAUTHORIZED):
                send("GET", "/api/v2/chat/visitors", (401,), token=f"wrong-{n}")
            client.close()
            expected = {str(status): count for status, count in sent.items()}

            def counts(result):
                return {r["metric"]["http_response_status_code"]: int(float(r["value"][1]))
                        for r in result}
            result = wait_for(port, BY_STATUS, lambda r: counts(r) == expected)
            log(f"requests by status, as Prometheus has them: {counts(result)} "
                f"(sent: {expected})")

            # Both routes, once Prometheus has scraped each one's requests changing (until then
            # a route's rate is 0 and its quantile NaN).
            measured = ("/api/v2/chat/visitors", "/api/v2/chat/visitors/{visitor_id}")
            quantiles = wait_for(port, P99, lambda r: all(any(
                q["metric"].get("http_route") == route and q["value"][1] not in ("NaN", "+Inf")
                for q in r) for route in measured))
            by_route = {q["metric"].get("http_route"): q["value"][1] for q in quantiles}
            for route in measured:
                value = by_route.get(route)
                check(value not in (None, "NaN", "+Inf"), f"no p99 for {route}: {by_route}")
                check(0 < float(value) < 1.0, f"p99 of {route} is {value} s")
                log(f"p99 of {route} over the last minute: {float(value) * 1000:.2f} ms")
            routes = {q["metric"].get("http_route") for q in quantiles}
            check(all(r is None or r.startswith("/") or r == "(unmatched)" for r in routes),
                  f"route labels are templates: {routes}")

            pool = query(port, 'db_client_connections{job="visitors"}')
            states = {r["metric"]["state"]: r["value"][1] for r in pool}
            check(set(states) == {"used", "idle"}, f"pool states: {states}")
            memory = query(port, 'process_resident_memory_bytes{job="visitors"}')
            check(memory and float(memory[0]["value"][1]) > 1e6, f"resident memory: {memory}")
            log(f"pool connections by state: {states}; resident memory: "
                f"{float(memory[0]['value'][1]) / 2**20:.1f} MiB")
        log("prometheus: passed")
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
