"""The right PyTorch for the machine, from what its driver supports (the gpu role's CUDA version). Standard library only.

PyTorch publishes its wheels per CUDA runtime on indexes of its own (https://download.pytorch.org/whl/cu124, ...,
and /cpu). A wheel built for a CUDA runtime newer than the driver supports cannot use the GPU; a CPU-only wheel
never can. With python_env_packages asking for torch and no index set by the user, the venv gets the index of
the newest CUDA runtime the driver supports (the CPU index without a GPU); with a uv project the lock decides,
and a torch build the machine cannot use is warned about.
"""
from __future__ import annotations

import re

TORCH_INDEX = "https://download.pytorch.org/whl/"
# The CUDA runtimes PyTorch has published wheel indexes for, oldest first.
CUDA_RUNTIMES = ("11.8", "12.1", "12.4", "12.6", "12.8")
TORCH_PACKAGES = {"torch", "torchvision", "torchaudio"}
# The CUDA runtime of PyPI's own Linux x86_64 torch wheels (no local version label), by torch minor version.
PYPI_TORCH_CUDA = {"2.0": "11.7", "2.1": "12.1", "2.2": "12.1", "2.3": "12.1", "2.4": "12.1", "2.5": "12.4",
                   "2.6": "12.4", "2.7": "12.6", "2.8": "12.8", "2.9": "12.8"}


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text))


def torch_index(cuda_version: str | None) -> str:
    """The index for a machine whose driver supports cuda_version ('12.4'; None or '' without a GPU): the newest
    CUDA runtime not newer than the driver's, else the CPU wheels."""
    if cuda_version:
        fitting = [runtime for runtime in CUDA_RUNTIMES if version_tuple(runtime) <= version_tuple(cuda_version)]
        if fitting:
            return f"{TORCH_INDEX}cu{fitting[-1].replace('.', '')}"
    return f"{TORCH_INDEX}cpu"


def asks_for_torch(names: list[str]) -> bool:
    return bool(TORCH_PACKAGES & set(names))


def build_cuda(version: str) -> str | None:
    """The CUDA runtime a torch version was built for: '12.4' for 2.5.1+cu124, 'cpu' for +cpu, PyPI's for a plain
    version; None when not known."""
    label = version.partition("+")[2]
    if label == "cpu":
        return "cpu"
    found = re.fullmatch(r"cu(\d+)(\d)", label)
    if found:
        return f"{found.group(1)}.{found.group(2)}"
    if label:
        return None  # rocm, xpu, ...: not ours to judge
    return PYPI_TORCH_CUDA.get(".".join(version.split(".")[:2]))


def build_problem(version: str, cuda_version: str | None) -> str | None:
    """Why torch==version cannot use this machine's GPU (cuda_version: the driver's; None without a GPU); None when
    it can, or without a GPU (a CUDA build runs on the CPU too)."""
    built = build_cuda(version)
    if not cuda_version or built is None:
        return None
    if built == "cpu":
        return (f"torch=={version} is a CPU-only build, on a machine whose GPU supports CUDA {cuda_version}: "
                f"lock it from {torch_index(cuda_version)} (a [[tool.uv.index]] for torch in pyproject.toml)")
    if version_tuple(built) > version_tuple(cuda_version):
        return (f"torch=={version} is built for CUDA {built}, newer than this machine's driver supports "
                f"(CUDA {cuda_version}): it cannot use the GPU; lock it from {torch_index(cuda_version)}, or "
                "update the driver")
    return None
