"""Nothing lost: bad input, restarts, a dead Jupyter, a broken venv, interrupted and parallel runs.

One local machine (the shipped image, a named volume as home) is provisioned once; each test
changes something the way a user or the platform would, then checks the volume and what the
next run reports. A restart is modelled as on Fly: the container is removed and a new one is
started from the same image with the same volume.
"""
import json
import os
import re
import signal
import subprocess
import tempfile
import time

import pytest

from docker_machines import LocalMachine, TEST_IMAGE, changed_tasks, docker, fresh, recap_changed, tagged, wait_until

HOME = "/home/pythonuser"
VENV = f"{HOME}/project-venv"
# The one launcher, as the module keeps it (root's own file) and PID 1 runs it: NAME start|stop|restart|status.
LAUNCHER = f"python3 {HOME}/.devbox/lib/ansible_collections/devbox/machine/plugins/module_utils/devbox_launcher.py jupyter"
LIBRARIES = "/usr/local/lib/devbox/ansible_collections/devbox/machine/plugins/module_utils"
# The controller's copy of the machine's lock goes to a folder of this module's own: every local
# machine is the inventory's one host, devbox-local, and `make up` or another test writing
# locks/devbox-local.requirements.lock meanwhile would make a rerun here report a change.
LOCKS = tempfile.mkdtemp(prefix="devbox-locks-")


def run(machine, *extra):
    result = machine.provision("-e", json.dumps({"python_env_packages": ["six==1.16.0"]}),
                               "-e", json.dumps({"python_env_lock_copy_dir": LOCKS}), *extra, capture=True)
    return result.returncode, result.stdout + result.stderr


def jupyter_status(machine) -> dict:
    result = machine.exec(LAUNCHER + " status", user="pythonuser")
    return json.loads(result.stdout)


def token(machine) -> str:
    return machine.exec(f"cat {HOME}/.jupyter/devbox_token").stdout


def distributions(machine) -> str:
    return machine.exec(f"ls {VENV}/lib/python3*/site-packages | grep dist-info | sort").stdout


@pytest.fixture(scope="module")
def machine():
    with fresh(LocalMachine(name=tagged("devbox-lifecycle"), volume=tagged("devbox-lifecycle-home"),
                            image=TEST_IMAGE)) as machine:
        rc, output = run(machine)
        assert rc == 0, output[-3000:]
        yield machine


@pytest.mark.parametrize("variable, value, expected", [
    ("dev_user_name", "Bad Name", "dev_user_name=\"Bad Name\""),
    ("dev_user_uid", "abc", "dev_user_uid"),
    ("gpu_required", "maybe", "gpu_required=\"maybe\""),
    ("python_env_packages", ["numpy==="], "\"numpy===\" is not a requirement specifier"),
    ("python_env_installer", "conda", "python_env_installer"),
    ("python_env_index_url", "mirror.local/simple", "\"mirror.local/simple\" is not an http(s)"),
    ("jupyter_ip", "0.0.0.0", "jupyter_ip=0.0.0.0"),
    ("jupyter_port", 80, "jupyter_port=80"),
    ("swap_min_mb", "lots", "swap_min_mb"),
])
def test_bad_input_is_rejected_before_any_change(machine, variable, value, expected):
    before = (jupyter_status(machine)["pid"], distributions(machine), token(machine))
    rc, output = run(machine, "-e", json.dumps({variable: value}))
    assert rc != 0
    assert expected in output
    assert "TASK [Check the inputs and look at the machine]" in output
    assert re.search(r": ok=0\s+changed=0\s+unreachable=0\s+failed=1", output), "the check fails the first task"
    assert (jupyter_status(machine)["pid"], distributions(machine), token(machine)) == before


def test_uid_of_another_account_is_refused_with_the_way_out(machine):
    before = (jupyter_status(machine)["pid"], distributions(machine))
    rc, output = run(machine, "-e", json.dumps({"dev_user_uid": 1, "dev_user_gid": 1}))
    assert rc != 0
    assert "uid 1 already belongs to user 'daemon'" in output and "set dev_user_uid" in output
    assert machine.exec("id -u pythonuser").stdout.strip() == "1000"
    assert (jupyter_status(machine)["pid"], distributions(machine)) == before


