"""What status reads and concludes: requested packages, the next run, swap, the volume."""
import os
import time

from ansible_collections.devbox.machine.plugins.module_utils.devbox_machine_status import next_run, swap, unmet, volume


def test_unmet_names_absent_packages_and_pins_that_differ():
    installed = {"numpy": "2.0.1", "six": "1.16.0", "tomli": "2.0.1"}
    assert unmet(["numpy", "Six==1.16.0", "tomli==2.0.2", "rich", "numpy>=1.0"], installed) == [
        "tomli==2.0.2 (installed: 2.0.1)", "rich"]


def facts(**overrides):
    base = {"user_exists": True,
            "python_env": {"health": "ok", "reason": "", "missing": []},
            "provisioned": {"record": {"commit": "abc1234", "time": "t", "tags": []}}}
    base.update(overrides)
    return base


WANTED = {"user": "alice", "commit": "abc1234"}


def test_a_converged_machine_owes_nothing():
    assert next_run(facts(), WANTED) == []


def test_next_run_lists_each_difference():
    changes = next_run(facts(python_env={"health": "broken", "reason": "Python 3.10 is gone", "missing": ["rich"]},
                             provisioned={"record": {"commit": "0ld0ld0"}}), WANTED)
    assert changes == ["rebuild the venv: Python 3.10 is gone", "install rich",
                       "apply this checkout (abc1234; the last run used 0ld0ld0)"]


def test_a_missing_user_says_all():
    assert next_run(facts(user_exists=False), WANTED) == ["create the user alice and everything in the home"]


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
    from ansible_collections.devbox.machine.plugins.modules import devbox_status as status
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / ".venvs" / "main")], check=True)
    found = python_env(str(tmp_path), [], ".venvs/main")
    assert found["path"] == f"{tmp_path}/.venvs/main" and found["health"] != "absent"
    assert status.venv_line(found).startswith(f"Venv: {tmp_path}/.venvs/main, Python ")
    assert status.venv_line(python_env(str(tmp_path), [], "venv")) == f"Venv: {tmp_path}/venv does not exist"


def test_services_lists_every_record_with_its_probe(tmp_path):
    import socket

    from ansible_collections.devbox.machine.plugins.module_utils.devbox_machine_status import services
    from ansible_collections.devbox.machine.plugins.module_utils.devbox_service import normalize, record, register
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        for name, listening in (("streamlit", port), ("app", 1024 if port != 1024 else 1025)):
            entry = normalize({"name": name, "port": listening, "command": ["x"], "url_path": "/x"})
            register(str(tmp_path), record(entry, str(tmp_path), "project-venv", "project", "services"))
        (tmp_path / ".devbox" / "service-broken.json").write_text("{}")
        found = services(str(tmp_path), os.getuid())
    assert found["services"] == [{"name": "app", "port": 1024 if port != 1024 else 1025, "url_path": "/x",
                                  "healthy": False},
                                 {"name": "streamlit", "port": port, "url_path": "/x", "healthy": True}]
    assert len(found["problems"]) == 1 and "service-broken.json" in found["problems"][0]
    assert services(str(tmp_path), None)["services"][1]["healthy"] is False, "no user: nothing of theirs listens"


def test_the_idle_line_reads_the_setting_and_the_boot_steps_last_look(tmp_path, monkeypatch):
    from ansible_collections.devbox.machine.plugins.module_utils import devbox_machine_status
    from ansible_collections.devbox.machine.plugins.module_utils.devbox_idle import save_setting
    assert devbox_machine_status.idle_stop(str(tmp_path)) == {"minutes": 0, "line": "Idle stop: off (idle_stop_minutes: 0)"}
    save_setting(str(tmp_path), {"minutes": 60, "warn_minutes": 5, "gpu_percent": 10, "before_stop": None}, now=1.0)
    monkeypatch.setattr(devbox_machine_status, "boot_step_running", lambda: True)
    monkeypatch.setattr(devbox_machine_status, "read_state", lambda: {
        "time": time.time(), "poll_s": 60, "minutes": 60, "idle_for_s": 0, "in_use": "GPU 0 at 87%",
        "held_until": None, "stops_at": None})
    assert devbox_machine_status.idle_stop(str(tmp_path)) == {"minutes": 60, "line": "Idle stop: in use: GPU 0 at 87%"}
    monkeypatch.setattr(devbox_machine_status, "boot_step_running", lambda: False)
    assert "does not run on this machine" in devbox_machine_status.idle_stop(str(tmp_path))["line"]
