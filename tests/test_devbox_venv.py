"""The venv logic against real venvs and the real package index (pip and uv)."""
import os
import re
import subprocess
import sys
import threading

import pytest

from devbox_venv import (Lock, VenvError, check_free_space, converge, diff, install_command, installed_distributions,
                         installer_env, mask_credentials, pip_conf_text, plan, venv_health)


def params(venv, **overrides):
    base = {"path": str(venv), "base_python": sys.executable, "requirements": [],
            "installer": "pip", "settings": {"index_url": None, "extra_index_urls": [], "ca_bundle": None,
                                             "installer": "pip"},
            "min_free_mb": 1, "lock_timeout": 5}
    base.update(overrides)
    return base


def write_dist(site, name, version):
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nBody: x\n")


def test_installed_distributions_reads_metadata_without_running_python(tmp_path):
    site = tmp_path / "venv" / "lib" / "python3.10" / "site-packages"
    write_dist(site, "Jupyter_Server", "2.14.0")
    write_dist(site, "six", "1.16.0")
    assert installed_distributions(str(tmp_path / "venv")) == {"jupyter-server": "2.14.0", "six": "1.16.0"}


def test_health_of_absent_and_unfinished_venvs(tmp_path):
    assert venv_health(str(tmp_path / "nope"), sys.executable)[0] == "absent"
    (tmp_path / "half").mkdir()
    assert venv_health(str(tmp_path / "half"), sys.executable)[0] == "incomplete"


def test_health_sees_another_python_version(tmp_path):
    fake = tmp_path / "python3"
    fake.write_text("#!/bin/sh\necho 3.99\n")
    fake.chmod(0o755)
    venv = tmp_path / "venv"
    converge(params(venv))
    health, reason = venv_health(str(venv), str(fake))
    assert health == "broken" and "3.99" in reason


def test_pip_conf_keeps_index_and_ca_bundle():
    text = pip_conf_text({"index_url": "https://mirror/simple", "extra_index_urls": ["https://a", "https://b"],
                          "ca_bundle": "/etc/ca.pem"})
    assert "index-url = https://mirror/simple" in text
    assert "extra-index-url = https://a https://b" in text
    assert "cert = /etc/ca.pem" in text


def test_diff_names_installed_removed_and_upgraded():
    assert diff({"a": "1", "b": "1"}, {"a": "2", "c": "1"}) == {
        "installed": ["c==1"], "removed": ["b==1"], "upgraded": ["a: 1 -> 2"]}


def test_not_enough_free_space_fails_with_the_numbers_and_the_fix(tmp_path):
    with pytest.raises(VenvError, match=r"only \d+ MB free .* below python_env_min_free_mb=.*fly volumes extend"):
        check_free_space(str(tmp_path), 10**12)


def test_second_run_waits_then_fails_with_a_clear_message(tmp_path):
    path = str(tmp_path / "venv.lock")
    with Lock(path, timeout=1):
        with pytest.raises(VenvError, match="another run holds the lock"):
            with Lock(path, timeout=1):
                pass


def test_lock_is_granted_once_the_first_run_ends(tmp_path):
    path = str(tmp_path / "venv.lock")
    first = Lock(path, timeout=1).__enter__()
    threading.Timer(0.5, first.__exit__).start()
    with Lock(path, timeout=5):
        pass


def test_converge_installs_then_reports_no_change(tmp_path):
    venv = tmp_path / "project-venv"
    first = converge(params(venv, requirements=["six==1.16.0"]))
    assert first["changed"] and "six==1.16.0" in first["installed"]
    second = converge(params(venv, requirements=["six==1.16.0"]))
    assert not second["changed"] and second["installed"] == []
    assert (venv / "pip.conf").exists()


def test_failed_install_reports_pip_reason_and_keeps_what_was_there(tmp_path):
    venv = tmp_path / "project-venv"
    converge(params(venv, requirements=["six==1.16.0"]))
    with pytest.raises(VenvError, match="(?i)no matching distribution|could not find"):
        converge(params(venv, requirements=["devbox-no-such-package-xyz==0.0.1"]))
    assert installed_distributions(str(venv))["six"] == "1.16.0"


def test_venv_with_missing_interpreter_is_rebuilt_with_the_same_versions(tmp_path):
    venv = tmp_path / "project-venv"
    converge(params(venv, requirements=["six==1.16.0"]))
    for name in os.listdir(venv / "bin"):
        if name.startswith("python"):
            os.remove(venv / "bin" / name)
    notebook = tmp_path / "notebook.ipynb"
    notebook.write_text("{}")

    result = converge(params(venv))

    assert result["rebuilt"] and "does not run" in result["rebuilt"]
    assert installed_distributions(str(venv))["six"] == "1.16.0"
    assert notebook.read_text() == "{}"
    assert not os.path.exists(str(venv) + ".pending.json")


def test_interrupted_creation_is_redone(tmp_path):
    venv = tmp_path / "project-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)  # no marker
    result = converge(params(venv, requirements=["six==1.16.0"]))
    assert result["changed"] and "six==1.16.0" in result["installed"]
    assert venv_health(str(venv), sys.executable)[0] == "ok"