def test_too_little_swap_warns_or_fails_naming_the_fly_toml_key(machine):
    rc, output = run(machine, "-e", json.dumps({"swap_min_mb": 10**6}))
    assert rc == 0 and "[WARNING]: Swap is" in output and "`swap_size_mb = 1000000` in fly.toml" in output
    # Converged, the look warns the same, and the swap role does not run again for it.
    rc, output = run(machine, "-e", json.dumps({"swap_min_mb": 10**6}), "-v")
    assert rc == 0 and "[WARNING]: Swap is" in output and "TASK [swap :" not in output
    rc, output = run(machine, "-e", json.dumps({"swap_min_mb": 10**6, "swap_required": True}))
    assert rc != 0 and "below swap_min_mb=1000000" in output


def test_changed_settings_restart_jupyter(machine):
    pid = jupyter_status(machine)["pid"]
    rc, output = run(machine, "-e", json.dumps({"jupyter_port": 8899}))
    assert rc == 0, output[-3000:]
    status = jupyter_status(machine)
    assert status["healthy"] and status["pid"] != pid and status["url"].endswith(":8899/")
    rc, output = run(machine)
    assert rc == 0 and jupyter_status(machine)["url"].endswith(":8888/")


def test_second_run_changes_nothing_and_prints_the_token_once(machine):
    rc, output = run(machine)
    assert rc == 0 and recap_changed(output) == 0, changed_tasks(output) or output[-3000:]
    assert output.count(token(machine)) == 1, "the token appears only in the report's URL line"
    assert re.search(r"jupyter: http://localhost:8888/lab\?token=" + token(machine), output)


def test_package_that_cannot_install_fails_with_pips_reason_and_keeps_the_rest(machine):
    before = (jupyter_status(machine)["pid"], distributions(machine))
    rc, output = run(machine, "-e", json.dumps({"python_env_packages": ["six==1.16.0", "devbox-no-such-dist==9.9"]}))
    assert rc != 0
    assert "package installation failed" in output and "devbox-no-such-dist" in output
    assert (jupyter_status(machine)["pid"], distributions(machine)) == before


def test_too_little_free_space_fails_before_installing(machine):
    before = distributions(machine)
    rc, output = run(machine, "-e", json.dumps({"python_env_min_free_mb": 10**9,
                                                "python_env_packages": ["six==1.16.0", "tomli==2.0.1"]}))
    assert rc != 0 and "below python_env_min_free_mb=1000000000" in output and "fly volumes extend" in output
    assert distributions(machine) == before


def test_restart_restores_user_and_jupyter_without_ansible(machine):
    before_token, before_url = token(machine), jupyter_status(machine)["url"]
    machine.exec(f"echo '{{}}' > {HOME}/project/keep.ipynb", user="pythonuser")
    started = time.monotonic()
    docker("stop", "-t", "30", machine.name, quiet=True)
    assert time.monotonic() - started < 10, "PID 1 must stop promptly on SIGTERM"
    assert docker("inspect", "-f", "{{.State.ExitCode}}", machine.name, quiet=True).stdout.strip() == "0"
    machine.remove()
    machine.start()
    wait_until(lambda: machine.exec(LAUNCHER + " status", user="pythonuser").returncode == 0,
               timeout=60, interval=0.5, what="the boot step to start Jupyter")
    assert machine.exec("id -u pythonuser").stdout.strip() == "1000"
    assert token(machine) == before_token
    # Same port, on the new container's own private address (resolved at launch, as on Fly).
    address = machine.exec(f"getent hosts {machine.name}").stdout.split()[0]
    assert jupyter_status(machine)["url"] == f"http://{address}:8888/"
    assert before_url.endswith(":8888/")
    assert machine.exec(f"cat {HOME}/project/keep.ipynb").stdout.strip() == "{}"
    rc, output = run(machine)
    assert rc == 0 and recap_changed(output) == 0, f"a rerun after a restart reinstalls nothing: {changed_tasks(output)}"
    assert token(machine) == before_token


def test_killed_jupyter_is_noticed_and_restarted_with_its_log_kept(machine):
    pid = jupyter_status(machine)["pid"]
    machine.exec(f"kill -9 {pid}")
    wait_until(lambda: not jupyter_status(machine)["running"], timeout=60, interval=0.5,
               what="the stale pidfile to be noticed")
    rc, output = run(machine)
    assert rc == 0 and recap_changed(output) == 1
    status = jupyter_status(machine)
    assert status["healthy"] and status["pid"] != pid
    starts = machine.exec(f"grep -c -- '--- jupyter start' {HOME}/.local/state/devbox/jupyter.log").stdout
    assert int(starts) >= 2, "the log of the dead server is kept"


