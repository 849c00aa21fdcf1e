"""The venv logic against real venvs and the real package index (pip and uv)."""
import json
import os
import re
import subprocess
import sys
import threading

import pytest

from ansible_collections.devbox.machine.plugins.module_utils import devbox_uv_bootstrap
from ansible_collections.devbox.machine.plugins.module_utils.devbox_venv import (Lock, VenvError, check_free_space, converge, diff, forget_old_requested, install_command,
                         installed_distributions, installer_env, load_requested, lock_text, marker_holds,
                         mask_credentials, parse_lock, pip_conf_text, plan, read_distributions, venv_health)


def params(venv, **overrides):
    base = {"path": str(venv), "base_python": sys.executable, "requirements": [],
            "installer": "pip", "settings": {"index_url": None, "extra_index_urls": [], "ca_bundle": None,
                                             "installer": "pip"},
            "min_free_mb": 1, "lock_timeout": 5}
    base.update(overrides)
    return base


def uv_settings():
    """The uv installer with PyPI, trusting the CA bundle this computer uses."""
    return {"index_url": None, "extra_index_urls": [], "ca_bundle": os.environ.get("SSL_CERT_FILE"), "installer": "uv"}


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


def test_a_venv_in_a_folder_not_there_yet_is_made_with_its_project(tmp_path):
    venv, project = tmp_path / ".venvs" / "main", tmp_path / "work" / "src"
    result = converge(params(venv, project_dir=str(project)))
    assert result["changed"] and (venv / "bin" / "python").exists() and project.is_dir()
    assert result["lock_path"] == str(project / "requirements.lock")


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
    settings = uv_settings()
    result = converge(params(venv, installer="uv", settings=settings, requirements=["six==1.16.0"]))
    assert os.access(venv / "bin" / "uv", os.X_OK)
    # uv's wheel read from the index (devbox_uv_bootstrap): the venv made by it, uv installed with its metadata.
    assert "uv = " in (venv / "pyvenv.cfg").read_text(), "made by the fetched uv, not python -m venv"
    assert "uv" in installed_distributions(str(venv))
    assert read_distributions(str(venv))["uv"]["direct_url"] is None, "as from an index: the lock pins uv==version"
    assert set(installed_distributions(str(venv))) == {"pip", "uv", "six"}, "pip beside uv, as python -m venv has it"
    assert subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "--version"]).returncode == 0
    assert not list(tmp_path.glob(".uv-bootstrap-*")), "the download folder is removed"
    assert "six==1.16.0" in result["installed"]
    again = converge(params(venv, installer=None, settings=None, requirements=["six==1.16.0"]))
    assert not again["changed"]


def test_without_a_wheel_for_this_machine_uv_comes_through_ensurepip_and_pip(tmp_path, monkeypatch):
    monkeypatch.setattr(devbox_uv_bootstrap, "glibc_version", lambda: None)  # as on a musl system
    venv = tmp_path / "project-venv"
    settings = uv_settings()
    result = converge(params(venv, installer="uv", settings=settings, requirements=["six==1.16.0"]))
    assert "uv = " not in (venv / "pyvenv.cfg").read_text(), "python -m venv made it"
    assert os.access(venv / "bin" / "uv", os.X_OK) and "uv" in installed_distributions(str(venv))
    assert "six==1.16.0" in result["installed"]
    assert not list(tmp_path.glob(".uv-bootstrap-*"))


def test_a_service_venv_is_made_with_the_project_venvs_uv_and_still_has_pip(tmp_path):
    """A service's own venv is made with the uv the project venv holds (uv venv --seed, not ensurepip) and gets a
    copy of it; pip is there (JupyterLab's extension manager installs with it)."""
    uv = os.path.join(os.path.dirname(sys.executable), "uv")
    venv = tmp_path / "jupyter"
    settings = uv_settings()
    result = converge(params(venv, installer=None, settings=settings, requirements=["six==1.16.0"], uv_from=uv))
    assert "six==1.16.0" in result["installed"]
    assert venv_health(str(venv), sys.executable)[0] == "ok"
    assert "uv = " in (venv / "pyvenv.cfg").read_text(), "made by uv venv, not python -m venv"
    assert subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "--version"]).returncode == 0
    assert (venv / "bin" / "uv").read_bytes() == open(uv, "rb").read()
    again = converge(params(venv, installer=None, settings=settings, requirements=["six==1.16.0"], uv_from=uv))
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


