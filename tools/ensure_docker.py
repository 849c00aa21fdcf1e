#!/usr/bin/env python3
"""Make sure a Docker engine answers, installing and starting one when none does.

A running engine is left alone. Otherwise Debian's docker.io is installed (when dockerd is
missing) and dockerd is started in the background, its log in /var/log/devbox-dockerd.log.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

from docker_host import docker_cli

DOCKERD_LOG = "/var/log/devbox-dockerd.log"
START_TIMEOUT_S = 60


def engine_answers() -> bool:
    docker = shutil.which(docker_cli())  # asked anew: the engine may have just been installed
    if docker is None:
        return False
    return subprocess.run([docker, "info"], capture_output=True, timeout=30).returncode == 0


def install_engine() -> None:
    if os.geteuid() != 0:
        sys.exit("ensure_docker: no Docker engine answers and installing one needs root "
                 "(run as root, or start Docker yourself).")
    print("ensure_docker: installing Debian's docker.io ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "docker.io"], check=True, env=env)


def start_engine() -> None:
    print(f"ensure_docker: starting dockerd (log: {DOCKERD_LOG}) ...", flush=True)
    with open(DOCKERD_LOG, "ab") as log:
        subprocess.Popen(["dockerd"], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                         start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if engine_answers():
            return
        time.sleep(1)
    sys.exit(f"ensure_docker: dockerd did not answer within {START_TIMEOUT_S} s; "
             f"see {DOCKERD_LOG}")


def main() -> None:
    if engine_answers():
        print("ensure_docker: a Docker engine already answers", flush=True)
        return
    if shutil.which("dockerd") is None:
        install_engine()
    start_engine()
    print("ensure_docker: Docker engine is up", flush=True)


if __name__ == "__main__":
    main()
