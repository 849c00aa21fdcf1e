"""What status reads and concludes: requested packages, the next run, swap, the volume."""
import os

from ansible_collections.devbox.machine.plugins.module_utils.devbox_machine_status import next_run, swap, unmet, volume


def test_unmet_names_absent_packages_and_pins_that_differ():
    installed = {"numpy": "2.0.1", "six": "1.16.0", "tomli": "2.0.1"}
    assert unmet(["numpy", "Six==1.16.0", "tomli==2.0.2", "rich", "numpy>=1.0"], installed) == [
        "tomli==2.0.2 (installed: 2.0.1)", "rich"]


def facts(**overrides):
    base = {"user_exists": True,
            "python_env": {"health": "ok", "reason": "", "missing": []},
            "jupyter": {"installed": True, "healthy": True, "settings": {"ip": "devbox-local", "port": 8888}},
            "provisioned": {"record": {"commit": "abc1234", "time": "t", "tags": []}}}
    base.update(overrides)
    return base


WANTED = {"user": "pythonuser", "jupyter_port": 8888, "jupyter_ip": "devbox-local", "commit": "abc1234"}


def test_a_converged_machine_owes_nothing():
    assert next_run(facts(), WANTED) == []


def test_next_run_lists_each_difference():
    changes = next_run(facts(python_env={"health": "broken", "reason": "Python 3.10 is gone", "missing": ["rich"]},
                             jupyter={"installed": True, "healthy": False, "settings": {"ip": "127.0.0.1", "port": 9999}},
                             provisioned={"record": {"commit": "0ld0ld0"}}), WANTED)
    assert changes == ["rebuild the venv: Python 3.10 is gone", "install rich",
                       "move Jupyter to port 8888 (now 9999)", "make Jupyter listen on devbox-local (now 127.0.0.1)",
                       "start Jupyter", "apply this checkout (abc1234; the last run used 0ld0ld0)"]


def test_an_auto_address_is_not_compared_and_a_missing_user_says_all():
    assert next_run(facts(jupyter={"installed": True, "healthy": True, "settings": {"ip": "fly-local-6pn", "port": 8888}}),
                    dict(WANTED, jupyter_ip="auto")) == []
    assert next_run(facts(user_exists=False), WANTED) == ["create the user pythonuser and everything in the home"]


def test_swap_reads_meminfo(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       32768000 kB\nSwapTotal:       2097152 kB\nSwapFree:        1048576 kB\n")
    assert swap(str(meminfo)) == {"total_mb": 2048, "free_mb": 1024}


def test_volume_of_a_missing_and_an_existing_home(tmp_path):
    assert volume(str(tmp_path / "absent")) == {"exists": False}
    found = volume(str(tmp_path))
    assert found["exists"] and found["size_mb"] > 0 and 0 <= found["used_percent"] <= 100
    assert found["mount_point"] is os.path.ismount(str(tmp_path))


def test_another_venv_dir_is_read_and_named_in_the_status_line(tmp_path):
    import subprocess
    import sys

    from ansible_collections.devbox.machine.plugins.module_utils.devbox_machine_status import python_env
    from test_module_docs import ROOT, load
    status = load(os.path.join(ROOT, "plugins", "modules", "devbox_status.py"))
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / ".venvs" / "main")], check=True)
    found = python_env(str(tmp_path), [], ".venvs/main")
    assert found["path"] == f"{tmp_path}/.venvs/main" and found["health"] != "absent"
    assert status.venv_line(found).startswith(f"Venv: {tmp_path}/.venvs/main, Python ")
    assert status.venv_line(python_env(str(tmp_path), [])) == f"Venv: {tmp_path}/project-venv does not exist"
