"""After `fly deploy`, plain `ansible-playbook playbooks/site.yml` converges every started Machine.

Three "Machines" of one app are Docker containers from tests/fly_machine (the shipped image plus
an sshd that, like Fly's hallpass, accepts only certificates from the org CA); two run, one is
stopped. The only stand-in is `fly` (tests/fly_double). The playbook runs with the DEFAULT
inventory (ansible.cfg -> inventory/fly.yml), pointed at a copy of fly.toml naming the test app.
"""
import glob
import json
import os
import re
import shutil
import socket
import subprocess
import urllib.request

import pytest

from docker_host import DOCKER
from fly_testkit import ORG, ROOT, calls, fly_env, fly_proxy_pids, load_source, make_state, process_gone, wait_until

pytestmark = pytest.mark.e2e

fly_inventory = load_source("fly_inventory_e2e", os.path.join(ROOT, "plugins", "inventory", "fly.py"))
BIN = os.path.join(ROOT, ".venv", "bin")
BASE_IMAGE = os.environ.get("DEVBOX_TEST_IMAGE", "devbox:test")
MACHINE_IMAGE = "devbox-fly-machine:test"
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
RECAP = re.compile(r"^(\S+)\s*: ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def docker(*args, check=True):
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, check=check, timeout=600)


def build_images():
    subprocess.run([sys_python(), os.path.join(ROOT, "tools", "ensure_docker.py")], check=True)
    env = dict(os.environ, DOCKER_BUILDKIT="0")
    if docker("image", "inspect", BASE_IMAGE, check=False).returncode != 0:  # what `make image` builds
        base = subprocess.run([sys_python(), os.path.join(ROOT, "tools", "base_image.py")], check=True,
                              capture_output=True, text=True).stdout.strip()
        subprocess.run([DOCKER, "build", "-q", "--build-arg", f"BASE_IMAGE={base}", "-t", BASE_IMAGE, ROOT],
                       check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run([DOCKER, "build", "-q", "--build-arg", f"DEVBOX_IMAGE={BASE_IMAGE}", "-t", MACHINE_IMAGE,
                    os.path.join(ROOT, "tests", "fly_machine")], check=True, env=env, stdout=subprocess.DEVNULL)


def sys_python():
    return os.path.join(BIN, "python")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    build_images()
    work = tmp_path_factory.mktemp("fly-e2e")
    name = "devbox-e2e-" + os.urandom(4).hex()
    state = make_state(str(work / "state"), {name: ORG})
    machines = {}
    for index, running in ((1, True), (2, True), (3, False)):
        machine_id = f"e2e{os.urandom(6).hex()[:11]}"
        container = f"{name}-m{index}"
        mounts = ["-v", f"{container}-home:/home/pythonuser", "-v", f"{state}/ca.pub:/etc/ssh/fly_org_ca.pub:ro"]
        if os.path.isfile(HOST_CA_BUNDLE):
            mounts += ["-v", f"{HOST_CA_BUNDLE}:/etc/devbox/ca-bundle.pem:ro"]
        labels = {"fly_app": name, "fly_machine_id": machine_id, "fly_machine_name": container, "fly_region": "ord"}
        args = [arg for key, value in labels.items() for arg in ("--label", f"{key}={value}")]
        docker("create", "--name", container, "--hostname", container, *args, *mounts, MACHINE_IMAGE)
        if running:
            docker("start", container)
        machines[container] = machine_id
    for container in machines:
        if not container.endswith("-m3"):
            assert wait_until(lambda: ssh_banner(container), timeout=60), f"no SSH server in {container}"
    fly_toml = work / "fly.toml"
    with open(os.path.join(ROOT, "fly.toml"), encoding="utf-8") as handle:
        fly_toml.write_text(handle.read().replace('app = "python-dev-machine"', f'app = "{name}"'))
    control_dir = work / "cp"
    env = fly_env(state, DEVBOX_FLY_TOML=str(fly_toml), DEVBOX_FLY_CREDENTIALS_DIR=str(work / "creds"),
                  ANSIBLE_SSH_CONTROL_PATH_DIR=str(control_dir), ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
                  FLY_DOUBLE_DNS_WAIT="20", ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    context = {"name": name, "state": state, "machines": machines, "env": env, "work": work,
               "control_dir": control_dir, "creds": work / "creds"}
    try:
        yield context
    finally:
        close_ssh_masters(context)
        for pid in fly_proxy_pids(name):
            os.kill(pid, 9)
        for container in machines:
            docker("rm", "-f", container, check=False)
            docker("volume", "rm", "-f", f"{container}-home", check=False)


def ssh_banner(container):
    """True once the Machine's SSH server answers, as after `fly deploy` (which waits for it)."""
    address = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container).stdout.strip()
    try:
        with socket.create_connection((address, 22), timeout=2) as connection:
            return connection.recv(8).startswith(b"SSH-2.0")
    except OSError:
        return False


def close_ssh_masters(context):
    """Ends the ControlPersist masters, as their idle timeout would."""
    for socket_path in glob.glob(str(context["control_dir"] / "*")):
        subprocess.run(["ssh", "-O", "exit", "-S", socket_path, "unused"], capture_output=True, timeout=30)


def ansible(context, tool, *args, **extra_env):
    command = [os.path.join(BIN, tool), *args]
    result = subprocess.run(command, cwd=ROOT, env=dict(context["env"], **extra_env), capture_output=True, text=True,
                            timeout=600)
    return result, result.stdout + result.stderr


def converge(context):
    extra = ["-e", "python_env_ca_bundle=/etc/devbox/ca-bundle.pem"] if os.path.isfile(HOST_CA_BUNDLE) else []
    return ansible(context, "ansible-playbook", *extra, "playbooks/site.yml")


def failures(output):
    """The failed or unreachable results of a run, for assertion messages."""
    lines = output.splitlines()
    found = [i for i, line in enumerate(lines) if line.startswith(("fatal:", "UNREACHABLE", "failed:"))
             or "UNREACHABLE!" in line]
    return "\n".join("\n".join(lines[i - 2:i + 15]) for i in found) or output[-4000:]


def recap(output):
    return {host: tuple(map(int, counts)) for host, *counts in RECAP.findall(output.split("PLAY RECAP")[-1])}


def started(context):
    return [c for c in context["machines"] if not c.endswith("-m3")]


@pytest.fixture(scope="module")
def first_converge(app):
    result, output = converge(app)
    return {"result": result, "output": output, "calls": calls(app["state"])}


def test_first_converge_reaches_every_started_machine_through_fly_proxy(app, first_converge):
    output = first_converge["output"]
    assert first_converge["result"].returncode == 0, failures(output)
    assert sorted(recap(output)) == sorted(started(app))
    for host in started(app):
        changed, unreachable, failed = recap(output)[host]
        assert (unreachable, failed) == (0, 0) and changed > 0
    proxies = [c["argv"] for c in first_converge["calls"] if c["argv"][0] == "proxy"]
    wanted = sorted(f"{app['machines'][host]}.vm.{app['name']}.internal" for host in started(app))
    # One `fly proxy` per Machine for the whole run: the SSH master connection keeps it.
    assert sorted(argv[2] for argv in proxies) == wanted
    assert all(argv[1] == "0:22" and "--watch-stdin" in argv for argv in proxies)
    assert f"fly proxy 8888 {app['machines'][started(app)[0]]}.vm.{app['name']}.internal -a {app['name']}" in output


def test_a_stopped_machine_is_reported_with_the_command_to_start_it(app, first_converge):
    stopped_id = app["machines"][f"{app['name']}-m3"]
    output = " ".join(first_converge["output"].split())
    assert f"{stopped_id} ({app['name']}-m3, stopped)" in output
    assert f"fly machine start {stopped_id} -a {app['name']}" in output
    assert f"{app['name']}-m3" not in recap(first_converge["output"])


def test_the_certificate_is_issued_once_into_the_ignored_folder(app, first_converge):
    issued = [c["argv"] for c in first_converge["calls"] if c["argv"][:2] == ["ssh", "issue"]]
    assert len(issued) == 1 and "--overwrite" not in issued[0]
    assert sorted(os.listdir(app["creds"])) == [f"id_fly_{app['name']}", f"id_fly_{app['name']}-cert.pub"]
    assert all(os.stat(path).st_mode & 0o077 == 0 for path in glob.glob(str(app["creds"] / "*")))


def test_second_converge_changes_nothing(app, first_converge):
    result, output = converge(app)
    assert result.returncode == 0, failures(output)
    assert {host: counts[0] for host, counts in recap(output).items()} == {host: 0 for host in started(app)}


def test_the_machines_pid_1_is_the_images_boot_step(app):
    for container in started(app):
        command_line = docker("exec", container, "cat", "/proc/1/cmdline").stdout
        assert command_line.split("\0")[:2] == ["/usr/bin/python3", "/usr/local/sbin/devbox-boot"], command_line


def test_jupyter_outlives_the_ssh_sessions_and_no_fly_proxy_is_left(app, first_converge):
    close_ssh_masters(app)
    assert wait_until(lambda: not fly_proxy_pids(app["name"]), timeout=15), "a fly proxy outlived its SSH master"
    for container in started(app):
        status = docker("exec", container, "su", "-", "pythonuser", "-c", "~/.local/bin/devbox-jupyter status",
                        check=False)
        assert status.returncode == 0, status.stdout + status.stderr
        assert json.loads(status.stdout)["healthy"] is True


def test_jupyter_answers_through_fly_proxy_as_the_open_hint_says(app, first_converge):
    host = f"{app['machines'][started(app)[0]]}.vm.{app['name']}.internal"
    proxy = subprocess.Popen(["fly", "proxy", "0:8888", host, "-a", app["name"], "--watch-stdin"], env=app["env"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = int(re.match(r"Proxying localhost:(\d+) to remote", proxy.stdout.readline()).group(1))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api", timeout=20) as response:
            assert response.status == 200 and "version" in json.load(response)
    finally:
        proxy.stdin.close()
        proxy.wait(10)
    assert process_gone(proxy.pid)


def test_an_expired_certificate_is_renewed_before_connecting(app, first_converge):
    key = str(app["creds"] / f"id_fly_{app['name']}")
    scratch = app["work"] / "expiring"
    scratch.mkdir()
    public = subprocess.run(["ssh-keygen", "-y", "-f", key], check=True, capture_output=True, text=True).stdout
    (scratch / "key.pub").write_text(public)
    # Signed by the org CA, but only 20 minutes left: too little for a run.
    subprocess.run(["ssh-keygen", "-q", "-s", os.path.join(app["state"], "ca"), "-I", "expiring", "-n",
                    "root,pythonuser", "-V", "-3h:+20m", str(scratch / "key.pub")], check=True)
    shutil.copyfile(scratch / "key-cert.pub", key + "-cert.pub")
    assert not fly_inventory.certificate_is_usable(key, ["root", "pythonuser"])
    result, output = ansible(app, "ansible", "all", "-m", "ansible.builtin.ping")
    assert result.returncode == 0, output[-3000:]
    assert output.count("ping: pong") == len(started(app))
    assert fly_inventory.certificate_is_usable(key, ["root", "pythonuser"])
    assert (app["creds"] / f"id_fly_{app['name']}-cert.pub").read_text() != (scratch / "key-cert.pub").read_text()
    close_ssh_masters(app)


def test_start_stopped_starts_the_stopped_machine_first(app, first_converge):
    stopped = f"{app['name']}-m3"
    result, output = ansible(app, "ansible-inventory", "--list", DEVBOX_FLY_START_STOPPED="true")
    assert result.returncode == 0, output[-3000:]
    inventory = json.loads(result.stdout)
    assert stopped in inventory["fly"]["hosts"]
    assert docker("inspect", "-f", "{{.State.Running}}", stopped).stdout.strip() == "true"
    starts = [c["argv"] for c in calls(app["state"]) if c["argv"][:2] == ["machine", "start"]]
    assert starts == [["machine", "start", app["machines"][stopped], "-a", app["name"]]]
