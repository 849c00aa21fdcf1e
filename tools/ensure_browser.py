#!/usr/bin/env python3
"""Make sure headless Chromium and its WebDriver are installed, for the browser test.

Present ones are left alone. Otherwise Debian's chromium and chromium-driver are installed
with apt-get (needs root). Everything this prints goes to stderr: nothing reads its stdout.
"""
from __future__ import annotations

import os
import subprocess
import sys

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PACKAGES = {CHROMIUM: "chromium", CHROMEDRIVER: "chromium-driver"}


def say(message: str) -> None:
    print(f"ensure_browser: {message}", file=sys.stderr, flush=True)


def missing_packages() -> list[str]:
    return [package for path, package in PACKAGES.items() if not os.access(path, os.X_OK)]


def install(packages: list[str]) -> None:
    if os.geteuid() != 0:
        sys.exit(f"ensure_browser: {' and '.join(packages)} missing and installing needs root "
                 f"(run as root, or: sudo apt-get install {' '.join(packages)}).")
    say(f"installing Debian's {' '.join(packages)} ...")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # apt-get's progress goes to stderr too, so no caller can mistake it for a value.
    for command in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]):
        subprocess.run(command, check=True, env=env, stdout=sys.stderr)


def main() -> None:
    packages = missing_packages()
    if packages:
        install(packages)
        if missing_packages():
            sys.exit(f"ensure_browser: still missing after apt-get: {' '.join(missing_packages())}")
    say(f"{' and '.join(PACKAGES)} are installed")


if __name__ == "__main__":
    main()
