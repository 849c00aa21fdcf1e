#!/usr/bin/env python3
"""Print the name of a base image the Dockerfile can build on, making one if needed.

Order: the Dockerfile's default (ubuntu:22.04) when present; the Debian 12 image built here
before (DEVBOX_LOCAL_BASE) when present; ubuntu:22.04 when it can be pulled; otherwise that
Debian 12 image, built with debootstrap and `docker import`, so it is built once and no pull is
tried again. Progress goes to stderr, the name to stdout.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

from docker_host import DOCKER

DEFAULT_BASE = "ubuntu:22.04"
LOCAL_BASE = os.environ.get("DEVBOX_LOCAL_BASE", "devbox-base:bookworm")
DEBIAN_MIRROR = os.environ.get("DEVBOX_DEBIAN_MIRROR", "http://deb.debian.org/debian")
PULL_TIMEOUT_S = 60


def say(message: str) -> None:
    print(f"base_image: {message}", file=sys.stderr, flush=True)


def image_exists(name: str) -> bool:
    return subprocess.run([DOCKER, "image", "inspect", name],
                          capture_output=True).returncode == 0


def try_pull(name: str) -> bool:
    say(f"pulling {name} ...")
    try:
        result = subprocess.run([DOCKER, "pull", "-q", name], capture_output=True,
                                timeout=PULL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        say(f"pulling {name} timed out after {PULL_TIMEOUT_S} s")
        return False
    if result.returncode != 0:
        say(f"cannot pull {name}: {result.stderr.decode(errors='replace').strip()[:200]}")
    return result.returncode == 0


def build_debian_base(name: str) -> None:
    if shutil.which("debootstrap") is None:
        if os.geteuid() != 0:
            sys.exit("base_image: no base image can be pulled and building one needs debootstrap: "
                     "install it (apt-get install debootstrap) or run as root")
        say("installing debootstrap ...")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "debootstrap"], check=True, env=env)
    with tempfile.TemporaryDirectory(prefix="devbox-rootfs-") as rootfs:
        say(f"building {name} with debootstrap from {DEBIAN_MIRROR} (about 30 s) ...")
        subprocess.run(["debootstrap", "--variant=minbase", "bookworm", rootfs, DEBIAN_MIRROR],
                       check=True, stdout=subprocess.DEVNULL)
        # Like the official images: the security archive too, and no apt caches.
        with open(os.path.join(rootfs, "etc/apt/sources.list"), "a") as sources:
            sources.write("deb http://deb.debian.org/debian-security bookworm-security main\n")
        subprocess.run(["chroot", rootfs, "apt-get", "clean"], check=True)
        shutil.rmtree(os.path.join(rootfs, "var/lib/apt/lists"))
        os.makedirs(os.path.join(rootfs, "var/lib/apt/lists/partial"))
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        subprocess.run([DOCKER, "import", "-", name], stdin=tar.stdout, check=True,
                       stdout=subprocess.DEVNULL)
        if tar.wait() != 0:
            sys.exit("base_image: tar of the debootstrap tree failed")


def choose_base() -> str:
    # A base that is there is used without a word: a pull is tried only when neither is, so a computer
    # without a registry does not try (and fail) again at every run.
    if image_exists(DEFAULT_BASE):
        return DEFAULT_BASE
    if image_exists(LOCAL_BASE):
        return LOCAL_BASE
    if try_pull(DEFAULT_BASE):
        return DEFAULT_BASE
    build_debian_base(LOCAL_BASE)
    say(f"using {LOCAL_BASE}")
    return LOCAL_BASE


def main() -> None:
    # The caller captures stdout as the image name: everything else (ours and every
    # subprocess's, such as apt-get's progress on a fresh machine) goes to stderr.
    value = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    print(choose_base(), file=value, flush=True)


if __name__ == "__main__":
    main()
