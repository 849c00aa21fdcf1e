import pytest

from ansible_collections.devbox.machine.plugins.module_utils.devbox_gpu import device_groups_needed, parse_cuda_version, parse_query

# As printed by `nvidia-smi --query-gpu=index,name,memory.total,driver_version,uuid --format=csv,noheader,nounits`
QUERY_OUTPUT = """0, NVIDIA A100-SXM4-80GB, 81920, 550.54.15, GPU-5b7d5e2a-1c3f-4d1e-9a2b-1234567890ab
1, NVIDIA L40S, 46068, 550.54.15, GPU-0f0e0d0c-0b0a-0908-0706-050403020100
"""

# The first lines of plain `nvidia-smi` (the summary table header).
SUMMARY = """Tue Nov 26 10:00:00 2026
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 550.54.15              Driver Version: 550.54.15      CUDA Version: 12.4     |
|-----------------------------------------+------------------------+----------------------+
"""


def test_parse_query_reads_each_gpu():
    gpus = parse_query(QUERY_OUTPUT)
    assert gpus == [
        {"index": 0, "name": "NVIDIA A100-SXM4-80GB", "memory_mib": 81920, "driver_version": "550.54.15",
         "uuid": "GPU-5b7d5e2a-1c3f-4d1e-9a2b-1234567890ab"},
        {"index": 1, "name": "NVIDIA L40S", "memory_mib": 46068, "driver_version": "550.54.15",
         "uuid": "GPU-0f0e0d0c-0b0a-0908-0706-050403020100"},
    ]


def test_parse_query_of_no_gpu_is_empty():
    assert parse_query("\n") == []


def test_parse_query_rejects_an_unexpected_row():
    with pytest.raises(ValueError, match="unexpected nvidia-smi row"):
        parse_query("No devices were found, really\n")


def test_cuda_version_comes_from_the_summary_header():
    assert parse_cuda_version(SUMMARY) == "12.4"
    assert parse_cuda_version("no header here") is None


def test_device_groups_needed():
    assert device_groups_needed([("/dev/nvidia0", 0o666, "root")]) == []
    assert device_groups_needed([("/dev/nvidia0", 0o660, "video"), ("/dev/nvidiactl", 0o660, "video")]) == ["video"]
    assert device_groups_needed([("/dev/nvidia0", 0o600, "root")]) == []
