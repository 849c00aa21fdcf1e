"""Root never acts on what the user controls; a bad value stops nothing (issue 10).

Each attack is made as an attacker would: with the dev user's shell inside a real container
(renaming entries of the home under root's feet, holding Jupyter's port, spoiling the token
file) or with hostile variable values on the controller. Containers and volumes are named
devbox-hardening-*, apart from the other lifecycle tests'.
"""
import json
import os
import re
import subprocess

import pytest

from docker_host import DOCKER
from docker_machines import ROOT, TEST_IMAGE, LocalMachine, docker, fresh, said, tagged

HOME = "/home/pythonuser"
# The one launcher, as the module keeps it (root's own file) and PID 1 runs it, for Jupyter.
LAUNCHER = f"python3 {HOME}/.devbox/lib/ansible_collections/devbox/machine/plugins/module_utils/devbox_launcher.py jupyter"
PID_FILE = f"{HOME}/.local/state/devbox/jupyter.pid"
TOKEN_FILE = f"{HOME}/.jupyter/devbox_token"
RACE_ITERATIONS = 3000

# Run as the user: swap ~/.devbox with links to root's directories as fast as the kernel allows.
RENAME_EXCHANGER = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, RENAME_EXCHANGE = -100, 2
os.chdir(sys.argv[1])
baits = {".bait-etc": "/etc", ".bait-decoy": "/srv/decoy"}
swaps = moved = 0
while not os.path.exists(".stop-racing"):
    for bait, target in baits.items():
        if not os.path.islink(bait):  # a directory of root's swapped out earlier: out of the way
            if os.path.lexists(bait):
                moved += 1
                os.rename(bait, f".moved-{moved}")
            os.symlink(target, bait)
        if libc.renameat2(AT_FDCWD, b".devbox", AT_FDCWD, bait.encode(), RENAME_EXCHANGE) == 0:
            swaps += 1
print(swaps, flush=True)
"""

# Run as root: the record writer of the devbox_user module and the boot step (the image's copy
# of plugins/module_utils/devbox_records.py), a record that changes at every iteration.
RECORD_WRITER = r"""
import json, sys
sys.path.insert(0, "/usr/local/lib/devbox")
from ansible_collections.devbox.machine.plugins.module_utils.devbox_records import (
    AccountError, ensure_home, load_record, save_record, validate)
account = validate({"name": "pythonuser", "uid": 1000, "gid": 1000, "home": sys.argv[1]})
written = refused = runs = 0
for i in range(int(sys.argv[2])):
    runs += 1
    account["groups"] = ["video"] if i % 2 else []
    try:
        ensure_home(account)
        written += save_record(account)
        load_record(sys.argv[1])
    except (AccountError, OSError):  # as the module and the boot step do
        refused += 1  # the user made root's write fail: their own loss, nothing outside the volume