def test_a_bare_name_keeps_a_rebuilt_venvs_version(tmp_path):
    venv = tmp_path / "project-venv"
    converge(params(venv, requirements=["six==1.16.0"]))
    os.remove(venv / "bin" / "python")
    result = converge(params(venv, requirements=["six"]))  # as site.yml asks for jupyterlab
    assert installed_distributions(str(venv))["six"] == "1.16.0"
    assert result["reinstalled"] == ["six==1.16.0"]


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
    absent = plan(params(venv, requirements=["six==1.16.0"]))
    assert absent["changed"] and absent["would_install"] == ["six==1.16.0"]  # absent: everything to do
    assert not venv.exists()
    converge(params(venv, requirements=["six==1.16.0"]))
    before = installed_distributions(str(venv))
    settled = plan(params(venv, requirements=["six>=1.10"]))
    assert not settled["changed"] and settled["would_install"] == []  # the installer's dry run settles it
    assert plan(params(venv, requirements=["six==1.17.0"]))["would_install"] == ["six==1.17.0"]
    assert plan(params(venv, requirements=["six==1.16.0", "tomli==2.0.1"]))["would_install"] == ["tomli==2.0.1"]
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


# The lock: the venv's exact set, from its metadata; installed elsewhere; python_env_sync.

def write_dist_requiring(site, name, version, *requires):
    write_dist(site, name, version)
    metadata = site / f"{name}-{version}.dist-info" / "METADATA"
    header = "".join(f"Requires-Dist: {line}\n" for line in requires)
    metadata.write_text(metadata.read_text().replace("\n\n", "\n" + header + "\n", 1))


def fake_venv(tmp_path, python="3.11.4"):
    venv = tmp_path / "venv"
    site = venv / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text(f"home = /usr/bin\nversion = {python}\n")
    return venv, site


def test_lock_pins_everything_and_marks_what_no_playbook_asked_for(tmp_path):
    venv, site = fake_venv(tmp_path)
    write_dist_requiring(site, "Requests", "2.32.3", "idna<4,>=2.5", 'PySocks!=1.5.7; extra == "socks"',
                         'tomli>=1; python_version < "3.11"')
    write_dist(site, "idna", "3.10")
    write_dist(site, "tomli", "2.0.1")  # only required below 3.11: here it came by hand
    write_dist(site, "pysocks", "1.7.1")  # only for requests[socks], which nobody asked for
    write_dist(site, "pip", "24.0")
    settings = {"index_url": "https://user:s3cret@mirror.example/simple", "extra_index_urls": []}

    text = lock_text(str(venv), settings, {"requests": []})

    assert "# python: 3.11.4\n" in text
    assert "# index: https://user:********@mirror.example/simple\n" in text and "s3cret" not in text
    pins = [line for line in text.splitlines() if not line.startswith("#")]
    assert pins == ["idna==3.10", "pip==24.0", "pysocks==1.7.1  # by hand", "requests==2.32.3",
                    "tomli==2.0.1  # by hand"]
    assert "pysocks==1.7.1\n" in lock_text(str(venv), settings, {"requests": ["socks"]})


def test_dependencies_after_a_multi_line_license_are_read(tmp_path):
    venv, site = fake_venv(tmp_path)
    info = site / "jupyterlab-4.4.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.4\nName: jupyterlab\nVersion: 4.4.0\n"
                                   "License: BSD 3-Clause License\n        \n        Copyright (c) 2015\n"
                                   "Requires-Dist: jupyter-server<3,>=2.4.0\n\nThe description\n")
    write_dist(site, "jupyter-server", "2.14.0")
    assert "jupyter-server==2.14.0\n" in lock_text(str(venv), {}, {"jupyterlab": []})


