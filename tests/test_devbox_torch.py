"""The right PyTorch index for the machine, from the stand-in nvidia-smi's summary at driver versions across CUDA
11.8 to 12.8 (molecule/gpu/fake_nvidia_smi.py's format, read by the gpu role's parser), and without a GPU;
and the warning for a uv lock's torch build that the GPU cannot use. Nothing is downloaded."""
import os

import pytest

from ansible_collections.devbox.machine.plugins.module_utils.devbox_gpu import parse_cuda_version
from ansible_collections.devbox.machine.plugins.module_utils.devbox_torch import build_problem, torch_index

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The stand-in's summary, read from its file (importing it would run its command line).
with open(os.path.join(ROOT, "molecule", "gpu", "fake_nvidia_smi.py")) as _source:
    FIXTURE = _source.read().split('SUMMARY = """', 1)[1].split('"""', 1)[0]


def summary(driver: str, cuda: str) -> str:
    """The stand-in's summary with another driver: the header line as nvidia-smi prints it."""
    return FIXTURE.replace("550.54.15", driver).replace("CUDA Version: 12.4", f"CUDA Version: {cuda}")


# Released drivers and the newest CUDA each supports, as `nvidia-smi` says in its header.
@pytest.mark.parametrize("driver, cuda, index", [
    ("520.61.05", "11.8", "cu118"),
    ("525.60.13", "12.0", "cu118"),
    ("530.30.02", "12.1", "cu121"),
    ("535.104.05", "12.2", "cu121"),
    ("545.23.08", "12.3", "cu121"),
    ("550.54.15", "12.4", "cu124"),
    ("555.42.02", "12.5", "cu124"),
    ("560.35.03", "12.6", "cu126"),
    ("565.57.01", "12.7", "cu126"),
    ("570.86.10", "12.8", "cu128"),
    ("580.65.06", "13.0", "cu128"),
])
def test_the_newest_cuda_wheels_the_driver_supports(driver, cuda, index):
    found = parse_cuda_version(summary(driver, cuda))
    assert found == cuda
    assert torch_index(found) == f"https://download.pytorch.org/whl/{index}"


def test_cpu_wheels_without_a_gpu_or_with_a_driver_older_than_any_cuda_wheels():
    assert torch_index(None) == torch_index("") == "https://download.pytorch.org/whl/cpu"
    assert torch_index(parse_cuda_version(summary("470.82.01", "11.4"))) == "https://download.pytorch.org/whl/cpu"


@pytest.mark.parametrize("version, cuda, warned", [
    ("2.5.1+cu124", "12.4", None),
    ("2.5.1+cu124", "12.2", "built for CUDA 12.4, newer than this machine's driver supports (CUDA 12.2)"),
    ("2.7.0+cu128", "11.8", "built for CUDA 12.8"),
    ("2.5.1+cpu", "12.4", "a CPU-only build, on a machine whose GPU supports CUDA 12.4"),
    ("2.5.1", "12.4", None),  # PyPI's Linux wheel of 2.5 is built for CUDA 12.4
    ("2.8.0", "12.4", "built for CUDA 12.8"),
    ("2.5.1+cu124", None, None),  # no GPU: a CUDA build runs on the CPU too
    ("2.5.1+cpu", None, None),
    ("2.5.1+rocm6.2", "12.4", None),
])
def test_a_locked_torch_the_gpu_cannot_use_is_warned_about(version, cuda, warned):
    problem = build_problem(version, cuda)
    assert problem is None if warned is None else warned in problem
    if problem:
        assert torch_index(cuda) in problem, "the warning names the index that fits"


def module_params(**changes):
    return dict({"project": None, "index_url": None, "extra_index_urls": [], "requirements": [],
                 "requirements_file_text": None, "gpu_cuda_version": "12.4"}, **changes)


def test_the_module_picks_the_index_only_for_torch_and_only_when_the_user_named_none():
    from test_module_docs import ROOT as DOCS_ROOT, load
    venv_module = load(os.path.join(DOCS_ROOT, "plugins", "modules", "devbox_venv.py"))
    pick = venv_module.picked_torch_index
    assert pick(module_params(requirements=["numpy", "torch==2.5.1"])) == "https://download.pytorch.org/whl/cu124"
    assert pick(module_params(requirements_file_text="torchvision\n", gpu_cuda_version="")).endswith("/whl/cpu")
    assert pick(module_params(requirements=["numpy"])) is None
    assert pick(module_params(requirements=["torch"], index_url="https://mirror.example/simple")) is None
    assert pick(module_params(requirements=["torch"], extra_index_urls=["https://download.pytorch.org/whl/cu118"])) is None
    assert pick(module_params(requirements=["torch"], project={"lock": "..."})) is None, "a uv project's lock decides"
