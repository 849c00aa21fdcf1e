"""tools/base_image.py prints only the image name on stdout, whatever its tools print.

On a fresh machine debootstrap is missing, so apt-get installs it first; their progress lines
must not end up in the captured "image name" (the first-run failure of `make up`)."""
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOISE = "progress line on stdout"


def fake(folder, name, body):
    path = os.path.join(folder, name)
    with open(path, "w") as script:
        script.write(f"#!{sys.executable}\nimport os, sys\n" + textwrap.dedent(body))
    os.chmod(path, 0o755)


@pytest.fixture
def fresh_machine(tmp_path):
    """A PATH with no debootstrap, a chatty apt-get that installs one, and a docker client
    that has no image and can pull nothing (no registry), as on CI's first run."""
    bin_dir = str(tmp_path / "bin")
    os.makedirs(bin_dir)
    os.symlink(shutil.which("tar"), os.path.join(bin_dir, "tar"))
    fake(bin_dir, "apt-get", f"""
        print("Reading package lists... {NOISE}")
        if "install" in sys.argv:
            with open(os.path.join(os.path.dirname(__file__), "debootstrap"), "w") as tool:
                tool.write(open(os.path.join(os.path.dirname(__file__), "debootstrap.real")).read())
            os.chmod(os.path.join(os.path.dirname(__file__), "debootstrap"), 0o755)
        """)
    fake(bin_dir, "debootstrap.real", f"""
        print("I: Retrieving InRelease {NOISE}")
        rootfs = sys.argv[3]
        os.makedirs(os.path.join(rootfs, "etc/apt"))
        os.makedirs(os.path.join(rootfs, "var/lib/apt/lists"))
        """)
    fake(bin_dir, "chroot", f'print("{NOISE}")\n')
    fake(bin_dir, "docker", f"""
        print("docker {NOISE}")
        if sys.argv[1] == "import":
            sys.stdin.buffer.read()
            print("sha256:0123456789abcdef")
            sys.exit(0)
        sys.exit(1)  # no image here, no registry to pull from
        """)
    return bin_dir


@pytest.mark.skipif(os.geteuid() != 0, reason="installing debootstrap needs root, as on CI")
def test_stdout_is_only_the_image_name_on_a_fresh_machine(fresh_machine):
    env = dict(os.environ, PATH=fresh_machine, DEVBOX_DOCKER=os.path.join(fresh_machine, "docker"),
               DEVBOX_LOCAL_BASE="devbox-base:first-run")
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "base_image.py")],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "devbox-base:first-run\n"
    assert os.path.exists(os.path.join(fresh_machine, "debootstrap")), "apt-get was not asked for debootstrap"
    assert NOISE in result.stderr  # the tools' output is shown, on stderr


def test_a_base_that_is_there_is_used_without_a_pull(tmp_path):
    """The Debian base built on an earlier run is taken as it is: no `pulling ubuntu:22.04` at every run."""
    calls = tmp_path / "calls"
    fake(str(tmp_path), "docker", f"""
        with open({str(calls)!r}, "a") as log:
            log.write(" ".join(sys.argv[1:]) + "\\n")
        sys.exit(0 if sys.argv[1:3] == ["image", "inspect"] and sys.argv[3] == "devbox-base:kept" else 1)
        """)
    env = dict(os.environ, DEVBOX_DOCKER=str(tmp_path / "docker"), DEVBOX_LOCAL_BASE="devbox-base:kept")
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "base_image.py")],
                            capture_output=True, text=True, env=env, timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (0, "devbox-base:kept\n", "")
    assert calls.read_text().splitlines() == ["image inspect ubuntu:22.04", "image inspect devbox-base:kept"]
