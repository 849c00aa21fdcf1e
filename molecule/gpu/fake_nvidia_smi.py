#!/usr/bin/python3
"""Stand-in for nvidia-smi with the real tool's documented output formats (one A100).

Idle stop's readings (utilisation, compute processes) answer from a JSON file a test controls
(FAKE_NVIDIA_SMI_STATE, default /tmp/fake-nvidia-smi.json): {"percent": "87" (as nvidia-smi prints
it: "[N/A]" too), "pids": [1234], "fail": "message" (exits 9 saying it), "hang": true}. No file: 0%, none.
"""
import json
import os
import sys
import time

SUMMARY = """Sat Nov 28 10:00:00 2026
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 550.54.15              Driver Version: 550.54.15      CUDA Version: 12.4     |
|-----------------------------------------+------------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |
| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |
|=========================================+========================+======================|
|   0  NVIDIA A100-SXM4-80GB          On  |   00000000:00:06.0 Off |                    0 |
| N/A   32C    P0             61W /  400W |       1MiB /  81920MiB |      0%      Default |
+-----------------------------------------+------------------------+----------------------+
"""
QUERY = "0, NVIDIA A100-SXM4-80GB, 81920, 550.54.15, GPU-5b7d5e2a-1c3f-4d1e-9a2b-1234567890ab\n"

UUID = "GPU-5b7d5e2a-1c3f-4d1e-9a2b-1234567890ab"
try:
    with open(os.environ.get("FAKE_NVIDIA_SMI_STATE", "/tmp/fake-nvidia-smi.json")) as control:
        STATE = json.load(control)
except OSError:
    STATE = {}

args = sys.argv[1:]
if STATE.get("hang"):
    time.sleep(3600)
if STATE.get("fail"):
    print(STATE["fail"])  # the real tool says why on stdout, and exits 9 without its driver
    sys.exit(9)
if not args:
    # Record each driver initialisation as root, so the test can tell it happened.
    with open("/tmp/nvidia-smi-runs", "a") as runs:
        runs.write(f"{os.getuid()}\n")
    sys.stdout.write(SUMMARY)
elif args == ["--query-gpu=index,name,memory.total,driver_version,uuid", "--format=csv,noheader,nounits"]:
    sys.stdout.write(QUERY)
elif args == ["--query-gpu=index,uuid,utilization.gpu", "--format=csv,noheader,nounits"]:
    sys.stdout.write(f"0, {UUID}, {STATE.get('percent', '0')}\n")
elif args == ["--query-compute-apps=gpu_uuid,pid", "--format=csv,noheader,nounits"]:
    sys.stdout.write("".join(f"{UUID}, {pid}\n" for pid in STATE.get("pids", [])))
else:
    sys.exit(f"fake nvidia-smi: unsupported arguments {args}")
