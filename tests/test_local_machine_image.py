"""`make up` builds the image only when what it is built from changed (tools/local_machine.py)."""
import os
import shutil

import pytest

from docker_machines import ROOT, LocalMachine, base_image, docker, docker_output, free_port, fresh, local_facts, tagged
from local_machine import INPUTS_LABEL, build_files, build_image, build_inputs, image_label, runs_as_built_and_said

# The image is built for the dev user of the facts (the build argument NONROOT_USER).
USER = local_facts()["user"]


@pytest.fixture
def tree(tmp_path):
    """A copy of what the image is built from, to change."""
    for relative in build_files():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(os.path.join(ROOT, relative), tmp_path / relative)
    (tmp_path / "README.md").write_text("not in the build context\n")
    return tmp_path


def test_the_digest_follows_the_build_inputs_only(tree):
    first = build_inputs("sha256:base", USER, str(tree))
    assert build_inputs("sha256:base", USER, str(tree)) == first
    (tree / "README.md").write_text("changed, and still not in the context\n")
    assert build_inputs("sha256:base", USER, str(tree)) == first
    assert build_inputs("sha256:another-base", USER, str(tree)) != first
    with open(tree / "boot" / "devbox_boot.py", "a") as boot:
        boot.write("# changed\n")
    changed = build_inputs("sha256:base", USER, str(tree))
    assert changed != first
    (tree / "boot" / "devbox_boot.py").chmod(0o600)
    assert build_inputs("sha256:base", USER, str(tree)) != changed
    (tree / "boot" / "devbox_boot.py").chmod(0o644)
    with open(tree / "Dockerfile", "a") as dockerfile:
        dockerfile.write("# changed\n")
    assert build_inputs("sha256:base", USER, str(tree)) not in (first, changed)


def test_the_digest_follows_the_dev_user(tree):
    assert build_inputs("sha256:base", "alice", str(tree)) != build_inputs("sha256:base", USER, str(tree))


def test_an_unchanged_image_is_not_built_again(capsys):
    image = f"{tagged('devbox-skip')}:latest"
    try:
        build_image(image, USER)  # built (from the cache of the test image's layers), labelled
        built = docker_output("image", "inspect", "--format", "{{.Id}}", image)
        assert image_label(image, INPUTS_LABEL) and "building" in capsys.readouterr().out
        build_image(image, USER)
        assert f"keeping {image}" in capsys.readouterr().out
        assert docker_output("image", "inspect", "--format", "{{.Id}}", image) == built
        docker("image", "tag", base_image(), image)  # an image without the label (an older make up's)
        build_image(image, USER)
        assert "building" in capsys.readouterr().out
    finally:
        docker("image", "rm", "-f", image, check=False)


def test_a_machine_that_runs_as_built_and_said_passes_the_cheap_check(monkeypatch):
    """`make up` on a machine that is up: the container's labels and configuration say it is the machine
    of this tree and these variables; a change of either sends `make up` the long way (build, replace)."""
    monkeypatch.setenv("DEVBOX_GPUS", "none")
    image = f"{tagged('devbox-cheap')}:latest"
    try:
        build_image(image, USER)
        machine = LocalMachine(name=tagged("devbox-cheap"), volume=tagged("devbox-cheap-home"), image=image,
                               port=free_port())
        assert not runs_as_built_and_said(machine, USER), "no container yet"
        with fresh(machine):
            assert runs_as_built_and_said(machine, USER)
            assert not runs_as_built_and_said(machine, "alice"), "another user: another image"
            machine.given = {"jupyter_port": 8899}
            assert not runs_as_built_and_said(machine, USER), "another port to publish"
    finally:
        docker("image", "rm", "-f", image, check=False)