def test_venv_without_interpreter_is_rebuilt_with_the_same_packages(machine):
    before_token = token(machine)
    six_before = machine.exec(f"ls -d {VENV}/lib/python3*/site-packages/six-*.dist-info").stdout.strip()
    machine.exec(f"echo '{{}}' > {HOME}/project/keep.ipynb", user="pythonuser")
    machine.exec(f"rm -f {VENV}/bin/python {VENV}/bin/python3 {VENV}/bin/python3.*")
    rc, output = run(machine, "-e", '{"python_env_packages": []}')
    assert rc == 0, output[-3000:]
    assert "Rebuilt /home/pythonuser/project-venv" in output and "six==1.16.0" in output.split("Rebuilt", 1)[1]
    assert machine.exec(f"ls -d {VENV}/lib/python3*/site-packages/six-*.dist-info").stdout.strip() == six_before
    assert machine.exec(f"{VENV}/bin/python -c 'import six, ipykernel'", user="pythonuser").returncode == 0
    assert machine.exec(f"cat {HOME}/project/keep.ipynb").stdout.strip() == "{}"
    assert token(machine) == before_token


def test_interrupted_install_is_completed_by_the_next_run(machine):
    # pandas and numpy take seconds to download and unpack: long enough to be cut halfway.
    extra = json.dumps({"python_env_packages": ["six==1.16.0", "pandas==2.2.3"]})
    controller = subprocess.Popen(machine.playbook_command("-e", extra), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
    wait_until(lambda: "uv pip install" in machine.exec("cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '").stdout
               or controller.poll() is not None, timeout=120, interval=0.5, what="the install to start")
    assert controller.poll() is None, "the run finished before it could be interrupted"
    os.killpg(controller.pid, signal.SIGKILL)
    controller.wait()
    # As when the SSH link drops: the installer on the machine dies too.
    machine.exec("for d in /proc/[0-9]*; do tr '\\0' ' ' < $d/cmdline 2>/dev/null | grep -q 'uv pip install'"
                 " && kill -9 ${d#/proc/}; done; true")
    rc, output = run(machine, "-e", extra)
    assert rc == 0, output[-3000:]
    assert machine.exec(f"{VENV}/bin/python -c 'import pandas'", user="pythonuser").returncode == 0


def test_two_runs_at_once_do_not_corrupt_the_venv(machine):
    extra = json.dumps({"python_env_packages": ["six==1.16.0", "tomli==2.0.1", "idna==3.7", "colorama==0.4.6"]})
    runs = [subprocess.Popen(machine.playbook_command("-e", extra), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True) for _ in range(2)]
    outputs = [process.communicate(timeout=600)[0] for process in runs]
    for process, output in zip(runs, outputs):
        assert process.returncode == 0 or "another run holds the lock" in output, output[-3000:]
    assert machine.exec(f"{VENV}/bin/python -c 'import colorama, six'", user="pythonuser").returncode == 0
    assert machine.exec(f"{VENV}/bin/python -m pip check", user="pythonuser").returncode == 0


def test_root_runs_nothing_the_user_can_write(machine):
    for path in ("/usr/local/sbin/devbox-boot", f"{LIBRARIES}/devbox_records.py", f"{LIBRARIES}/devbox_launcher.py",
                 LIBRARIES, "/usr/local/lib/devbox", "/usr/local/sbin", "/usr/local/lib", "/usr/local", "/usr", "/"):
        owner, mode = machine.exec(f"stat -c '%U %a' {path}").stdout.split()
        assert owner == "root" and int(mode, 8) & 0o022 == 0, f"{path}: {owner} {mode}"
    assert machine.exec("test -w /usr/local/sbin/devbox-boot", user="pythonuser").returncode != 0
    # The launcher the module keeps on the volume is root's own file, run as the user.
    kept = LAUNCHER.split()[1]
    owner, mode = machine.exec(f"stat -c '%U %a' {kept}").stdout.split()
    assert owner == "root" and int(mode, 8) & 0o022 == 0, f"{kept}: {owner} {mode}"
    assert machine.exec(f"test -w {kept}", user="pythonuser").returncode != 0
