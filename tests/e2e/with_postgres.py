"""Runs `make <targets>` with a PostgreSQL server for the tests: the one at TEST_DATABASE_URL
when it answers; otherwise a throwaway cluster made for the run (initdb on a free loopback port,
in a folder of its own under the system's temporary folder, removed on every way out), after
installing Debian's `postgresql` when its server tools are missing.

    python3 tests/e2e/with_postgres.py make test-rust e2e
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from harness import ThrowawayCluster, log

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/postgres"


def answers(url):
    if not shutil.which("pg_isready"):
        return False
    return subprocess.run(["pg_isready", "-q", "-d", url]).returncode == 0


def server_tools_installed():
    return any(Path("/usr/lib/postgresql").glob("*/bin/initdb")) or shutil.which("initdb")


def install_postgresql():
    log("PostgreSQL's server tools are missing: installing Debian's postgresql")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "postgresql"], check=True, env=env,
                   stdout=subprocess.DEVNULL)


def main(command):
    url = os.environ.get("TEST_DATABASE_URL") or DEFAULT_URL
    if answers(url):
        return subprocess.run(command).returncode
    log(f"no PostgreSQL answers at {url}: starting a throwaway cluster for this run")
    if not server_tools_installed():
        install_postgresql()
    cluster = ThrowawayCluster().init()
    try:
        cluster.start()
        log(f"throwaway cluster on 127.0.0.1:{cluster.port} in {cluster.dir}")
        env = dict(os.environ, TEST_DATABASE_URL=cluster.url, E2E_PG_ADMIN_URL=cluster.url)
        # As a make variable too, so it wins over one given on make's command line.
        return subprocess.run(command + [f"TEST_DATABASE_URL={cluster.url}"], env=env).returncode
    finally:
        cluster.remove()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
