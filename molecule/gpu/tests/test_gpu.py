"""The gpu role against the stand-in nvidia-smi."""
import json


def test_facts_read_from_nvidia_smi(host):
    facts = json.loads(host.file("/tmp/gpu_facts.json").content_string)
    assert facts["present"] is True
    assert facts["cuda_version"] == "12.4"
    assert facts["gpus"] == [{"index": 0, "name": "NVIDIA A100-SXM4-80GB", "memory_mib": 81920,
                              "driver_version": "550.54.15", "uuid": "GPU-5b7d5e2a-1c3f-4d1e-9a2b-1234567890ab"}]


def test_nvidia_smi_ran_as_root(host):
    assert "0" in host.file("/tmp/nvidia-smi-runs").content_string.split()


def test_user_can_open_group_only_device_nodes(host):
    assert "video" in host.user("pythonuser").groups
    record = json.loads(host.file("/home/pythonuser/.devbox/account.json").content_string)
    assert "video" in record["groups"], "the boot step must restore the device group after a restart"
