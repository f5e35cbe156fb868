"""Shared helpers for the end-to-end checks: start the real `visitor-http` binary on a free
loopback port, make databases, talk HTTP. Everything binds to 127.0.0.1 and stops by itself."""

import atexit
import contextlib
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("VISITOR_HTTP_BIN", ROOT / "target" / "debug" / "visitor-http"))
SHARED_PG = (os.environ.get("E2E_PG_ADMIN_URL") or os.environ.get("TEST_DATABASE_URL")
             or "postgres://postgres@127.0.0.1:5432/postgres")
ADMIN_TOKEN = "e2e-admin-" + secrets.token_hex(8)
AGENT_TOKEN = "e2e-agent-" + secrets.token_hex(8)
# For load and fault checks, whose traffic from one token is far above the default limit of
# 100/s, and whose deliberate 401s from one address would pass the failed-authentication limit:
# the limits are checked on their own (tests/api/operations.rs).
UNLIMITED = {"VISITORS_RATE_LIMIT": "off", "VISITORS_AUTH_FAILURE_LIMIT": "off"}


def log(*parts):
    print("[e2e]", *parts, flush=True)


def fail(message):
    print(f"[e2e] FAIL: {message}", flush=True)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Service:
    """The visitor-http binary, started with the given database (or in memory)."""

    def __init__(self, database_url=None, extra_env=None, name="service"):
        self.database_url = database_url
        self.extra_env = extra_env or {}
        self.name = name
        self.process = None
        self.base = None
        self.port = None
        self.output = []

    def start(self, port=None):
        check(BINARY.exists(), f"{BINARY} is not built (cargo build -p visitor-http)")
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "VISITORS_TOKENS")}
        env.update({
            "VISITORS_BIND": f"127.0.0.1:{port or 0}",
            "VISITORS_TOKENS": f"administrator:{ADMIN_TOKEN},agent:{AGENT_TOKEN}",
            "VISITORS_LOG_FORMAT": "json",
            "VISITORS_DB_ACQUIRE_TIMEOUT": "2",
            "RUST_LOG": "warn",
        })
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        env.update(self.extra_env)
        self.process = subprocess.Popen(
            [str(BINARY)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                fail(f"{self.name} exited before listening: {''.join(self.output)}")
            self.output.append(line)
            if line.startswith("listening on http://"):
                self.base = line.strip().removeprefix("listening on ")
                self.port = int(self.base.rsplit(":", 1)[1])
                break
        else:
            fail(f"{self.name} did not print its listening line")
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def _drain(self):
        for line in self.process.stdout:
            self.output.append(line)

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def stop(self):
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=35)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode if self.process else None

    def rss_kib(self):
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class Client:
    """An HTTP/1.1 client for one service: a new connection per request, or one kept-alive
    connection for steady traffic (where the server never sees it idle). A failed request is
    reported, never retried."""

    def __init__(self, port, token=ADMIN_TOKEN, keep_alive=False):
        self.port = port
        self.token = token
        self.keep_alive = keep_alive
        self.conn = None

    def request(self, method, path, body=None, token="default", headers=None, raw=None):
        token = self.token if token == "default" else token
        all_headers = dict(headers or {})
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        payload = raw
        if body is not None:
            payload = json.dumps(body).encode()
            all_headers.setdefault("Content-Type", "application/json")
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            self.conn.request(method, path, body=payload, headers=all_headers)
            response = self.conn.getresponse()
            data = response.read()
        except Exception:
            self.close()
            raise
        if not self.keep_alive or response.getheader("Connection", "").lower() == "close":
            self.close()
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = None
        return response.status, {k.lower(): v for k, v in response.getheaders()}, parsed

    def close(self):
        if self.conn is not None:
            self.conn.close()
        self.conn = None


def psql(sql, url=SHARED_PG):
    subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-qc", sql], check=True,
                   stdout=subprocess.DEVNULL)


@contextlib.contextmanager
def temp_database():
    """A fresh database on the shared server, dropped afterwards; yields its URL."""
    name = "e2e_" + secrets.token_hex(6)
    psql(f"CREATE DATABASE {name}")
    try:
        yield SHARED_PG.rsplit("/", 1)[0] + "/" + name
    finally:
        psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def pg_bin(tool):
    """A PostgreSQL server tool (initdb, pg_ctl) from the newest installed version."""
    base = Path("/usr/lib/postgresql")
    versions = sorted((p for p in base.glob("*/bin") if (p / tool).exists()),
                      key=lambda p: int(p.parent.name)) if base.exists() else []
    if versions:
        return str(versions[-1] / tool)
    found = shutil.which(tool)
    check(found, f"{tool} not found: the database-fault check needs PostgreSQL's server tools")
    return found


class ThrowawayCluster:
    """A PostgreSQL cluster of its own, on a free loopback port; removed after.

    It lives in a fresh directory under the system's temporary folder, owned by the user the
    server runs as, not inside the checkout: a checkout may sit in a private directory (mode
    700, as a home directory is) that the postgres user cannot reach."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="visitors-e2e-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        # Removed on every way out: a normal end, a failed check, an exception, SIGINT, SIGTERM.
        atexit.register(self.remove)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    def _run(self, *args):
        subprocess.run(self.as_postgres + list(args), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def init(self):
        if self.as_postgres:
            # initdb refuses to run as root: the cluster belongs to the postgres user.
            shutil.chown(self.dir, "postgres", "postgres")
        self._run(pg_bin("initdb"), "-D", str(self.data), "-U", "postgres",
                  "--auth=trust", "--no-sync")
        return self

    def start(self):
        self._run(pg_bin("pg_ctl"), "-D", str(self.data), "-w", "-l", str(self.dir / "log"),
                  "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1", "start")

    def stop(self):
        self._run(pg_bin("pg_ctl"), "-D", str(self.data), "-w", "-m", "fast", "stop")

    def running(self):
        return (self.data / "postmaster.pid").exists()

    def remove(self):
        if self.running():
            with contextlib.suppress(subprocess.CalledProcessError):
                self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