def test_lock_is_made_from_the_metadata_alone(tmp_path, monkeypatch):
    venv, site = fake_venv(tmp_path)
    write_dist(site, "six", "1.16.0")

    def no_process(*args, **kwargs):
        raise AssertionError("the lock must not run an installer or reach the network")

    monkeypatch.setattr(subprocess, "run", no_process)
    assert lock_text(str(venv), {}, {"six": []}).endswith("six==1.16.0\n")


def test_marker_evaluation_covers_versions_platforms_and_extras():
    environment = {"python_version": "3.11", "python_full_version": "3.11.4", "sys_platform": "linux",
                   "platform_system": "Linux", "os_name": "posix", "platform_machine": "x86_64",
                   "implementation_name": "cpython", "platform_python_implementation": "CPython"}
    assert not marker_holds('python_version < "3.11"', environment, set())
    assert marker_holds('python_version >= "3.8" and sys_platform == "linux"', environment, set())
    assert not marker_holds('sys_platform == "win32" or platform_system == "Darwin"', environment, set())
    assert marker_holds('(extra == "test") or python_version == "3.*"', environment, set())
    assert not marker_holds('extra == "test"', environment, {"docs"})
    assert marker_holds('extra == "Test"', environment, {"test"})
    assert marker_holds('some_future_variable == "x"', environment, set()), "not understood: counts as true"


def test_a_lock_reads_back_with_its_lines_marks_and_python():
    lock = parse_lock("# python: 3.11.4\n# index: PyPI\n\nsix==1.16.0\ntomli==2.0.1  # by hand\n"
                      "# local==1.0  # not locked: installed from the local directory file:///x\n"
                      "pkg @ https://example.org/pkg-1.0.tar.gz\n", "a.lock")
    assert lock["python"] == "3.11"
    assert [(e["line"], e["name"], e["version"], e["by_hand"]) for e in lock["entries"]] == [
        (4, "six", "1.16.0", False), (5, "tomli", "2.0.1", True), (7, "pkg", None, False)]


def test_a_line_that_is_not_pinned_is_named_with_its_number():
    with pytest.raises(VenvError, match=r"locks/a\.lock line 3: 'numpy>=1' is not a locked distribution"):
        parse_lock("# python: 3.11\nsix==1.16.0\nnumpy>=1\n", "locks/a.lock")


def test_a_lock_from_another_python_fails_before_anything_changes(tmp_path):
    venv = tmp_path / "venv"
    with pytest.raises(VenvError) as failure:
        converge(params(venv, lock_text="# python: 3.6.15\nsix==1.16.0\n", lock_name="locks/old.lock"))
    message = str(failure.value)
    assert "locks/old.lock was made on Python 3.6" in message and "take a new lock on a Python 3." in message
    assert not venv.exists()
    with pytest.raises(VenvError, match="made on Python 3.6"):
        plan(params(venv, lock_text="# python: 3.6.15\nsix==1.16.0\n"))


def test_sync_needs_a_lock_that_holds_what_the_playbook_asks_for(tmp_path):
    with pytest.raises(VenvError, match="python_env_sync needs python_env_lock_file"):
        converge(params(tmp_path / "venv", sync=True))
    with pytest.raises(VenvError, match="python_env_sync would remove tomli right after installing it"):
        converge(params(tmp_path / "venv", sync=True, requirements=["tomli"], lock_text="six==1.16.0\n"))
    assert not (tmp_path / "venv").exists()


def this_python() -> str:
    return "%d.%d.%d" % sys.version_info[:3]


