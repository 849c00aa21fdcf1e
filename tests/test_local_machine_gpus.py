"""`make up` gives the container the GPUs where the Docker engine has the NVIDIA runtime.

The decision is checked against this machine's real engine and against a recorded `docker info`
of an engine with nvidia-container-toolkit configured; the flag against the real engine.
"""
import subprocess

import pytest

from docker_machines import TEST_IMAGE, LocalMachine, tagged
from local_machine import engine_info, gpu_request


# `docker info --format '{{json .}}'` of this project's Debian 12 engine, cut to what the decision
# and a reader need, with the runtime that `nvidia-ctk runtime configure --runtime=docker` adds to
# daemon.json ({"runtimes": {"nvidia": {"path": "nvidia-container-runtime", "args": []}}}), as the
# engine then lists it.
INFO_WITH_NVIDIA = {
    "ServerVersion": "20.10.24+dfsg1", "OperatingSystem": "Debian GNU/Linux 12 (bookworm)",
    "Architecture": "x86_64", "DefaultRuntime": "runc",
    "Runtimes": {"io.containerd.runc.v2": {"path": "runc"}, "io.containerd.runtime.v1.linux": {"path": "runc"},
                 "nvidia": {"path": "nvidia-container-runtime"}, "runc": {"path": "runc"}},
}


def test_real_engine_decides_by_its_runtimes():
    info = engine_info()
    gpus, words = gpu_request(info, None)
    if "nvidia" in info["Runtimes"]:
        assert gpus == "all" and "has the NVIDIA runtime" in words
    else:  # this project's machines and CI: no GPU, no NVIDIA runtime
        assert gpus is None and words == "none (the Docker engine has no NVIDIA runtime)"


def test_engine_with_nvidia_runtime_gets_all_gpus_unless_opted_out():
    assert gpu_request(INFO_WITH_NVIDIA, None) == (
        "all", "--gpus all (the Docker engine has the NVIDIA runtime; DEVBOX_GPUS=none turns this off)")
    assert gpu_request(INFO_WITH_NVIDIA, "auto")[0] == "all"
    assert gpu_request(INFO_WITH_NVIDIA, "none") == (None, "none (DEVBOX_GPUS=none)")
    assert gpu_request(INFO_WITH_NVIDIA, "device=0") == ("device=0", "--gpus device=0 (DEVBOX_GPUS)")


def test_no_runtime_no_gpus_unless_asked_for():
    plain = dict(INFO_WITH_NVIDIA, Runtimes={"runc": {"path": "runc"}})
    assert gpu_request(plain, None)[0] is None
    assert gpu_request(plain, "")[0] is None
    assert gpu_request(plain, "all")[0] == "all", "an explicit DEVBOX_GPUS is the user's call"


@pytest.fixture
def machine():
    machine = LocalMachine(name=tagged("devbox-browser-gpus"), volume=tagged("devbox-browser-gpus-home"),
                           image=TEST_IMAGE)
    yield machine
    machine.remove()
    machine.remove_volume()


def test_real_engine_receives_the_decision(machine):
    machine.gpus, _ = gpu_request(engine_info(), None)
    machine.start()
    assert machine.state() == "running" and machine.has_gpus() == bool(machine.gpus)
    machine.gpus = "all"
    if "nvidia" in engine_info()["Runtimes"]:
        machine.start()
        assert machine.has_gpus(), "a container without GPUs is replaced when GPUs are asked for"
    else:
        # This engine has no GPU driver: the flag reaches it and it refuses, naming the request.
        with pytest.raises(subprocess.CalledProcessError) as refused:
            machine.start()
        assert "could not select device driver" in refused.value.stderr
