"""The machine's swap as /proc/meminfo says, and the advice when it is below what the user expects.

Read by the devbox_swap module (the swap role) and by the look, which warns the same on a converged rerun.
"""
from __future__ import annotations

import re

MEMINFO = "/proc/meminfo"


def swap_total_mb(meminfo: str) -> int:
    """SwapTotal of a /proc/meminfo text, in MB (0 without the line)."""
    found = re.search(r"^SwapTotal:\s+(\d+) kB", meminfo, re.MULTILINE)
    return int(found.group(1)) // 1024 if found else 0


def read_swap_total_mb(path: str = MEMINFO) -> int:
    with open(path) as meminfo:
        return swap_total_mb(meminfo.read())


def advice(total_mb: int, min_mb: int) -> str:
    return (f"Swap is {total_mb} MB, below swap_min_mb={min_mb}: Jupyter kernels risk being OOM-killed. On Fly set"
            f" `swap_size_mb = {min_mb}` in fly.toml and run `fly deploy`; on another host add a swap file"
            " (fallocate, mkswap, swapon).")
