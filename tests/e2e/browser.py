"""A real browser: Swagger UI driven by playwright-core in Debian's chromium, on the in-memory
store (the script is swagger_ui.mjs). Screenshots go to target/."""

import os
import shutil
import subprocess
import sys

from harness import ADMIN_TOKEN, ROOT, Service, check, log

HERE = ROOT / "tests" / "e2e"


def main():
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    check(shutil.which(chromium) or os.path.exists(chromium), f"{chromium} is missing (apt-get install chromium)")
    shots = ROOT / "target"
    shots.mkdir(exist_ok=True)
    with Service(name="memory") as service:
        env = dict(os.environ, E2E_BASE=service.base, E2E_TOKEN=ADMIN_TOKEN,
                   E2E_SCREENSHOTS=str(shots), CHROMIUM=chromium)
        result = subprocess.run(["node", str(HERE / "swagger_ui.mjs")], env=env, cwd=HERE,
                                capture_output=True, text=True, timeout=180)
        for line in (result.stdout + result.stderr).splitlines():
            log("  " + line)
        check(result.returncode == 0, "the Swagger UI walk-through failed")
    log("browser: passed")


if __name__ == "__main__":
    sys.exit(main())
