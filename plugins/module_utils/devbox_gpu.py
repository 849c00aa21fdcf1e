"""NVIDIA GPU facts from nvidia-smi: find it, parse its output. Standard library only."""
from __future__ import annotations

import csv
import ctypes
import io
import os
import re
import shutil

NVIDIA_SMI_PLACES = ("/usr/bin/nvidia-smi", "/usr/local/nvidia/bin/nvidia-smi", "/usr/local/bin/nvidia-smi")
QUERY_FIELDS = ("index", "name", "memory.total", "driver_version", "uuid")
QUERY_ARGS = ["--query-gpu=" + ",".join(QUERY_FIELDS), "--format=csv,noheader,nounits"]


def find_nvidia_smi() -> str | None:
    found = shutil.which("nvidia-smi")
    if found:
        return found
    return next((path for path in NVIDIA_SMI_PLACES if os.access(path, os.X_OK)), None)


def parse_cuda_version(summary: str) -> str | None:
    """The 'CUDA Version: 12.4' of nvidia-smi's summary header (not a --query-gpu field)."""
    match = re.search(r"CUDA Version:\s*([0-9][0-9.]*)", summary)
    return match.group(1) if match else None


def parse_query(output: str) -> list[dict]:
    """Rows of `nvidia-smi --query-gpu=index,name,memory.total,driver_version,uuid --format=csv,noheader,nounits`."""
    gpus = []
    for row in csv.reader(io.StringIO(output), skipinitialspace=True):
        if not row or not "".join(row).strip():
            continue
        if len(row) != len(QUERY_FIELDS):
            raise ValueError(f"unexpected nvidia-smi row: {','.join(row)!r}")
        index, name, memory, driver, uuid = (cell.strip() for cell in row)
        gpus.append({"index": int(index), "name": name, "memory_mib": int(float(memory)),
                     "driver_version": driver, "uuid": uuid})
    return gpus


def device_groups_needed(devices: list[tuple[str, int, str]]) -> list[str]:
    """Groups the user must join to open the device nodes: [(path, mode, group name)] -> names.

    Nodes that others can read and write (0666, the NVIDIA default) need no group.
    """
    needed = set()
    for _path, mode, group in devices:
        if mode & 0o006 != 0o006 and mode & 0o060 == 0o060:
            needed.add(group)
    return sorted(needed)


def cuda_smoke_test() -> str:
    """Initialise CUDA through the driver API (libcuda, no Python package needed) and count the
    devices; a one-line summary, or RuntimeError saying what failed."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError as error:
        raise RuntimeError(f"CUDA smoke test: cannot load libcuda.so.1: {error}") from error
    status = cuda.cuInit(0)
    if status != 0:
        raise RuntimeError(f"CUDA smoke test: cuInit failed with CUresult {status}")
    count = ctypes.c_int()
    status = cuda.cuDeviceGetCount(ctypes.byref(count))
    if status != 0 or count.value < 1:
        raise RuntimeError(f"CUDA smoke test: cuDeviceGetCount gave {count.value} (CUresult {status})")
    version = ctypes.c_int()
    cuda.cuDriverGetVersion(ctypes.byref(version))
    return f"CUDA OK: {count.value} device(s), driver API {version.value // 1000}.{version.value % 1000 // 10}"
