"""tools/ensure_browser.py installs what is missing and keeps stdout clean, even when apt-get
is chatty there (make's other helpers capture stdout as values; this one must never leak)."""
import os
import subprocess
import sys

from local_machine import ROOT

FAKE_APT_GET = """#!/bin/sh
# Prints on stdout as the real one does, and "installs" by creating the files the helper checks.
echo "Reading package lists... $*"
[ "$1" = install ] && for file in {files}; do printf '#!/bin/sh\\n' > "$file"; chmod 755 "$file"; done
exit 0
"""


def run_helper(tmp_path, paths: dict) -> subprocess.CompletedProcess:
    apt_get = tmp_path / "apt-get"
    apt_get.write_text(FAKE_APT_GET.format(files=" ".join(paths)))
    apt_get.chmod(0o755)
    # As root, whoever runs the test: the install path is the one under test.
    script = (f"import os, sys; sys.path.insert(0, {os.path.join(ROOT, 'tools')!r}); import ensure_browser; "
              f"os.geteuid = lambda: 0; ensure_browser.PACKAGES = {paths!r}; ensure_browser.main()")
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}")
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)


def test_missing_packages_are_installed_with_nothing_on_stdout(tmp_path):
    paths = {str(tmp_path / "chromium"): "chromium", str(tmp_path / "chromedriver"): "chromium-driver"}
    result = run_helper(tmp_path, paths)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "Reading package lists... install -y -qq --no-install-recommends chromium chromium-driver" in result.stderr
    assert all(os.access(path, os.X_OK) for path in paths)


def test_present_packages_are_left_alone(tmp_path):
    result = run_helper(tmp_path, {sys.executable: "python"})
    assert result.returncode == 0 and result.stdout == ""
    assert "Reading package lists" not in result.stderr, "apt-get must not run"
    assert f"{sys.executable} are installed" in result.stderr
