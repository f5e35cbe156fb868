"""The Visitors benchmark: the service against its ceilings, side by side in one run.

Load comes from wrk (one thread, pinned to the last core with taskset) on loopback; the servers
are not pinned. Every workload has a warm-up that is thrown away, then a measured run.

- Framework ceiling: `framework-ceiling`, a bare actix-web handler answering the same routes with
  the same visitor JSON bytes (no auth, no store, no middleware).
- Database ceiling: `pgbench -M prepared` running the SQL the Postgres store issues for each
  workload, at the same concurrency (also pinned to the last core).

Usage: python3 bench/bench.py  (make bench builds the release binaries first)
Environment: BENCH_SECONDS (8), BENCH_WARMUP (2), BENCH_SCALE (10000000), BENCH_DEPTH (1000000),
BENCH_OUT (target/bench), BENCH_ONLY (`limits`: only the shared-limit and statement-bound
comparisons; `statement`: only the latter; `transfer`: only issue 18's; `changes`: only issue
19's), BENCH_LIMITS_ROUNDS (12), BENCH_LIMITS_SECONDS (4), BENCH_TRANSFER_VISITORS (1000000),
BENCH_TRANSFER_ROUNDS (3), BENCH_BASE_COMMIT (the commit before issue 19, whose binary is built
in a worktree under target/bench-base), BENCH_FEED_CHANGES (1000000), BENCH_WEBHOOK_SECONDS (30),
BENCH_WEBHOOK_RATE (1000 changes/s), BENCH_DELIVERIES (60000).
"""

import contextlib
import http.client
import json
import os
import platform
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RELEASE = ROOT / "target" / "release"
SECONDS = int(os.environ.get("BENCH_SECONDS", "8"))
WARMUP = int(os.environ.get("BENCH_WARMUP", "2"))
SCALE = int(os.environ.get("BENCH_SCALE", "10000000"))
DEPTH = int(os.environ.get("BENCH_DEPTH", "1000000"))
FOOTPRINT = 1_000_000  # visitors in the in-memory store whose resident memory is reported
OUT = Path(os.environ.get("BENCH_OUT", ROOT / "target" / "bench"))
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
TOKEN = "bench-" + secrets.token_hex(12)
SEEDED = 10_000
HEADLINE = 32
SWEEP = [1, 8, 32, 128]
LOAD_CORE = str(os.cpu_count() - 1)
WORKLOADS = ["show", "create", "update", "mix"]
# The service as deployed: metrics on, and a per-token rate limit that is on but far above what
# the load sends (one token here; the default of 100/s would refuse most of it).
SERVICE_ENV = {"VISITORS_TOKENS": f"administrator:{TOKEN}", "VISITORS_RATE_LIMIT": "1000000/s"}
# The same with both off, to price them (rounds alternate, medians compared).
BARE_ENV = dict(SERVICE_ENV, VISITORS_RATE_LIMIT="off", VISITORS_AUTH_FAILURE_LIMIT="off",
                VISITORS_METRICS_BIND="off")
OPERATIONS_ROUNDS = 3
# Pairs of runs (reference, service) whose median gives the headline Show ratios.
HEADLINE_ROUNDS = 3
# Alternating rounds of each side of the issue-17 comparisons, medians compared.
LIMITS_ROUNDS = int(os.environ.get("BENCH_LIMITS_ROUNDS", "12"))
LIMITS_SECONDS = int(os.environ.get("BENCH_LIMITS_SECONDS", "4"))


def log(*parts):
    print("[bench]", *parts, flush=True)


def psql(sql, url=PG_ADMIN):
    subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-qc", sql], check=True,
                   stdout=subprocess.DEVNULL)


def db_url(name):
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