def test_uv_installer_is_bootstrapped_and_used(tmp_path):
    venv = tmp_path / "project-venv"
    settings = {"index_url": None, "extra_index_urls": [], "ca_bundle": os.environ.get("SSL_CERT_FILE"),
                "installer": "uv"}
    result = converge(params(venv, installer="uv", settings=settings, requirements=["six==1.16.0"]))
    assert os.access(venv / "bin" / "uv", os.X_OK)
    assert "six==1.16.0" in result["installed"]
    again = converge(params(venv, installer=None, settings=None, requirements=["six==1.16.0"]))
    assert not again["changed"]


def test_requirements_file_text_is_kept_in_the_project_and_installed(tmp_path):
    venv, project = tmp_path / "project-venv", tmp_path / "project"
    result = converge(params(venv, project_dir=str(project), requirements_file_text="six==1.16.0\n"))
    assert (project / "requirements.txt").read_text() == "six==1.16.0\n"
    assert "six==1.16.0" in result["installed"]
    assert not converge(params(venv, project_dir=str(project), requirements_file_text="six==1.16.0\n"))["changed"]


def test_health_sees_a_base_python_upgraded_under_the_venv(tmp_path):
    venv = tmp_path / "venv"
    converge(params(venv))
    config = (venv / "pyvenv.cfg").read_text()
    (venv / "pyvenv.cfg").write_text(re.sub(r"(?m)^version\s*=.*$", "version = 3.9.18", config))
    health, reason = venv_health(str(venv), sys.executable)
    assert health == "broken" and "uses Python 3.9" in reason


def test_a_venv_without_our_marker_keeps_its_packages(tmp_path):
    venv = tmp_path / "project-venv"  # as the seed's post-initialization script leaves it
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "six==1.16.0"], check=True)

    result = converge(params(venv))

    assert installed_distributions(str(venv))["six"] == "1.16.0"
    assert result["rebuilt"] and "six==1.16.0" not in result["installed"], "nothing new, nothing lost"


def test_the_users_own_spec_wins_over_a_rebuilt_venvs_old_version(tmp_path):
    venv = tmp_path / "project-venv"
    converge(params(venv, requirements=["six==1.16.0"]))
    os.remove(venv / "bin" / "python")
    result = converge(params(venv, requirements=["six==1.17.0"]))
    assert installed_distributions(str(venv))["six"] == "1.17.0"
    assert result["rebuilt"] and not os.path.exists(str(venv) + ".pending.json")


def test_a_satisfied_rerun_needs_no_free_space(tmp_path):
    venv = tmp_path / "project-venv"
    converge(params(venv, requirements=["six==1.16.0"]))
    assert not converge(params(venv, requirements=["six==1.16.0"], min_free_mb=10**12))["changed"]
    with pytest.raises(VenvError, match="below python_env_min_free_mb"):
        converge(params(venv, requirements=["six==1.17.0"], min_free_mb=10**12))


def test_installer_settings_are_private(tmp_path):
    venv = tmp_path / "project-venv"
    converge(params(venv))
    assert oct((venv / "pip.conf").stat().st_mode & 0o777) == "0o600"


def test_index_urls_stay_off_the_command_line():
    secret = "https://user:s3cret@mirror.example/simple"
    command = install_command("/v", "uv", ["six"], ["/p/requirements.txt"])
    env = installer_env({"index_url": secret, "extra_index_urls": [secret + "2"]})
    assert "s3cret" not in " ".join(command)
    assert env["UV_INDEX_URL"] == secret and env["UV_EXTRA_INDEX_URL"] == secret + "2"


def test_a_failed_install_names_the_index_with_the_password_masked(tmp_path):
    venv = tmp_path / "venv"
    settings = {"index_url": "http://user:s3cret@127.0.0.1:9/simple", "extra_index_urls": [], "ca_bundle": None,
                "installer": "pip"}
    converge(params(venv))
    with pytest.raises(VenvError) as failure:
        converge(params(venv, settings=settings, requirements=["six==1.16.0"]))
    assert "s3cret" not in str(failure.value)
    assert mask_credentials(settings["index_url"]) == "http://user:********@127.0.0.1:9/simple"


def test_plan_changes_nothing_and_asks_the_installer(tmp_path):
    venv = tmp_path / "venv"
    assert plan(params(venv, requirements=["six==1.16.0"]))["changed"]  # absent: everything to do
    assert not venv.exists()
    converge(params(venv, requirements=["six==1.16.0"]))
    before = installed_distributions(str(venv))
    assert not plan(params(venv, requirements=["six>=1.10"]))["changed"]  # the installer's dry run settles it
    assert plan(params(venv, requirements=["six==1.17.0"]))["changed"]
    assert plan(params(venv, requirements=["tomli==2.0.1"]))["changed"]
    assert installed_distributions(str(venv)) == before


def test_plan_shows_the_settings_files_that_would_change(tmp_path):
    venv = tmp_path / "venv"
    converge(params(venv))
    settings = {"index_url": None, "extra_index_urls": ["https://extra.example/simple"], "ca_bundle": None,
                "installer": "pip"}
    result = plan(params(venv, settings=settings))
    assert result["changed"]
    assert [change["after_header"] for change in result["diff"]] == [str(venv / "pip.conf"),
                                                                     str(venv / "devbox-installer.json")]
    assert "extra-index-url = https://extra.example/simple" in result["diff"][0]["after"]
    assert "extra.example" not in (venv / "pip.conf").read_text()