print(json.dumps({"runs": runs, "written": written, "refused": refused}))
"""

# Run as another user: hold Jupyter's port, answer /api like Jupyter, log every request.
SQUATTER = r"""
import http.server, json, sys
class Api(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open("/tmp/squatter.log", "a") as log:
            log.write(self.path + " " + json.dumps(dict(self.headers)) + "\n")
        self.send_response(200)
        self.end_headers()
        self.wfile.write(json.dumps({"version": "2.14.0"}).encode())
http.server.HTTPServer((sys.argv[1], 8888), Api).serve_forever()
"""

# Run anywhere in the container: the HTTP status Jupyter gives an API call with this token.
TOKEN_PROBE = r"""
import sys, urllib.error, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
request = urllib.request.Request(sys.argv[1] + "api/status", headers={"Authorization": "token " + sys.argv[2]})
try:
    print(opener.open(request, timeout=5).status)
except urllib.error.HTTPError as error:
    print(error.code)
"""


# Planted by the dev user in their own site-packages: Python runs it first in every interpreter the
# user starts, the launcher included, which then "answers" with a listening name and a URL that,
# pasted into a shell, would run a command on the operator's laptop.
USERCUSTOMIZE = r"""
import json, sys
if sys.argv[0].endswith("devbox_launcher.py"):
    lie = "127.0.0.1;touch /tmp/devbox-pwned;x"
    print(json.dumps({"name": sys.argv[1], "action": "already running", "running": True, "healthy": True, "pid": 1,
                      "listen": lie, "url": f"http://{lie}:8888/", "log": "/dev/null"}))
    sys.exit(0)
"""
# What PID 1 has that Jupyter must not: on Fly, `fly secrets` reach PID 1's environment.
PID_1_SECRET = ("FLY_SECRET_DB_PASSWORD", "s3cret-of-pid-1")


def processes_matching(machine, pattern: str) -> list[str]:
    """Pids whose command line matches the grep pattern (write it so it cannot match itself: '[j]upyter')."""
    return machine.exec(f"for d in /proc/[0-9]*; do tr '\\0' ' ' < $d/cmdline 2>/dev/null | grep -q '{pattern}'"
                        " && echo ${d#/proc/}; done; true").stdout.split()


def put(machine, path: str, text: str) -> None:
    subprocess.run([DOCKER, "exec", "-i", machine.name, "sh", "-c", f"cat > {path}"], input=text, text=True,
                   check=True)


def run(machine, variables: dict | None = None):
    extra = dict({"python_env_packages": []}, **(variables or {}))
    result = machine.provision("-e", json.dumps(extra), capture=True)
    return result.returncode, result.stdout + result.stderr


def jupyter_status(machine) -> dict:
    return json.loads(machine.exec(LAUNCHER + " status", user="pythonuser").stdout)


def token(machine) -> str:
    return machine.exec(f"cat {TOKEN_FILE}").stdout


def answer(machine, url: str, candidate: str) -> int:
    return int(machine.exec(f"python3 /usr/local/bin/token-probe {url} '{candidate}'").stdout)


def file_table(machine) -> set:
    """Every file of the container's own file system (the volume is another one): path, owner, mode, ctime."""
    listing = machine.exec(f"find / -xdev -path {HOME} -prune -o -printf '%p %U %G %m %C@\\n'").stdout
    return set(listing.splitlines())


@pytest.fixture(scope="module")
def machine():
    with fresh(LocalMachine(name=tagged("devbox-hardening"), volume=tagged("devbox-hardening-home"),
                            image=TEST_IMAGE, env=dict([PID_1_SECRET]))) as machine:
        put(machine, "/usr/local/bin/token-probe", TOKEN_PROBE)
        rc, output = run(machine)
        assert rc == 0, output[-3000:]
        yield machine


@pytest.fixture
def bare_machine():
    """A fresh container and volume, not provisioned: the account is made by the boot step's library."""
    with fresh(LocalMachine(name=tagged("devbox-hardening-race"), volume=tagged("devbox-hardening-race-home"),
                            image=TEST_IMAGE)) as machine:
        yield machine


def test_a_home_in_a_system_tree_is_refused_with_nothing_changed(machine):
    before = machine.exec("stat -c '%U %G %a' /etc /etc/passwd; md5sum /etc/passwd /etc/group").stdout
    for home in ("/etc", "/root/.", "/home/pythonuser/../../etc"):
        rc, output = run(machine, {"dev_user_home": home})
        assert rc != 0 and f'dev_user_home="{home}" must be an absolute path without' in said(output)
        assert re.search(r": ok=0\s+changed=0\s+unreachable=0\s+failed=1", output), "the check fails the first task"
        # The module itself refuses too, for a run that skips the controller's checks.
        result = subprocess.run(
            [os.path.join(os.path.dirname(machine.playbook_command()[0]), "ansible"), "all",
             "-i", os.path.join(ROOT, "inventory", "local.yml"), "-e", f"ansible_host={machine.name}",
             "-m", "devbox_user", "-a", json.dumps({"name": "pythonuser", "uid": 1000, "gid": 1000, "home": home,
                                                         "shell": "/bin/bash"})],
            capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg")))
        assert result.returncode != 0 and f"dev_user_home='{home}'" in said(result.stdout), result.stdout + result.stderr
    assert machine.exec("stat -c '%U %G %a' /etc /etc/passwd; md5sum /etc/passwd /etc/group").stdout == before
    assert machine.exec("getent passwd pythonuser | cut -d: -f6").stdout.strip() == HOME


def test_a_system_group_is_never_the_primary_group(machine):
    before = machine.exec("getent group shadow; getent passwd shadow; md5sum /etc/passwd /etc/group").stdout
    for variables in ({"dev_user_name": "shadow"}, {"dev_user_name": "shadow", "dev_user_gid": 42}):
        rc, output = run(machine, dict(variables, dev_user_home=HOME))
        assert rc != 0 and "is the name of the system group 'shadow' (gid 42)" in said(output), output[-3000:]
    assert machine.exec("getent group shadow; getent passwd shadow; md5sum /etc/passwd /etc/group").stdout == before
    assert jupyter_status(machine)["healthy"]


def test_rename_exchange_race_against_the_record_writer_leaves_nothing_outside_the_volume(bare_machine):
    machine = bare_machine
    put(machine, "/usr/local/bin/rename-exchanger", RENAME_EXCHANGER)
    put(machine, "/usr/local/bin/record-writer", RECORD_WRITER)
    setup = machine.exec(
        "mkdir -p /srv/decoy && chown daemon:daemon /srv/decoy && chmod 0755 /srv/decoy && "
        "PYTHONDONTWRITEBYTECODE=1 python3 -c 'import sys; sys.path.insert(0, \"/usr/local/lib/devbox\"); "
        "from ansible_collections.devbox.machine.plugins.module_utils.devbox_records import *; a = validate({\"name\": \"pythonuser\", \"uid\": 1000, \"gid\": 1000, "
        f"\"home\": \"{HOME}\"}}); ensure_account(a); ensure_home(a); save_record(a)'")
    assert setup.returncode == 0, setup.stderr
    before = file_table(machine)

    attacker = subprocess.Popen([DOCKER, "exec", "-u", "pythonuser", machine.name, "python3",
                                 "/usr/local/bin/rename-exchanger", HOME], stdout=subprocess.PIPE, text=True)
    try:
        writer = machine.exec(f"PYTHONDONTWRITEBYTECODE=1 python3 /usr/local/bin/record-writer {HOME} {RACE_ITERATIONS}")
    finally:
        machine.exec(f"touch {HOME}/.stop-racing", user="pythonuser")
        swaps = int(attacker.communicate(timeout=60)[0])
    assert writer.returncode == 0, writer.stderr
    outcome = json.loads(writer.stdout)
    assert outcome["runs"] == RACE_ITERATIONS and outcome["written"] > RACE_ITERATIONS // 2, outcome
    assert swaps > RACE_ITERATIONS, f"only {swaps} swaps: the race was not run"

    changed = before ^ file_table(machine)
    assert not changed, f"root created or changed files outside the volume: {sorted(changed)[:20]}"
    assert machine.exec("ls -A /srv/decoy; stat -c '%U %G %a' /srv/decoy /etc").stdout == "daemon daemon 755\nroot root 755\n"
    assert not machine.exec("ls -A /etc | grep '^\\.account-'; true").stdout


def test_a_squatter_on_the_port_gets_no_token_and_the_run_fails_naming_it(machine):
    address = machine.exec(f"getent hosts {machine.name}").stdout.split()[0]
    assert json.loads(machine.exec(LAUNCHER + " stop", user="pythonuser").stdout)["action"] == "stopped"
    put(machine, "/usr/local/bin/squatter", SQUATTER)
    docker("exec", "-d", "-u", "nobody", machine.name, "python3", "/usr/local/bin/squatter", address, quiet=True)
    try:
        rc, output = run(machine)
        assert rc != 0
        assert "held by another process of user nobody (uid 65534)" in said(output), output[-3000:]
        assert not re.search(r"jupyter: \S+/lab\?token=", output), "no URL with the token is printed for the squatter's port"
        assert token(machine) not in output
        requests = machine.exec("cat /tmp/squatter.log 2>/dev/null").stdout
        assert token(machine) not in requests and "token" not in requests.lower(), requests
    finally:
        for pid in processes_matching(machine, "[s]quatter"):
            machine.exec(f"kill {pid}")
    rc, output = run(machine)
    assert rc == 0, output[-3000:]
    assert jupyter_status(machine)["healthy"]


def test_token_rotation_without_a_pidfile_retires_the_old_token(machine):
    old, new = token(machine), "rotated-" + "x" * 40
    url = jupyter_status(machine)["url"]
    assert answer(machine, url, old) == 200
    machine.exec(f"rm -f {PID_FILE}")
    rc, output = run(machine, {"jupyter_token": new})
    assert rc == 0, output[-3000:]
    assert token(machine) == new
    assert f"/lab?token={new}" in output, "the printed URL carries the token given"
    assert answer(machine, url, old) == 403 and answer(machine, url, new) == 200
    assert len(processes_matching(machine, "[S]erverApp.ip=")) == 1, "the old server is gone, not beside the new one"


@pytest.mark.parametrize("junk", ["", "not a token 'at all'"])
def test_an_emptied_or_junk_token_file_is_replaced_and_never_printed(machine, junk):
    old = token(machine)
    url = jupyter_status(machine)["url"]
    machine.exec(f"printf %s \"{junk}\" > {TOKEN_FILE}", user="pythonuser")
    rc, output = run(machine)
    assert rc == 0, output[-3000:]
    current = token(machine)
    assert re.fullmatch(r"[A-Za-z0-9._~-]{32,}", current) and current not in (old, junk)
    printed = re.search(r"jupyter: \S+/lab\?token=([A-Za-z0-9._~-]*)", output).group(1)
    assert printed == current
    assert answer(machine, url, current) == 200 and answer(machine, url, old) == 403


@pytest.mark.parametrize("variables, expected", [
    ({"jupyter_ip": "0"}, "jupyter_ip=0 must be a loopback or private address"),
    ({"jupyter_ip": "::ffff:0.0.0.0"}, "jupyter_ip=::ffff:0.0.0.0 must be"),
    ({"jupyter_ip": "[::]"}, "jupyter_ip=[::] must be"),
    ({"jupyter_ip": "8.8.8.8"}, "jupyter_ip=8.8.8.8 must be"),
    ({"jupyter_token": "has spaces and 'quotes' and is long enough"}, "at least 32 URL-safe characters"),
    ({"jupyter_port": 70000}, "jupyter_port=70000 must be a number from 1024 to 65535"),
    ({"swap_min_mb": -5}, "swap_min_mb=-5 must be 0 or more"),
    ({"dev_user_gid": 0}, "dev_user_gid=0 must be 1-60000"),
])
def test_a_bad_value_is_refused_while_jupyter_keeps_answering(machine, variables, expected):
    status = jupyter_status(machine)
    config = machine.exec(f"cat {HOME}/.jupyter/jupyter_server_config.json").stdout
    before_token = token(machine)
    rc, output = run(machine, variables)
    assert rc != 0 and expected in said(output), output[-3000:]
    assert re.search(r": ok=0\s+changed=0\s+unreachable=0\s+failed=1", output), "the check fails the first task"
    after = jupyter_status(machine)
    assert after["healthy"] and after["pid"] == status["pid"] and after["url"] == status["url"]
    assert machine.exec(f"cat {HOME}/.jupyter/jupyter_server_config.json").stdout == config
    assert answer(machine, status["url"], before_token) == 200


def test_a_lying_launcher_puts_no_command_into_the_printed_hint(machine):
    site = machine.exec("python3 -c 'import site; print(site.getusersitepackages())'", user="pythonuser").stdout.strip()
    machine.exec(f"mkdir -p {site}", user="pythonuser")
    put(machine, f"{site}/usercustomize.py", USERCUSTOMIZE)
    machine.exec(f"chown -R pythonuser: {HOME}/.local")
    try:
        lie = machine.exec(LAUNCHER + " status", user="pythonuser").stdout
        assert "touch /tmp/devbox-pwned" in lie, "the plant answers for the launcher"
        rc, output = run(machine)
        # The run goes through on the lie; the hint and the URLs come from the checked facts all the same.
        assert rc == 0 and "devbox-pwned" not in output, output[-3000:]
        assert "jupyter: http://localhost:8888/lab?token=" in output and "Open it: " in output, output[-3000:]
    finally:
        machine.exec(f"rm -f {site}/usercustomize.py")
    rc, output = run(machine)
    assert rc == 0, output[-3000:]


def test_jupyter_starts_with_a_clean_environment_extended_only_on_purpose(machine):
    def jupyter_environment() -> dict:
        pid = jupyter_status(machine)["pid"]
        # As its owner: root in a container lacks CAP_SYS_PTRACE to read another user's environ.
        text = machine.exec(f"cat /proc/{pid}/environ", user="pythonuser").stdout
        return dict(entry.split("=", 1) for entry in text.split("\0") if "=" in entry)

    environment = jupyter_environment()
    assert environment.get("VIRTUAL_ENV") == f"{HOME}/project-venv", "the server's own environment was read"
    assert PID_1_SECRET[0] not in environment and PID_1_SECRET[1] not in str(environment)
    rc, output = run(machine, {"jupyter_env": {"WANDB_MODE": "offline"}})
    assert rc == 0, output[-3000:]
    environment = jupyter_environment()
    assert environment["WANDB_MODE"] == "offline" and PID_1_SECRET[0] not in environment