class Server:
    """A server binary on a free port, its log in a file, with its /proc status at hand."""

    def __init__(self, binary, env=None, name="server"):
        self.binary = binary
        self.env = env or {}
        self.name = name

    def __enter__(self):
        OUT.mkdir(parents=True, exist_ok=True)
        self.log_path = OUT / f"{self.name}.log"
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "VISITORS_TOKENS")}
        env.update({"VISITORS_BIND": "127.0.0.1:0", "VISITORS_LOG_FORMAT": "json"})
        env.update(self.env)
        self.log_file = open(self.log_path, "w")
        self.process = subprocess.Popen([str(self.binary)], env=env, stdout=self.log_file,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            match = re.search(r"listening on (http://\S+)", self.log_path.read_text())
            if match:
                self.base = match.group(1)
                return self
            if self.process.poll() is not None:
                sys.exit(f"{self.name} exited: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.05)
        sys.exit(f"{self.name} did not start")

    def memory_kib(self):
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        field = lambda name: int(re.search(rf"^{name}:\s+(\d+)", status, re.M).group(1))
        return field("VmRSS"), field("VmHWM")

    def __exit__(self, *exc):
        self.process.terminate()
        self.process.wait(timeout=40)
        self.log_file.close()
        # A run logs a line per request (gigabytes); keep the log only when something failed.
        if exc[0] is None and not os.environ.get("BENCH_KEEP_LOGS"):
            self.log_path.unlink(missing_ok=True)


def wrk(base, mode, connections, seconds, ids=SEEDED, token=TOKEN, cursor=""):
    env = dict(os.environ, BENCH_MODE=mode, BENCH_IDS=str(ids), BENCH_CURSOR=cursor)
    if token:
        env["BENCH_TOKEN"] = token
    command = ["taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
               "--timeout", "10s", "-s", str(ROOT / "bench" / "bench.lua"), base]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    match = re.search(r"^BENCH (\{.*\})$", result.stdout, re.M)
    if not match:
        sys.exit(f"wrk failed: {result.stdout}{result.stderr}")
    data = json.loads(match.group(1))
    errors = sum(v for k, v in data.items() if k.startswith("errors_"))
    if errors:
        sys.exit(f"wrk saw {errors} errors ({data}) in {mode} at c={connections}")
    return {
        "rps": data["requests"] / (data["duration_us"] / 1e6),
        "p50_ms": data["p50_us"] / 1000,
        "p99_ms": data["p99_us"] / 1000,
        "requests": data["requests"],
    }


def seed_over_http(base, count):
    """Creates visitors 1..count through the API (one keep-alive connection)."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    for n in range(1, count + 1):
        body = json.dumps({"name": f"Visitor {n}", "email": f"visitor{n}@example.com",
                           "phone": "+65 12345678", "notes": "This visitor is really cool.",
                           "external_id": f"ext-{n}"})
        conn.request("POST", "/api/v2/chat/visitors", body=body, headers=headers)
        response = conn.getresponse()
        created = json.loads(response.read())
        if response.status != 201 or created["id"] != n:
            sys.exit(f"seeding visitor {n} failed: {response.status} {created}")
    conn.close()


def median_run(runs):
    """The run with the median requests per second (its latencies with it)."""
    runs = sorted(runs, key=lambda run: run["rps"])
    return runs[len(runs) // 2]


def measure(base, mode, connections, **kwargs):
    wrk(base, mode, connections, WARMUP, **kwargs)
    return wrk(base, mode, connections, SECONDS, **kwargs)


PGBENCH_SCRIPTS = {
    "feed": ["feed.sql"],
    "show": ["show.sql"],
    "list": ["list.sql"],
    "create": ["create.sql"],
    "create_idem": ["create_idem.sql"],
    "update": ["update.sql"],
    "mix": ["show.sql@80", "update.sql@20"],
}


# The shared server allows 100 connections, and the service keeps its pool of 20 open while
# pgbench runs beside it; pgbench at a higher concurrency runs at this many.
PGBENCH_MAX_CLIENTS = 75


def pgbench(url, workload, connections, seconds, ids=SEEDED, after=0, defines=()):
    connections = min(connections, PGBENCH_MAX_CLIENTS)
    with tempfile.TemporaryDirectory() as logs:
        scripts = [arg for name in PGBENCH_SCRIPTS[workload]
                   for arg in ("-f", str(ROOT / "bench" / "pgbench" / name))]
        command = ["taskset", "-c", LOAD_CORE, "pgbench", "-M", "prepared", "-n",
                   "-c", str(connections), "-j", "1", "-T", str(seconds), "-D", f"ids={ids}",
                   "-D", f"after={after}", *[arg for d in defines for arg in ("-D", d)],
                   "-l", "--log-prefix", f"{logs}/pgbench", *scripts, url]
        # The session settings the service's store gives each connection (no JIT).
        env = dict(os.environ, PGOPTIONS="-c jit=off")
        result = subprocess.run(command, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            sys.exit(f"pgbench failed: {result.stdout}{result.stderr}")
        latencies = []
        for log_file in Path(logs).glob("pgbench*"):
            for line in log_file.read_text().splitlines():
                latencies.append(int(line.split()[2]))
    tps = float(re.search(r"tps = ([\d.]+)", result.stdout).group(1))
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] / 1000
    return {"rps": tps, "p50_ms": pick(0.50), "p99_ms": pick(0.99), "requests": len(latencies)}


def measure_pgbench(url, workload, connections, ids=SEEDED, after=0):
    pgbench(url, workload, connections, WARMUP, ids, after)
    return pgbench(url, workload, connections, SECONDS, ids, after)


SEED_SQL = """
INSERT INTO visitors (name, email, phone, notes, external_id, banned, created)
SELECT 'Visitor ' || n, 'visitor' || n || '@example.com', '+65 12345678',
       'This visitor is really cool.', 'ext-' || n, false, date_trunc('second', now())
FROM generate_series(1, {count}) AS n;
ANALYZE visitors;
"""


def pg_database(count, service_binary):
    """A fresh database migrated by the service itself, then seeded with `count` visitors."""
    name = "bench_" + secrets.token_hex(5)
    psql(f"CREATE DATABASE {name}")
    url = db_url(name)
    with Server(service_binary, dict(SERVICE_ENV, DATABASE_URL=url), name="migrate"):
        pass
    psql(SEED_SQL.format(count=count), url)
    return name, url


def drop(name):
    psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def v2_pairs(base):
    """v2's own ratios, each the median of HEADLINE_ROUNDS back-to-back pairs: Show answered 304
    by If-None-Match against Show with an If-None-Match that never matches (200 and the body:
    the same request to wrk), and Create with an Idempotency-Key against Create."""
    runs = {name: [] for name in ("show304", "show", "create_idem", "create")}
    for _ in range(HEADLINE_ROUNDS):
        runs["show304"].append(measure(base, "show304", HEADLINE))
        runs["show"].append(measure(base, "show_stale", HEADLINE))
        runs["create_idem"].append(measure(base, "create_idem", HEADLINE))
        runs["create"].append(measure(base, "create", HEADLINE))
    return {name: median_run(found) for name, found in runs.items()}


class RedisServer:
    """A redis-server of the benchmark's own on a free loopback port."""

    def __enter__(self):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True,
                             text=True).stdout.strip() != "PONG":
            if time.monotonic() > deadline:
                sys.exit("redis-server did not start")
            time.sleep(0.05)
        self.url = f"redis://127.0.0.1:{self.port}"
        return self

    def __exit__(self, *exc):
        self.process.kill()
        self.process.wait()


def alternate(service, sides, seed, ids=SEEDED):
    """Show at the headline concurrency on each side (label -> environment): both servers run
    at once, each warmed up, then short runs alternate between them (ABBA...), so a drift of
    the machine's speed — a shared VM's runs differ by a third from minute to minute — falls on
    both sides of each pair alike. Returns the runs of each side, pair by pair."""
    runs = {label: [] for label in sides}
    with contextlib.ExitStack() as stack:
        servers = {label: stack.enter_context(Server(service, env, name=f"limits-{label}"))
                   for label, env in sides.items()}
        for server in servers.values():
            if seed:
                seed_over_http(server.base, ids)
            wrk(server.base, "show", HEADLINE, WARMUP, ids=ids)
        for round_number in range(LIMITS_ROUNDS):
            order = list(servers.items())
            if round_number % 2:
                order.reverse()
            for label, server in order:
                before = cpu_seconds(server.process.pid) + cpu_seconds_of("postgres")
                run = wrk(server.base, "show", HEADLINE, LIMITS_SECONDS, ids=ids)
                spent = cpu_seconds(server.process.pid) + cpu_seconds_of("postgres") - before
                run["cpu_us"] = spent * 1e6 / run["requests"]
                runs[label].append(run)
    return runs


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """User and system CPU time of a process and its reaped children, in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    # utime, stime, cutime, cstime are fields 14-17 of stat(5); here counted after the name.
    return sum(int(v) for v in fields[11:15]) / TICKS


def cpu_seconds_of(name):
    """CPU time of every process named `name` (the database server's backends)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    total += cpu_seconds(entry.name)
            except (FileNotFoundError, ProcessLookupError):
                continue
    return total


def limits_comparison(service):
    """Issue 17: the limits counted in Redis against the local limiter (memory and
    Postgres), and Postgres with the statement timeout against none."""
    notes = {}
    only_statement = os.environ.get("BENCH_ONLY") == "statement"
    with RedisServer() as redis:
        shared = dict(SERVICE_ENV, VISITORS_RATE_LIMIT_STORE=redis.url)
        if not only_statement:
            notes["memory"] = alternate(service, {"local": SERVICE_ENV, "redis": shared}, True,
                                        1000)
        name, url = pg_database(SEEDED, service)
        try:
            pg = dict(SERVICE_ENV, DATABASE_URL=url)
            if not only_statement:
                notes["postgres"] = alternate(
                    service, {"local": pg, "redis": dict(shared, DATABASE_URL=url)}, False)
            notes["statement"] = alternate(
                service, {"unbounded": dict(pg, VISITORS_DB_STATEMENT_TIMEOUT="0"),
                          "bounded": pg}, False)
        finally:
            drop(name)
    log("shared limits and statement bound priced")
    return notes


def limits_lines(notes):
    med = lambda runs: statistics.median(r["rps"] for r in runs)
    rows = [
        ("in-memory Show, limits in Redis / the local limiter", "memory", "redis", "local", 0.8),
        ("Postgres Show, limits in Redis / the local limiter", "postgres", "redis", "local", 0.9),
        ("Postgres Show, statement timeout 5 s and lifetime 1800 s / no statement timeout",
         "statement", "bounded", "unbounded", 0.97),
    ]
    lines = [f"Issue 17, Show at {HEADLINE} connections: both servers up at once, "
             f"{LIMITS_ROUNDS} pairs of {LIMITS_SECONDS} s runs alternating between them (ABBA); "
             "the ratio is the median of the pairs' ratios (every pair's ratio in brackets), "
             "requests/s the median of each side's runs:", "",
             "| measure | service req/s | reference req/s | ratio | goal | met |",
             "| --- | ---: | ---: | ---: | --- | --- |"]
    for title, key, side, reference, goal in rows:
        if key not in notes:
            continue
        a, b = notes[key][side], notes[key][reference]
        pairs = [x["rps"] / y["rps"] for x, y in zip(a, b)]
        ratio = statistics.median(pairs)
        each = ", ".join(f"{r:.2f}" for r in pairs)
        lines.append(f"| {title} | {med(a):.0f} | {med(b):.0f} | {ratio:.3f} ({each}) | "
                     f"≥ {goal} | {'yes' if ratio >= goal else '**no**'} |")
    lines += ["", "The same runs by CPU time per request (the service's and the database server's "
              "together, from /proc; a backend that ends during a run is not counted): the "
              "reference's over the service's, so a ratio below 1 is the share the service costs "
              "more. Less disturbed by a shared machine's neighbours than requests/s:", "",
              "| measure | service µs/request | reference µs/request | ratio |",
              "| --- | ---: | ---: | ---: |"]
    for title, key, side, reference, _ in rows:
        if key not in notes:
            continue
        a, b = notes[key][side], notes[key][reference]
        cpu = lambda runs: statistics.median(r["cpu_us"] for r in runs)
        pairs = [y["cpu_us"] / x["cpu_us"] for x, y in zip(a, b)]
        each = ", ".join(f"{r:.2f}" for r in pairs)
        lines.append(f"| {title} | {cpu(a):.1f} | {cpu(b):.1f} | "
                     f"{statistics.median(pairs):.3f} ({each}) |")
    return lines


# Issue 18's comparisons.
TRANSFER_VISITORS = int(os.environ.get("BENCH_TRANSFER_VISITORS", "1000000"))
TRANSFER_ROUNDS = int(os.environ.get("BENCH_TRANSFER_ROUNDS", "3"))
COLUMNS = "id, name, email, phone, notes, external_id, banned, created"
BULK_LINES = 10_000
BULK_REQUESTS = 10


def timed(command, env=None):
    """Runs a command to its end: (seconds, peak resident memory in KiB)."""
    started = time.monotonic()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    stderr = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{command[0]} failed: {stderr[-2000:]}")
    return seconds, usage.ru_maxrss


def empty_database(service):
    """A fresh database with the service's schema and no visitor."""
    return pg_database(0, service)


def with_url(url):
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["DATABASE_URL"] = url
    return env


def post_ndjson(base, body):
    host, port = base.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=300)
    conn.request("POST", "/api/v2/chat/visitors/import", body=body,
                 headers={"Authorization": f"Bearer {TOKEN}",
                          "Content-Type": "application/x-ndjson"})
    response = conn.getresponse()
    answer = response.read()
    conn.close()
    if response.status != 200 or b'"failed":0}}' not in answer[-100:]:
        sys.exit(f"bulk import failed: {response.status} {answer[-300:]}")


def transfer_comparison(service):
    """Issue 18: export and import against psql's \\copy of the same rows, their peak memory,
    the bulk import over HTTP against Create, create_or_update against Update."""
    notes = {"export": [], "copy_out": [], "import": [], "copy_in": []}
    OUT.mkdir(parents=True, exist_ok=True)
    exported, csv = OUT / "transfer.ndjson", OUT / "transfer.csv"
    source, source_url = pg_database(TRANSFER_VISITORS, service)
    try:
        for _ in range(TRANSFER_ROUNDS):
            notes["export"].append(timed([str(service), "export", "--output", str(exported)],
                                         with_url(source_url)))
            notes["copy_out"].append(timed(
                ["psql", source_url, "-qc",
                 f"\\copy (SELECT {COLUMNS} FROM visitors ORDER BY id) TO '{csv}' (FORMAT csv)"]))
        for _ in range(TRANSFER_ROUNDS):
            for side in ("import", "copy_in"):
                name, url = empty_database(service)
                try:
                    if side == "import":
                        notes[side].append(timed([str(service), "import", str(exported)],
                                                 with_url(url)))
                    else:
                        notes[side].append(timed(
                            ["psql", url, "-qc",
                             f"\\copy visitors ({COLUMNS}) FROM '{csv}' (FORMAT csv)"]))
                finally:
                    drop(name)
    finally:
        drop(source)
        exported.unlink(missing_ok=True)
        csv.unlink(missing_ok=True)
    log("export and import priced")

    name, url = pg_database(SEEDED, service)
    try:
        env = dict(SERVICE_ENV, DATABASE_URL=url)
        notes["bulk"], notes["create"], notes["upsert"], notes["update"] = [], [], [], []
        with Server(service, env, name="transfer-http") as server:
            for round_number in range(TRANSFER_ROUNDS):
                bodies = ["".join(json.dumps({"external_id": f"bulk-{round_number}-{r}-{n}",
                                              "name": f"Visitor {n}", "email": f"v{n}@example.com",
                                              "phone": "+65 12345678",
                                              "notes": "This visitor is really cool."}) + "\n"
                                  for n in range(BULK_LINES)).encode()
                          for r in range(BULK_REQUESTS)]
                started = time.monotonic()
                for body in bodies:
                    post_ndjson(server.base, body)
                notes["bulk"].append(BULK_LINES * BULK_REQUESTS / (time.monotonic() - started))
                notes["create"].append(measure(server.base, "create", HEADLINE)["rps"])
                notes["update"].append(measure(server.base, "update", HEADLINE)["rps"])
                notes["upsert"].append(measure(server.base, "upsert", HEADLINE)["rps"])
    finally:
        drop(name)
    log("bulk import and create_or_update priced")
    return notes


def transfer_lines(notes):
    med = statistics.median
    rate = lambda runs: TRANSFER_VISITORS / med(seconds for seconds, _ in runs)
    peak = lambda runs: max(kib for _, kib in runs) / 1024
    each = lambda runs: ", ".join(f"{seconds:.1f}" for seconds, _ in runs)
    rows = []
    for title, ours, theirs in (("`visitor-http import` / `psql \\copy … FROM` (CSV)", "import", "copy_in"),
                                ("`visitor-http export` / `psql \\copy (SELECT …) TO` (CSV)", "export", "copy_out")):
        ratio = rate(notes[ours]) / rate(notes[theirs])
        rows.append(f"| {title}, {TRANSFER_VISITORS:,} visitors, seconds ({each(notes[ours])} / "
                    f"{each(notes[theirs])}) | {rate(notes[ours]):,.0f} rows/s | "
                    f"{rate(notes[theirs]):,.0f} rows/s | {ratio:.2f} | ≥ 0.5 | "
                    f"{'yes' if ratio >= 0.5 else '**no**'} |")
    for label in ("import", "export"):
        mib = peak(notes[label])
        rows.append(f"| resident memory of `visitor-http {label}`, {TRANSFER_VISITORS:,} visitors "
                    f"(peak of {len(notes[label])} runs) | {mib:.1f} MiB | — | — | < 64 MiB | "
                    f"{'yes' if mib < 64 else '**no**'} |")
    bulk, create = med(notes["bulk"]), med(notes["create"])
    rows.append(f"| bulk import over HTTP, {BULK_LINES:,} new visitors per request, one client / "
                f"Create at {HEADLINE} connections (Postgres) | {bulk:,.0f} rows/s | "
                f"{create:,.0f} rows/s | {bulk / create:.2f} | ≥ 5 | "
                f"{'yes' if bulk / create >= 5 else '**no**'} |")
    pairs = [u / p for u, p in zip(notes["upsert"], notes["update"])]
    ratio = med(pairs)
    rows.append(f"| `create_or_update` of an existing visitor / Update, Postgres, {HEADLINE} "
                f"connections (pairs: {', '.join(f'{r:.2f}' for r in pairs)}) | "
                f"{med(notes['upsert']):,.0f} req/s | {med(notes['update']):,.0f} req/s | "
                f"{ratio:.2f} | ≥ 0.8 | {'yes' if ratio >= 0.8 else '**no**'} |")
    return [f"Issue 18, median of {TRANSFER_ROUNDS} rounds (release build, logs to a file):", "",
            "| measure | service | reference | ratio | goal | met |",
            "| --- | ---: | ---: | ---: | --- | --- |", *rows]


BASE_COMMIT = os.environ.get("BENCH_BASE_COMMIT", "19cc80e4a16d43fbe9afc6c2f14d27f9bf511b5f")
FEED_CHANGES = int(os.environ.get("BENCH_FEED_CHANGES", "1000000"))
FEED_CONNECTIONS = 8
WEBHOOK_SECONDS = int(os.environ.get("BENCH_WEBHOOK_SECONDS", "30"))
WEBHOOK_RATE = int(os.environ.get("BENCH_WEBHOOK_RATE", "1000"))
DELIVERIES = int(os.environ.get("BENCH_DELIVERIES", "60000"))


def base_binary():
    """The service as it was at BASE_COMMIT (the commit before issue 19), built in release in a
    worktree of its own under target/bench-base (kept between runs)."""
    src = ROOT / "target" / "bench-base" / BASE_COMMIT[:12]
    binary = src / "target" / "release" / "visitor-http"
    if not binary.exists():
        if not src.exists():
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(src),
                            BASE_COMMIT], check=True, capture_output=True)
        log(f"building the service of {BASE_COMMIT[:12]} (release) in {src}")
        env = dict(os.environ, CARGO_TARGET_DIR=str(src / "target"))
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "visitor-http"], cwd=src,
                       env=env, check=True)
    return binary