def test_a_lock_installs_the_same_set_elsewhere_and_sync_removes_the_rest(tmp_path):
    first, project = tmp_path / "first", tmp_path / "project"
    converge(params(first, project_dir=str(project), requirements=["six==1.16.0"]))
    subprocess.run([str(first / "bin" / "python"), "-m", "pip", "install", "-q", "tomli==2.0.1"], check=True)
    result = converge(params(first, project_dir=str(project), requirements=["six==1.16.0"]))
    assert result["lock_written"] and not result["changed"], "a hand install changes the lock, not the venv"
    lock = (project / "requirements.lock").read_text()
    assert result["lock"] == lock and "six==1.16.0\n" in lock and "tomli==2.0.1  # by hand\n" in lock

    second = tmp_path / "second"
    converge(params(second, requirements=["packaging==24.1"]))
    installed = converge(params(second, lock_text=lock, lock_name="first.lock"))
    assert "six==1.16.0" in installed["installed"] and installed["removed"] == []
    assert set(installed_distributions(str(second))) - set(installed_distributions(str(first))) == {"packaging"}
    assert not converge(params(second, lock_text=lock))["changed"]

    assert plan(params(second, lock_text=lock, sync=True))["removed"] == ["packaging==24.1"]
    synced = converge(params(second, lock_text=lock, sync=True))
    assert synced["removed"] == ["packaging==24.1"]
    assert installed_distributions(str(second)) == installed_distributions(str(first))
    # The hand-installed line stays marked on the second machine too.
    (tmp_path / "project2").mkdir()
    again = converge(params(second, project_dir=str(tmp_path / "project2"), lock_text=lock, sync=True))
    assert not again["changed"] and again["lock_written"]
    assert again["lock"] == lock


def test_a_lock_line_the_index_cannot_resolve_is_named(tmp_path):
    venv = tmp_path / "venv"
    converge(params(venv))
    lock = f"# python: {this_python()}\nsix==1.16.0\ndevbox-no-such-dist==9.9\n"
    with pytest.raises(VenvError, match=r"mine\.lock line 3: devbox-no-such-dist==9\.9: cannot be installed"):
        converge(params(venv, lock_text=lock, lock_name="mine.lock"))
    assert "six" not in installed_distributions(str(venv)), "nothing was installed"


def test_a_local_or_editable_install_is_left_out_of_the_portable_set(tmp_path):
    venv, site = fake_venv(tmp_path)
    write_dist(site, "six", "1.16.0")
    write_dist(site, "mytool", "0.1.0")
    direct_url = {"url": "file:///home/pythonuser/project/mytool", "dir_info": {"editable": True}}
    (site / "mytool-0.1.0.dist-info" / "direct_url.json").write_text(json.dumps(direct_url))
    assert read_distributions(str(venv))["mytool"]["direct_url"] == direct_url
    assert read_distributions(str(venv))["six"]["direct_url"] is None
    assert installed_distributions(str(venv)) == {"six": "1.16.0", "mytool": "0.1.0"}
    assert installed_distributions(str(venv), portable_only=True) == {"six": "1.16.0"}


# Issue 24, finding 4: the token-only forms (Gemfury, Azure) carry the secret as the user name.
@pytest.mark.parametrize("url, shown", [
    ("https://sometoken:@pypi.org/simple", "https://********:@pypi.org/simple"),
    ("https://sometoken@pypi.org/simple", "https://********@pypi.org/simple"),
    ("https://user:sometoken@pypi.org/simple", "https://user:********@pypi.org/simple"),
    ("pkg @ git+https://sometoken@github.com/org/pkg@v1", "pkg @ git+https://********@github.com/org/pkg@v1"),
    ("pkg @ git+ssh://git@github.com/org/pkg@v1", "pkg @ git+ssh://git@github.com/org/pkg@v1"),
    ("https://pypi.org/simple", "https://pypi.org/simple"),
    ("pkg @ https://files.example/pkg-1.0.tar.gz#sha256=ab", "pkg @ https://files.example/pkg-1.0.tar.gz#sha256=ab"),
])
def test_token_only_index_urls_are_masked(url, shown):
    assert mask_credentials(url) == shown
    assert "sometoken" not in mask_credentials(f"failed: {url} (see {url})")


