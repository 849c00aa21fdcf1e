"""`make up`'s venv holds what running needs and nothing of the tests: `make venv` (the step `make up` takes)
into a folder of its own, as on a fresh clone, then what it can import."""
import os
import subprocess

from docker_machines import ROOT


def test_the_venv_of_make_up_has_no_test_tools(tmp_path):
    venv = tmp_path / "venv"
    made = subprocess.run(["make", "-C", ROOT, "venv", f"VENV={venv}"], capture_output=True, text=True, timeout=900)
    assert made.returncode == 0, made.stdout + made.stderr
    python = str(venv / "bin" / "python")

    def imports(module: str) -> bool:
        # Away from the project, whose molecule/ folder would import as a namespace package.
        return subprocess.run([python, "-c", f"import {module}"], cwd=tmp_path, capture_output=True).returncode == 0

    assert all(imports(module) for module in ("ansible", "ansible_collections.community.docker", "mitogen"))
    assert not any(imports(module) for module in ("pytest", "molecule", "ansible_lint", "yamllint", "selenium"))
    assert (venv / "bin" / ".installed").exists() and not (venv / "bin" / ".installed-test").exists()
    assert os.access(venv / "bin" / "ansible-playbook", os.X_OK)