def alternate_writes(sides, modes):
    """Each side (label -> (binary, environment)) on its own database, both servers up at once;
    for each mode, short runs alternate between them (ABBA...). Returns mode -> label -> runs."""
    runs = {mode: {label: [] for label in sides} for mode in modes}
    with contextlib.ExitStack() as stack:
        servers = {label: stack.enter_context(Server(binary, env, name=f"changes-{label}"))
                   for label, (binary, env) in sides.items()}
        for server in servers.values():
            for mode in modes:
                wrk(server.base, mode, HEADLINE, WARMUP)
        for round_number in range(LIMITS_ROUNDS):
            order = list(servers.items())
            if round_number % 2:
                order.reverse()
            for mode in modes:
                for label, server in order:
                    runs[mode][label].append(wrk(server.base, mode, HEADLINE, LIMITS_SECONDS))
    return runs


def receiver_stats(base):
    host, port = base.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("GET", "/stats")
    stats = json.loads(conn.getresponse().read())
    conn.close()
    return stats


def register_webhook(base, url):
    host, port = base.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("POST", "/api/v2/chat/webhooks", body=json.dumps({"url": url}),
                 headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    response = conn.getresponse()
    answer = response.read()
    conn.close()
    if response.status != 201:
        sys.exit(f"registering the webhook failed: {response.status} {answer}")


def until_received(receiver, count, seconds):
    deadline = time.monotonic() + seconds
    while (stats := receiver_stats(receiver.base))["count"] < count:
        if time.monotonic() > deadline:
            sys.exit(f"the receiver got {stats['count']} of {count} deliveries in {seconds} s")
        time.sleep(0.2)
    return stats


def changes_comparison(service):
    """Issue 19: Create and Update with the change log written against the binary of the
    commit before; a feed page deep in a log of FEED_CHANGES against the first page and against
    pgbench running the same SELECT; the webhook delivery lag at WEBHOOK_RATE changes/s; the
    deliveries per second with a receiver answering at once. BENCH_CHANGES_PARTS picks some."""
    notes = {}
    parts = os.environ.get("BENCH_CHANGES_PARTS", "writes,feed,webhooks").split(",")
    for part, measure_part in (("writes", writes_comparison), ("feed", feed_comparison),
                               ("webhooks", webhook_comparison)):
        if part in parts:
            names = []
            try:
                notes.update(measure_part(service, names))
            finally:
                for name in names:
                    drop(name)
    return notes


def writes_comparison(service, names):
    base = base_binary()
    sides = {}
    for label, binary in (("before", base), ("change_log", service)):
        name, url = pg_database(SEEDED, binary)
        names.append(name)
        sides[label] = (binary, dict(SERVICE_ENV, DATABASE_URL=url))
    writes = alternate_writes(sides, ["create", "update"])
    log("create and update priced against the commit before")
    return {"writes": writes}


def feed_comparison(service, names):
    name, url = pg_database(FEED_CHANGES, service)
    names.append(name)
    transaction, first, last = subprocess.run(
        ["psql", url, "-At", "-F", " ", "-c",
         "SELECT transaction::text, min(sequence), max(sequence) FROM visitor_changes GROUP BY 1"],
        capture_output=True, text=True, check=True).stdout.split()
    after = int(last) - 1000  # the last page of 1,000: FEED_CHANGES - 1000 changes deep
    cursor = subprocess.run([str(RELEASE / "bench-cursor"), "feed", transaction, str(after)],
                            capture_output=True, text=True, check=True).stdout.strip()
    for table in ("visitor_changes", "visitors"):
        psql(f"VACUUM ANALYZE {table}", url)
    feed = {"first": [], "deep": [], "pgbench": []}
    with Server(service, dict(SERVICE_ENV, DATABASE_URL=url), name="changes-feed") as server:
        for page in ("", cursor):
            wrk(server.base, "feed", FEED_CONNECTIONS, WARMUP, cursor=page)
        for round_number in range(LIMITS_ROUNDS // 2):
            order = [("first", ""), ("deep", cursor)]
            if round_number % 2:
                order.reverse()
            for label, page in order:
                feed[label].append(wrk(server.base, "feed", FEED_CONNECTIONS, LIMITS_SECONDS, cursor=page))
            feed["pgbench"].append(pgbench(url, "feed", FEED_CONNECTIONS, LIMITS_SECONDS,
                                           defines=(f"transaction={transaction}", f"sequence={after}")))
    log("feed pages measured")
    return {"feed": feed, "feed_changes": int(last) - int(first) + 1}


def webhook_comparison(service, names):
    notes = {}
    name, url = pg_database(0, service)
    names.append(name)
    with Server(RELEASE / "webhook-receiver", name="webhook-receiver") as receiver, \
            Server(service, dict(SERVICE_ENV, DATABASE_URL=url), name="changes-webhooks") as server:
        register_webhook(server.base, receiver.base + "/hook")
        # WEBHOOK_RATE changes a second: an import of a tenth of them every 100 ms.
        batch = WEBHOOK_RATE // 10
        body = ("\n".join(['{"name":"Visitor"}'] * batch) + "\n").encode()
        started = time.monotonic()
        for tick in range(WEBHOOK_SECONDS * 10):
            pause = started + tick / 10 - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            post_ndjson(server.base, body)
        sent_for = time.monotonic() - started
        lag = until_received(receiver, batch * WEBHOOK_SECONDS * 10, 120)
        lag["sent_for"] = sent_for
        notes["lag"] = lag
        log("delivery lag measured")

        reset = http.client.HTTPConnection(*receiver.base.removeprefix("http://").rsplit(":", 1), timeout=30)
        reset.request("POST", "/reset")
        reset.getresponse().read()
        reset.close()
        body = ("\n".join(['{"name":"Visitor"}'] * 10_000) + "\n").encode()
        for _ in range(DELIVERIES // 10_000):
            post_ndjson(server.base, body)
        throughput = until_received(receiver, DELIVERIES, 300)
        throughput["rate"] = throughput["count"] / (throughput["last"] - throughput["first"])
        notes["throughput"] = throughput
        notes["service_rss_kib"] = server.memory_kib()
        log("deliveries per second measured")
    return notes


def changes_lines(notes):
    """The table of what changes_comparison measured (the parts it measured)."""
    med = statistics.median
    pairs_text = lambda pairs: ", ".join(f"{r:.2f}" for r in pairs)
    met = lambda ok: "yes" if ok else "**no**"
    rows = []
    for mode, title in (("create", "Create"), ("update", "Update")) if "writes" in notes else ():
        runs = notes["writes"][mode]
        pairs = [ours["rps"] / theirs["rps"] for ours, theirs in zip(runs["change_log"], runs["before"])]
        ratio = med(pairs)
        rows.append(f"| {title} on Postgres, {HEADLINE} connections, change log written (no webhook) / "
                    f"the binary of {BASE_COMMIT[:7]} (pairs: {pairs_text(pairs)}) | "
                    f"{med(r['rps'] for r in runs['change_log']):,.0f} req/s | "
                    f"{med(r['rps'] for r in runs['before']):,.0f} req/s | {ratio:.3f} | ≥ 0.9 | "
                    f"{met(ratio >= 0.9)} |")
    if "feed" in notes:
        feed = notes["feed"]
        deep = med(r["rps"] for r in feed["deep"])
        for label, reference, goal, title in (
                ("first", "the first page", 0.9,
                 f"feed page of 1,000, {notes['feed_changes'] - 1000:,} changes deep / the first page"),
                ("pgbench", "pgbench", 0.5, "feed page (deep) / pgbench running the same SELECT")):
            pairs = [d["rps"] / r["rps"] for d, r in zip(feed["deep"], feed[label])]
            ratio = med(pairs)
            rows.append(f"| {title}, {FEED_CONNECTIONS} connections (pairs: {pairs_text(pairs)}) | "
                        f"{deep:,.0f} pages/s | {med(r['rps'] for r in feed[label]):,.0f} pages/s | "
                        f"{ratio:.3f} | ≥ {goal} | {met(ratio >= goal)} |")
    if "lag" in notes:
        lag = notes["lag"]
        rows.append(f"| webhook delivery lag, change to the receiver's 2xx, {WEBHOOK_RATE:,} changes/s for "
                    f"{WEBHOOK_SECONDS} s (sent in {lag['sent_for']:.1f} s), one instance: p50 "
                    f"{lag['lag_p50_ms']:.0f} ms, max {lag['lag_max_ms']:.0f} ms | p99 {lag['lag_p99_ms']:.0f} ms "
                    f"| — | — | p99 < 1 s | {met(lag['lag_p99_ms'] < 1000)} |")
        rate = notes["throughput"]["rate"]
        rows.append(f"| deliveries per second, one instance, receiver answering at once "
                    f"({notes['throughput']['count']:,} deliveries) | {rate:,.0f}/s | — | — | ≥ 2,000 | "
                    f"{met(rate >= 2000)} |")
    return ["Issue 19 (release build, logs to a file; ratios are medians of alternating pairs):", "",
            "| measure | service | reference | ratio | goal | met |",
            "| --- | ---: | ---: | ---: | --- | --- |", *rows]


def main():
    service = RELEASE / "visitor-http"
    if os.environ.get("BENCH_ONLY") in ("limits", "statement"):
        text = "\n".join(limits_lines(limits_comparison(service)))
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "limits.md").write_text(text + "\n")
        print(text)
        return
    if os.environ.get("BENCH_ONLY") == "changes":
        text = "\n".join(changes_lines(changes_comparison(service)))
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "changes.md").write_text(text + "\n")
        print(text)
        return
    if os.environ.get("BENCH_ONLY") == "transfer":
        text = "\n".join(transfer_lines(transfer_comparison(service)))
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "transfer.md").write_text(text + "\n")
        print(text)
        return
    ceiling = RELEASE / "framework-ceiling"
    footprint = RELEASE / "memory-footprint"
    for binary in (service, ceiling, footprint, RELEASE / "bench-cursor"):
        if not binary.exists():
            sys.exit(f"{binary} is missing: run make bench (it builds the release binaries)")
    results = []  # (workload, store, concurrency, result, ceiling result)
    notes = {}

    log(f"machine: {platform.machine()}, {os.cpu_count()} cores; load generator pinned to core {LOAD_CORE}")
    log(f"each run: {WARMUP}s warm-up, then {SECONDS}s measured")

    # Each workload runs on the framework ceiling and then on the service, back to back, so a
    # ratio compares two runs a few seconds apart; Show at the headline concurrency, the goal's
    # own ratio, takes the median of HEADLINE_ROUNDS such pairs.
    framework = {}
    with Server(ceiling, name="framework-ceiling") as bare, \
            Server(service, SERVICE_ENV, name="memory") as server:
        seed_over_http(server.base, SEEDED)
        for w in WORKLOADS:
            rounds = HEADLINE_ROUNDS if w == "show" else 1
            pairs = [(measure(bare.base, w, HEADLINE, token=None), measure(server.base, w, HEADLINE))
                     for _ in range(rounds)]
            framework[(w, HEADLINE)] = median_run(pair[0] for pair in pairs)
            results.append((w, "memory", HEADLINE, median_run(pair[1] for pair in pairs),
                            framework[(w, HEADLINE)]))
        for c in SWEEP:
            if c != HEADLINE:
                framework[("show", c)] = measure(bare.base, "show", c, token=None)
                results.append(("show", "memory", c, measure(server.base, "show", c),
                                framework[("show", c)]))
        notes["memory_v2"] = v2_pairs(server.base)
        notes["memory_rss_kib"] = server.memory_kib()
        log("memory store and framework ceiling measured")

    # What metrics and rate limiting cost per request: in-memory Show at the headline
    # concurrency, both on (limit not reached) against both off, alternating rounds.
    operations = {"on": [], "off": []}
    for _ in range(OPERATIONS_ROUNDS):
        for label, env in (("off", BARE_ENV), ("on", SERVICE_ENV)):
            with Server(service, env, name=f"memory-operations-{label}") as server:
                seed_over_http(server.base, 1000)
                operations[label].append(measure(server.base, "show", HEADLINE, ids=1000))
    notes["operations"] = operations
    log("metrics and rate limiting priced")

    name, url = pg_database(SEEDED, service)
    try:
        env = dict(SERVICE_ENV, DATABASE_URL=url)
        with Server(service, env, name="postgres") as server:
            # As above: pgbench and the service back to back for each workload.
            for w in WORKLOADS:
                rounds = HEADLINE_ROUNDS if w == "show" else 1
                pairs = [(measure_pgbench(url, w, HEADLINE), measure(server.base, w, HEADLINE))
                         for _ in range(rounds)]
                results.append((w, "postgres", HEADLINE, median_run(pair[1] for pair in pairs),
                                median_run(pair[0] for pair in pairs)))
            for c in SWEEP:
                if c != HEADLINE:
                    database = measure_pgbench(url, "show", c)
                    results.append(("show", "postgres", c, measure(server.base, "show", c), database))
            notes["postgres_v2"] = v2_pairs(server.base)
            notes["postgres_rss_kib"] = server.memory_kib()
        notes["pgbench_create_idem"] = measure_pgbench(url, "create_idem", HEADLINE)
        log("postgres store and database ceiling measured")
    finally:
        drop(name)

    show_10k = next(r for (w, s, c, r, _) in results if (w, s, c) == ("show", "postgres", HEADLINE))
    name, url = pg_database(SCALE, service)
    try:
        cursor = subprocess.run([str(RELEASE / "bench-cursor"), str(DEPTH)], capture_output=True,
                                text=True, check=True).stdout.strip()
        with Server(service, dict(SERVICE_ENV, DATABASE_URL=url), name="postgres-scale") as server:
            scale = measure(server.base, "show", HEADLINE, ids=SCALE)
            # Each page position on pgbench and then on the service, back to back.
            lists = {}
            for where, after, page in (("first", 0, ""), ("deep", DEPTH, cursor)):
                lists[f"pgbench_{where}"] = measure_pgbench(url, "list", HEADLINE, after=after)
                lists[where] = measure(server.base, "list", HEADLINE, cursor=page)
        notes["lists"] = lists
    finally:
        drop(name)
    log("scale measured")

    notes["limits"] = limits_comparison(service)
    notes["transfer"] = transfer_comparison(service)
    notes["changes"] = changes_comparison(service)

    result = subprocess.run([str(footprint), str(FOOTPRINT)], capture_output=True, text=True,
                            check=True)
    notes["footprint"] = json.loads(result.stdout)

    report(results, framework, scale, show_10k, notes)