def test_the_machines_lock_never_holds_an_index_token(tmp_path):
    venv, site = fake_venv(tmp_path)
    write_dist(site, "six", "1.16.0")
    settings = {"index_url": "https://sometoken:@pypi.org/simple",
                "extra_index_urls": ["https://othertoken@pkgs.dev.azure.com/org/_packaging/feed/pypi/simple"]}
    text = lock_text(str(venv), settings, {"six": []})
    assert "# index: https://********:@pypi.org/simple\n" in text
    assert "# extra index: https://********@pkgs.dev.azure.com/org/_packaging/feed/pypi/simple\n" in text
    assert "sometoken" not in text and "othertoken" not in text


# Issue 24, finding 3: a lock line can hide itself on a terminal (\x1b[8m: hidden text, \x1b[2K: erase line).
@pytest.mark.parametrize("hidden", ["evil @ https://evil.example/evil.tar.gz#\x1b[2K\x1b[1A",
                                    "evil @ https://evil.example/evil.tar.gz\x1b[8m",
                                    "\x1b[8mevil @ https://evil.example/evil.tar.gz\x1b[0m",
                                    "six==1.16.0\r", "six==1.16.0\x85", "six==1.16.0\u202e"])
def test_a_lock_line_with_control_characters_is_refused_before_anything_is_installed(tmp_path, hidden):
    venv = tmp_path / "venv"
    lock = f"# python: {this_python()}\nsix==1.16.0\n{hidden}\n"
    with pytest.raises(VenvError) as refused:
        converge(params(venv, lock_text=lock, lock_name="locks/shared.lock"))
    message = str(refused.value)
    assert message.startswith("locks/shared.lock line 3: ") and "control character" in message
    assert repr(hidden) in message and hidden not in message, "the line is shown escaped"
    assert not venv.exists(), "nothing was installed"
    with pytest.raises(VenvError, match="control character"):
        plan(params(venv, lock_text=lock))


def test_the_locks_url_requirements_are_listed_masked(tmp_path):
    lock = "pkg @ https://sometoken@files.example/pkg-1.0.tar.gz\nsix==1.16.0\n"
    assert plan(params(tmp_path / "venv", lock_text=lock))["url_requirements"] == [
        "pkg @ https://********@files.example/pkg-1.0.tar.gz"]


def test_the_machines_lock_never_carries_a_hidden_line(tmp_path):
    venv, site = fake_venv(tmp_path)
    write_dist(site, "six", "1.16.0")
    write_dist(site, "evil\x1b[8m", "1.0")
    text = lock_text(str(venv), {}, {"six": []})
    assert "\x1b" not in text and "# not locked: 'evil\\x1b[8m==1.0' holds a control character" in text


def test_the_requested_list_is_roots_and_the_venvs_old_one_moves_over(tmp_path):
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / "devbox-requested.json").write_text(json.dumps({"tabulate": [], "Six": ["x"], "bad name": [], "n": 3}))
    # A machine without root's record yet: the venv's old list is moved over (read as data: junk dropped).
    assert load_requested(str(venv), {"requested": None}) == {"tabulate": [], "six": ["x"]}
    # With root's record, whatever the user writes in the venv is not read, and the old file goes.
    assert load_requested(str(venv), {"requested": {"six": []}}) == {"six": []}
    forget_old_requested(str(venv), {"requested": {"six": []}})
    assert not (venv / "devbox-requested.json").exists()