def goals(results, scale, show_10k, notes, operations_ratio):
    """Issue 11's goals, each against what this run measured."""
    run = {(w, s, c): (r, ceil) for (w, s, c, r, ceil) in results}
    ratio = lambda key: run[key][0]["rps"] / run[key][1]["rps"]
    lists = notes["lists"]
    v2 = {store: notes[f"{store}_v2"] for store in ("memory", "postgres")}
    of = lambda a, b: a["rps"] / b["rps"]
    rows = [
        ("in-memory Show / framework ceiling (access log on, to a file)", "≥ 0.9",
         [ratio(("show", "memory", HEADLINE))], lambda v: v >= 0.9),
        ("Postgres Show / pgbench, same SQL and concurrency", "≥ 0.5",
         [ratio(("show", "postgres", HEADLINE))], lambda v: v >= 0.5),
        ("Postgres Create / pgbench", "≥ 0.6", [ratio(("create", "postgres", HEADLINE))],
         lambda v: v >= 0.6),
        ("Postgres Update / pgbench", "≥ 0.6", [ratio(("update", "postgres", HEADLINE))],
         lambda v: v >= 0.6),
        (f"List, 100 per page, Postgres: a page {DEPTH:,} deep / the first page", "≥ 0.9",
         [of(lists["deep"], lists["first"])], lambda v: v >= 0.9),
        ("List / pgbench running the same keyset SELECT (first page; deep page)", "≥ 0.5",
         [of(lists["first"], lists["pgbench_first"]), of(lists["deep"], lists["pgbench_deep"])],
         lambda v: v >= 0.5),
        ("Show answered 304 / plain Show (memory; Postgres)", "≥ 0.95",
         [of(v2[s]["show304"], v2[s]["show"]) for s in ("memory", "postgres")], lambda v: v >= 0.95),
        ("Create with Idempotency-Key / Create (memory; Postgres)", "≥ 0.8",
         [of(v2[s]["create_idem"], v2[s]["create"]) for s in ("memory", "postgres")],
         lambda v: v >= 0.8),
        ("metrics and rate limiting on / both off", "≥ 0.95", [operations_ratio],
         lambda v: v >= 0.95),
        (f"Show p50 at {SCALE:,} visitors / at {SEEDED:,} (Postgres)", "≤ 1.25",
         [scale["p50_ms"] / show_10k["p50_ms"]], lambda v: v <= 1.25),
        ("service resident memory under load (Postgres), MiB", "< 64",
         [notes["postgres_rss_kib"][1] / 1024], lambda v: v < 64),
    ]
    p99s = [(f"{w} {s}", r["p99_ms"]) for (w, s, c), (r, _) in run.items() if c == HEADLINE]
    p99s += [(f"{name} {s}", v2[s][name]["p99_ms"]) for s in v2 for name in ("show304", "create_idem")]
    p99s += [(f"list {where}", lists[where]["p99_ms"]) for where in ("first", "deep")]
    p99s.append(("show postgres at scale", scale["p99_ms"]))
    over = [f"{name} {p99:.1f} ms" for name, p99 in p99s if p99 >= 10]
    lines = ["Against issue 11's goals (this run):", "",
             "| goal | target | measured | met |", "| --- | --- | --- | --- |"]
    for name, target, values, met in rows:
        shown = "; ".join(f"{v:.2f}" for v in values)
        lines.append(f"| {name} | {target} | {shown} | {'yes' if all(map(met, values)) else '**no**'} |")
    worst = max(p99s, key=lambda item: item[1])
    lines.append(f"| p99 at {HEADLINE} connections, every workload above | < 10 ms | "
                 f"highest: {worst[0]} {worst[1]:.2f} ms"
                 f"{'; over: ' + ', '.join(over) if over else ''} | {'yes' if not over else '**no**'} |")
    return lines


def report(results, framework, scale, show_10k, notes):
    lines = [
        "| workload | store | concurrency | requests/s | p50 ms | p99 ms | ceiling requests/s | ratio |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for workload, store, c, r, ceil in results:
        lines.append(f"| {workload} | {store} | {c} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
                     f"| {ceil['rps']:.0f} | {r['rps'] / ceil['rps']:.2f} |")
    lines += ["", "Ceilings on their own (framework: bare actix-web; database: pgbench -M prepared, "
              f"at most {PGBENCH_MAX_CLIENTS} clients: the server allows 100 connections and the "
              "service's pool of 20 stays open beside it):", "",
              "| ceiling | workload | concurrency | requests/s | p50 ms | p99 ms |",
              "| --- | --- | ---: | ---: | ---: | ---: |"]
    for (w, c), r in sorted(framework.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        lines.append(f"| framework | {w} | {c} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |")
    for workload, store, c, r, ceil in results:
        if store == "postgres":
            lines.append(f"| database | {workload} | {c} | {ceil['rps']:.0f} | {ceil['p50_ms']:.2f} | {ceil['p99_ms']:.2f} |")
    rss, peak = notes["postgres_rss_kib"]
    mem_rss, mem_peak = notes["memory_rss_kib"]
    footprint = notes["footprint"]
    lines += [
        "",
        f"- Show on Postgres at {SCALE:,} visitors: {scale['rps']:.0f} requests/s, p50 {scale['p50_ms']:.2f} ms, "
        f"p99 {scale['p99_ms']:.2f} ms; at {SEEDED:,}: p50 {show_10k['p50_ms']:.2f} ms "
        f"(ratio {scale['p50_ms'] / show_10k['p50_ms']:.2f}).",
        f"- Service resident memory under load on Postgres: {rss / 1024:.1f} MiB now, {peak / 1024:.1f} MiB peak.",
        f"- Service resident memory after the memory-store workloads: {mem_rss / 1024:.1f} MiB now, {mem_peak / 1024:.1f} MiB peak.",
        f"- In-memory store holding {footprint['visitors']:,} typical visitors: "
        f"{footprint['rss_after_kib'] / 1024:.1f} MiB resident ({footprint['store_kib'] / 1024:.1f} MiB for the store), "
        f"{footprint['peak_kib'] / 1024:.1f} MiB peak.",
    ]
    for store in ("memory", "postgres"):
        v2 = notes[f"{store}_v2"]
        lines.append(
            f"- {store}: Show answered 304 by If-None-Match {v2['show304']['rps']:.0f} requests/s "
            f"(p99 {v2['show304']['p99_ms']:.2f} ms) / Show with a tag that never matches {v2['show']['rps']:.0f}: "
            f"{v2['show304']['rps'] / v2['show']['rps']:.2f}; Create with Idempotency-Key "
            f"{v2['create_idem']['rps']:.0f} (p99 {v2['create_idem']['p99_ms']:.2f} ms) / Create "
            f"{v2['create']['rps']:.0f}: {v2['create_idem']['rps'] / v2['create']['rps']:.2f}.")
    idem_db = notes["pgbench_create_idem"]
    create_db = next(ceil for (w, s, c, _, ceil) in results if (w, s, c) == ("create", "postgres", HEADLINE))
    lines.append(
        f"- The database's own share: pgbench calling the idempotent create's function "
        f"{idem_db['rps']:.0f} transactions/s (p99 {idem_db['p99_ms']:.2f} ms) / pgbench's plain "
        f"insert {create_db['rps']:.0f}: {idem_db['rps'] / create_db['rps']:.2f}; the service's "
        f"idempotent create / pgbench's: {notes['postgres_v2']['create_idem']['rps'] / idem_db['rps']:.2f}.")
    lists = notes["lists"]
    lines.append(
        f"- List, 100 per page, Postgres with {SCALE:,} visitors, {HEADLINE} connections: first page "
        f"{lists['first']['rps']:.0f} requests/s (p99 {lists['first']['p99_ms']:.2f} ms), a page "
        f"{DEPTH:,} deep {lists['deep']['rps']:.0f} (p99 {lists['deep']['p99_ms']:.2f} ms): "
        f"{lists['deep']['rps'] / lists['first']['rps']:.2f}; pgbench running the same keyset "
        f"SELECT: first {lists['pgbench_first']['rps']:.0f}, deep {lists['pgbench_deep']['rps']:.0f}; "
        f"service / pgbench: first {lists['first']['rps'] / lists['pgbench_first']['rps']:.2f}, "
        f"deep {lists['deep']['rps'] / lists['pgbench_deep']['rps']:.2f}.")
    operations = notes["operations"]
    on = statistics.median(r["rps"] for r in operations["on"])
    off = statistics.median(r["rps"] for r in operations["off"])
    lines.append(
        f"- Metrics and rate limiting, in-memory Show at {HEADLINE} connections, median of "
        f"{OPERATIONS_ROUNDS} alternating rounds: both on (limit not reached) {on:.0f} requests/s, "
        f"both off {off:.0f} requests/s: ratio {on / off:.3f}, "
        f"{(1 / on - 1 / off) * 1e6:.2f} µs more per request."
    )
    lines += ["", *limits_lines(notes["limits"])]
    lines += ["", *transfer_lines(notes["transfer"])]
    lines += ["", *changes_lines(notes["changes"])]
    lines += ["", *goals(results, scale, show_10k, notes, on / off)]
    text = "\n".join(lines)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.md").write_text(text + "\n")
    print(text)
    log(f"written to {OUT / 'results.md'}")


if __name__ == "__main__":
    main()