def test_the_run_says_what_it_did_beyond_installing():
    from ansible_collections.devbox.machine.plugins.modules.devbox_venv import notes
    given = {"path": "/home/u/project-venv", "lock_name": "locks/m.lock", "project_name": "~/repo", "sync": True}
    result = {"rebuilt": "its Python changed", "reinstalled": ["six==1.16.0"], "moved": [],
              "url_requirements": ["pkg @ https://example.org/pkg.whl"], "installed": ["six==1.16.0"],
              "removed": ["colorama==0.4.6"], "upgraded": [], "torch_index": "https://download.pytorch.org/whl/cpu",
              "project": {"synced": True, "added_on_top": ["ipykernel"]}}
    said = notes(result, given, dry_run=True)
    assert said[0] == "Rebuilt /home/u/project-venv (its Python changed); reinstalled: six==1.16.0"
    assert said[1].startswith("locks/m.lock installs from URLs") and said[1].endswith("pkg @ https://example.org/pkg.whl")
    assert said[2].startswith("Synced ~/repo: installed six==1.16.0; removed colorama==0.4.6; added on top of the lock: "
                              "ipykernel (the kernel needs it; `uv add --dev ipykernel`")
    assert said[3].startswith("torch comes from https://download.pytorch.org/whl/cpu")
    assert said[4] == "python_env_sync would remove what locks/m.lock does not list: colorama==0.4.6"
    quiet = {"rebuilt": None, "url_requirements": [], "installed": ["six==1.16.0"], "removed": [], "project": None,
             "torch_index": None}
    assert notes(quiet, dict(given, sync=False), dry_run=False) == []


def test_the_shell_block_is_kept_in_the_same_run(tmp_path):
    from ansible_collections.devbox.machine.plugins.modules.devbox_venv import with_shell_block
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text("alias ll='ls -l'\n")
    work = lambda given: {"changed": False}  # noqa: E731 - a venv with nothing to do
    assert with_shell_block(work, str(home), "project-venv", "project", False, {})["changed"]
    text = (home / ".bashrc").read_text()
    assert text.startswith("alias ll='ls -l'\n") and '. "$HOME/project-venv/bin/activate"' in text
    assert not with_shell_block(work, str(home), "project-venv", "project", False, {})["changed"]
    assert with_shell_block(work, str(home), "venvs/main", "project", True, {})["changed"], "a dry run says it"
    assert (home / ".bashrc").read_text() == text, "and writes nothing"


def test_metadata_headers_are_read_as_the_email_parser_reads_them(tmp_path):
    """A folded License (its lines indented, some only spaces) and a body that looks like headers: what
    importlib.metadata says, without its parser."""
    import importlib.metadata
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    info = site / "Some_Pkg-1.2.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.4\nName: Some_Pkg\nVersion: 1.2\nLicense: MIT\n        \n        Name: not this\n"
        "Requires-Dist: six>=1.16\nRequires-Dist: tomli-w; extra == \"dev\"\n\nName: nor this\nRequires-Dist: nope\n")
    (info / "direct_url.json").write_text('{"url": "file:///src/some_pkg"}')
    read = read_distributions(str(tmp_path / "venv"))
    dist = importlib.metadata.PathDistribution(info)
    assert read == {"some-pkg": {"name": "some-pkg", "version": dist.metadata["Version"], "requires": dist.requires,
                                 "direct_url": {"url": "file:///src/some_pkg"}}}
    assert dist.requires == ["six>=1.16", 'tomli-w; extra == "dev"']


def test_an_egg_info_is_read_by_importlib_metadata(tmp_path):
    info = tmp_path / "venv" / "lib" / "python3.11" / "site-packages" / "old_pkg-0.1-py3.11.egg-info"
    info.mkdir(parents=True)
    (info / "PKG-INFO").write_text("Metadata-Version: 1.1\nName: old-pkg\nVersion: 0.1\n")
    (info / "requires.txt").write_text("six\n")
    assert read_distributions(str(tmp_path / "venv"))["old-pkg"]["requires"] == ["six"]


def test_the_shell_block_takes_plain_folders_in_the_home_only():
    from ansible_collections.devbox.machine.plugins.modules.devbox_venv import shell_block_dirs
    assert shell_block_dirs("/home/u", "/home/u/.venvs/main", "/home/u/project") == ([".venvs/main", "project"], None)
    for home, venv, project in (("/home/u", "/home/u/v$(id)", "/home/u/p"), ("/home/u", "/opt/venv", "/home/u/p"),
                                (None, "/home/u/v", "/home/u/p"), ("/home/u", "/home/u/v", None)):
        assert shell_block_dirs(home, venv, project)[1], (home, venv, project)
