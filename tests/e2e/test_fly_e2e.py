"""After `fly deploy`, plain `ansible-playbook playbooks/site.yml` converges every started Machine.

Four "Machines" of one app are Docker containers from tests/fly_machine: the shipped image plus
an sshd as strict as the least Fly's hallpass surely offers (exec only: no SFTP or scp; commands
split into words and run without a shell, with PATH alone, in /; one session per connection; the
6PN address only, IPv6, on a Docker network like Fly's private one; org-CA certificates only).
Two app Machines run, one is stopped, and a running `fly console` Machine must be left alone. The
app has a Flycast address and no public one; the provisioned Machines carry fly.toml's [[services]],
so the double's Fly Proxy wakes them. The
only stand-in is `fly` (tests/fly_double). The playbook runs with the DEFAULT inventory
(ansible.cfg -> inventory/fly.yml), pointed at a copy of fly.toml naming the test app. Every test
runs twice, on an app of its own: with Ansible's own strategy (ansible.cfg's) and with Mitogen
(ANSIBLE_STRATEGY=mitogen_linear). Container, network and image names carry the tag of DEVBOX_TEST_IMAGE.
"""
import glob
import json
import os
import re
import shutil
import subprocess
import tomllib
import urllib.request

import pytest

from docker_machines import (TEST_IMAGE, TEST_TAG, base_image, build_image, docker, local_facts, ssh_banner,
                             wait_until)
from fly_testkit import ORG, ROOT, ca_path, calls, fly_env, fly_proxy_pids, load_source, make_state, process_gone

pytestmark = pytest.mark.e2e

fly_inventory = load_source("fly_inventory_e2e", os.path.join(ROOT, "plugins", "inventory", "fly.py"))
BIN = os.path.join(ROOT, ".venv", "bin")
MACHINE_IMAGE = f"devbox-fly-machine:{TEST_TAG}"
PRINCIPALS = ["root", "pythonuser", "fly"]
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# Module runs of a converged site.yml per host, each one exec with Ansible's own strategy: the look alone (the
# stand-in has no swap while fly.toml asks for some: the look itself warns, as the swap role would).
MODULE_RUNS = 1
# None: ansible.cfg's strategy (Ansible's own linear: one exec per module run); "mitogen_linear": Mitogen's.
STRATEGIES = [pytest.param("mitogen_linear", id="mitogen"), pytest.param(None, id="ansible")]
RECAP = re.compile(r"^(\S+)\s*: ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def build_images():
    subprocess.run([sys_python(), os.path.join(ROOT, "tools", "ensure_docker.py")], check=True)
    if docker("image", "inspect", TEST_IMAGE, check=False).returncode != 0:  # what `make image` builds
        build_image(TEST_IMAGE, ROOT, BASE_IMAGE=base_image(), NONROOT_USER=local_facts()["user"])
    build_image(MACHINE_IMAGE, os.path.join(ROOT, "tests", "fly_machine"), DEVBOX_IMAGE=TEST_IMAGE)


def sys_python():
    return os.path.join(BIN, "python")


@pytest.fixture(scope="module", params=STRATEGIES)
def strategy(request):
    """The strategy every Ansible run of the module uses: Mitogen's, then ansible.cfg's (Ansible's own)."""
    return request.param


@pytest.fixture(scope="module")
def app(tmp_path_factory, strategy):
    build_images()
    work = tmp_path_factory.mktemp("fly-e2e")
    name = f"devbox-e2e-{TEST_TAG}-{os.urandom(4).hex()}"
    state = make_state(str(work / "state"), {name: ORG})
    with open(os.path.join(state, "apps.json"), encoding="utf-8") as handle:
        records = json.load(handle)
    records[name]["ips"] = [{"address": f"fdaa:0:{os.urandom(2).hex()}:0:1::2", "type": "private_v6"}]
    with open(os.path.join(state, "apps.json"), "w", encoding="utf-8") as handle:
        json.dump(records, handle)
    # The app's private network: IPv6 only reaches the Machines' SSH servers, as 6PN does on Fly.
    network = f"{name}-6pn"
    docker("network", "create", "--ipv6", "--subnet", f"fdaa:0:{os.urandom(2).hex()}:a7b::/64", network)
    machines = {}
    for index, running, group in ((1, True, "app"), (2, True, "app"), (3, False, "app"), (4, True, "fly_app_console")):
        machine_id = f"e2e{os.urandom(6).hex()[:11]}"
        container = f"{name}-m{index}"
        mounts = ["-v", f"{container}-home:/home/pythonuser", "-v", f"{ca_path(state)}.pub:/etc/ssh/fly_org_ca.pub:ro"]
        if os.path.isfile(HOST_CA_BUNDLE):
            mounts += ["-v", f"{HOST_CA_BUNDLE}:/etc/devbox/ca-bundle.pem:ro"]
        labels = {"fly_app": name, "fly_machine_id": machine_id, "fly_machine_name": container, "fly_region": "ord",
                  "fly_process_group": group}
        if running and group == "app":  # m3 stands for a Machine from before this fly.toml: no services
            labels["fly_services"] = fly_toml_services()
        args = [arg for key, value in labels.items() for arg in ("--label", f"{key}={value}")]
        docker("create", "--name", container, "--hostname", container, "--network", network, *args, *mounts,
               MACHINE_IMAGE)
        if running:
            docker("start", container)
        machines[container] = machine_id
    for container in machines:
        if not container.endswith("-m3"):
            wait_until(lambda: ssh_answers(container), timeout=60, what=f"an SSH server in {container}")
    fly_toml = work / "fly.toml"
    with open(os.path.join(ROOT, "fly.toml"), encoding="utf-8") as handle:
        fly_toml.write_text(handle.read().replace('app = "python-dev-machine"', f'app = "{name}"'))
    control_dir = work / "cp"
    env = fly_env(state, DEVBOX_FLY_TOML=str(fly_toml), DEVBOX_FLY_CREDENTIALS_DIR=str(work / "creds"),
                  ANSIBLE_SSH_CONTROL_PATH_DIR=str(control_dir), ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
                  FLY_DOUBLE_DNS_WAIT="20", ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    if strategy:
        env["ANSIBLE_STRATEGY"] = strategy
    context = {"name": name, "state": state, "machines": machines, "env": env, "work": work, "strategy": strategy,
               "control_dir": control_dir, "creds": work / "creds", "network": network}
    try:
        yield context
    finally:
        close_ssh_masters(context)
        for pid in fly_proxy_pids(name):
            os.kill(pid, 9)
        for container in machines:
            docker("rm", "-f", container, check=False)
            docker("volume", "rm", "-f", f"{container}-home", check=False)
        docker("network", "rm", network, check=False)


def fly_toml_services() -> str:
    """The project's fly.toml [[services]] as the double's Machine label: what `fly deploy` puts in each config."""
    with open(os.path.join(ROOT, "fly.toml"), "rb") as handle:
        services = tomllib.load(handle).get("services", [])
    return json.dumps([{"port": port["port"], "internal_port": service["internal_port"],
                        "autostart": service.get("auto_start_machines") is True}
                       for service in services for port in service.get("ports", [])])


def addresses(container):
    """(IPv4, IPv6) of a container on the app's network."""
    found = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{.GlobalIPv6Address}}{{end}}",
                   container).stdout.split()
    return found[0], found[1]


def ssh_answers(container, family=6):
    """True once the Machine's SSH server answers, as after `fly deploy` (which waits for it)."""
    return ssh_banner(addresses(container)[1 if family == 6 else 0])


def close_ssh_masters(context):
    """Ends the ControlPersist masters, as their idle timeout would."""
    for socket_path in glob.glob(str(context["control_dir"] / "*")):
        subprocess.run(["ssh", "-O", "exit", "-S", socket_path, "unused"], capture_output=True, timeout=30)


def ansible(context, tool, *args, **extra_env):
    command = [os.path.join(BIN, tool), *args]
    result = subprocess.run(command, cwd=ROOT, env=dict(context["env"], **extra_env), capture_output=True, text=True,
                            timeout=600)
    return result, result.stdout + result.stderr


def converge(context, **extra_env):
    """A run with -vvv, so its log shows every SSH command and every file transfer."""
    extra = ["-e", "python_env_ca_bundle=/etc/devbox/ca-bundle.pem"] if os.path.isfile(HOST_CA_BUNDLE) else []
    return ansible(context, "ansible-playbook", "-vvv", *extra, "playbooks/site.yml", **extra_env)


def failures(output):
    """The failed or unreachable results of a run, for assertion messages."""
    lines = output.splitlines()
    found = [i for i, line in enumerate(lines) if line.startswith(("fatal:", "UNREACHABLE", "failed:"))
             or "UNREACHABLE!" in line]
    return "\n".join("\n".join(lines[i - 2:i + 15]) for i in found) or output[-4000:]


def recap(output):
    return {host: tuple(map(int, counts)) for host, *counts in RECAP.findall(output.split("PLAY RECAP")[-1])}


def started(context):
    """The app's started Machines (m3 is stopped, m4 is a `fly console` Machine)."""
    return [c for c in context["machines"] if not c.endswith(("-m3", "-m4"))]


def uploads_and_ptys(output):
    """Lines of a -vvv log that upload a file (`PUT`) or ask for a PTY (`-tt`)."""
    return [line for line in output.splitlines() if re.search(r"\bPUT |\s-tt\b", line)]


@pytest.fixture(scope="module")
def first_converge(app):
    result, output = converge(app)
    return {"result": result, "output": output, "calls": calls(app["state"])}


@pytest.fixture(scope="module")
def second_converge(app, first_converge):
    """The rerun, with the same strategy."""
    result, output = converge(app)
    return {"result": result, "output": output}


def test_first_converge_reaches_every_started_machine_through_fly_proxy(app, first_converge):
    output = first_converge["output"]
    assert first_converge["result"].returncode == 0, failures(output)
    assert sorted(recap(output)) == sorted(started(app))
    for host in started(app):
        changed, unreachable, failed = recap(output)[host]
        assert (unreachable, failed) == (0, 0) and changed > 0
    proxies = [c["argv"] for c in first_converge["calls"] if c["argv"][0] == "proxy"]
    wanted = sorted(f"{app['machines'][host]}.vm.{app['name']}.internal" for host in started(app))
    # The inventory opens the first tunnel alone (one Machine's proxy, stopped once it listens), then one
    # `fly proxy` per Machine for the whole run: the SSH master connection keeps it.
    assert proxies[0][2] in wanted
    assert sorted(argv[2] for argv in proxies[1:]) == wanted
    assert all(argv[1] == "0:22" and "--watch-stdin" in argv for argv in proxies)
    # The YAML callback folds long lines: compare with the whitespace joined again.
    assert f"fly proxy 8888 {app['name']}.flycast -a {app['name']} (jupyter; starts a stopped Machine" \
        in " ".join(output.split())


def test_the_machines_ssh_servers_offer_only_exec_over_ipv6(app, first_converge):
    """The stand-in is strict: were it a full OpenSSH, the tests would pass regardless."""
    container = started(app)[0]
    assert not ssh_answers(container, family=4), "the SSH server must listen on the 6PN (IPv6) address only"
    config = docker("exec", container, "/usr/sbin/sshd", "-T", "-C", "user=root,host=x,addr=::1").stdout
    settings = dict(line.split(" ", 1) for line in config.splitlines() if " " in line)
    assert (settings["maxsessions"], settings["allowtcpforwarding"]) == ("1", "no")
    assert settings["forcecommand"] == "/usr/local/sbin/hallpass-exec" and settings["permituserrc"] == "no"
    assert settings["authenticationmethods"] == "publickey" and settings["authorizedkeysfile"] == "none"
    assert "subsystem" not in settings
    hosts = docker("exec", container, "getent", "hosts", "fly-local-6pn").stdout.split()
    assert hosts[0] == addresses(container)[1]


def ssh_direct(app, container, command=None, stdin=None, user="root"):
    """Plain ssh with the run's certificate straight to a Machine's SSH server (no proxy, no config)."""
    key = str(app["creds"] / f"id_fly_{app['name']}")
    options = ["-i", key, "-o", f"CertificateFile={key}-cert.pub", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
               "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]
    return subprocess.run(["ssh", *options, f"{user}@{addresses(container)[1]}", *([command] if command else [])],
                          input=stdin, capture_output=True, text=True, timeout=60)


def test_the_machines_ssh_server_runs_commands_without_a_shell(app, first_converge):
    """As hallpass does: the command split into words, quotes honoured, the first word executed with
    PATH alone in /; no shell expands, chains or changes directory; a session without a command is /bin/sh."""
    container = started(app)[0]
    environment = ssh_direct(app, container, "env")
    assert environment.returncode == 0, environment.stderr
    assert [line.split("=", 1)[0] for line in environment.stdout.splitlines()] == ["PATH"]
    assert ssh_direct(app, container, "pwd").stdout == "/\n"
    literal = ssh_direct(app, container, 'echo $HOME && echo "two  words"')
    assert literal.stdout == "$HOME && echo two  words\n"
    builtin = ssh_direct(app, container, "cd /tmp")
    assert builtin.returncode != 0 and 'exec: "cd": executable file not found in $PATH' in builtin.stderr
    assert ssh_direct(app, container, "sh -c 'cd /tmp && pwd'").stdout == "/tmp\n"
    session = ssh_direct(app, container, stdin='echo "$0"; pwd\n')
    assert session.stdout.split() == ["/bin/sh", "/"], session.stderr


def test_the_old_su_path_would_need_sftp_which_the_machine_does_not_offer(app, first_converge):
    """become_method su turns Ansible's pipelining off: it uploads the module, and SFTP is not there."""
    host = started(app)[0]
    as_root, output = ansible(app, "ansible", host, "-m", "ansible.builtin.command", "-a", "whoami")
    assert as_root.returncode == 0 and "root" in output, output[-3000:]
    via_su, output = ansible(app, "ansible", host, "-m", "ansible.builtin.command", "-a", "whoami", "--become",
                             "--become-method", "su", "--become-user", "pythonuser",
                             "-e", "ansible_ssh_transfer_method=sftp", ANSIBLE_STRATEGY="linear")
    assert via_su.returncode != 0, output[-3000:]
    assert "Failed to connect to the host via sftp" in output, output[-3000:]


def test_no_run_uploads_a_file_or_asks_for_a_pty(app, first_converge, second_converge):
    """Every task pipelines: one exec with the module on stdin, no `PUT`, no `-tt` (issue 9).

    With Ansible's own strategy the log shows each exec; Mitogen runs every module in the one
    interpreter it started on each Machine, so its log shows none."""
    assert second_converge["result"].returncode == 0, failures(second_converge["output"])
    for run in (first_converge, second_converge):
        assert uploads_and_ptys(run["output"]) == []
    execs = len(re.findall(r"\bSSH: EXEC ", second_converge["output"]))
    if app["strategy"] != "mitogen_linear":
        assert execs == len(started(app)) * MODULE_RUNS
    else:
        assert not re.search(r"\bEXEC ", first_converge["output"]) and execs == 0


def test_the_agent_is_started_once_before_any_proxy(app, first_converge):
    argvs = [c["argv"] for c in first_converge["calls"]]
    first_proxy = next(i for i, argv in enumerate(argvs) if argv[0] == "proxy")
    assert ["agent", "ping", "--json"] in argvs[:first_proxy]
    assert argvs.count(["agent", "start"]) == 1 and ["agent", "restart"] not in argvs


def test_after_a_flyctl_update_the_stale_agent_is_restarted_once_and_a_slow_first_tunnel_is_waited_for(
        app, first_converge):
    """flyctl updated itself (a new version), so the running agent is stale; the new agent's tunnel takes
    longer than one connection's proxy waits (50 s). The run restarts the agent once, opens the first
    tunnel alone, saying what it waits for, and then reaches every Machine."""
    close_ssh_masters(app)
    before = len(calls(app["state"]))
    newer = {"FLY_DOUBLE_VERSION": "0.3.999", "FLY_DOUBLE_TUNNEL_S": "65", "FLY_DOUBLE_AGENT_START_S": "0"}
    try:
        result, output = ansible(app, "ansible", "all", "-m", "ansible.builtin.ping", **newer)
        assert result.returncode == 0, output[-3000:]
        assert output.count("ping: pong") == len(started(app))
        joined = " ".join(output.split())
        assert "agent runs v0.3.220, flyctl is v0.3.999" in joined
        assert "waiting for flyctl's WireGuard tunnel" in joined and "up to 4 minutes" in joined
        argvs = [c["argv"] for c in calls(app["state"])[before:]]
        assert argvs.count(["agent", "restart"]) == 1 and ["agent", "start"] not in argvs
    finally:
        close_ssh_masters(app)
        # Back to the tests' flyctl version: its agent, for the tests that follow.
        subprocess.run(["fly", "agent", "restart"], env=dict(app["env"], FLY_DOUBLE_AGENT_START_S="0"),
                       capture_output=True, timeout=60)


def test_a_fly_console_machine_is_not_a_host(app, first_converge):
    console = f"{app['name']}-m4"
    assert console not in recap(first_converge["output"])
    assert not any(app["machines"][console] in " ".join(c["argv"]) for c in first_converge["calls"]
                   if c["argv"][0] == "proxy")


def test_the_open_hint_follows_jupyter_port(app, first_converge):
    host = started(app)[0]
    result, output = ansible(app, "ansible", host, "-m", "ansible.builtin.debug", "-a", "var=devbox_open_hint",
                             "-e", "jupyter_port=9123")
    assert result.returncode == 0, output[-3000:]
    hint = f"fly proxy 9123 {app['machines'][host]}.vm.{app['name']}.internal -a {app['name']}"
    assert hint in " ".join(output.split())


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


def test_second_converge_changes_nothing(app, second_converge):
    result, output = second_converge["result"], second_converge["output"]
    assert result.returncode == 0, failures(output)
    assert {host: counts[0] for host, counts in recap(output).items()} == {host: 0 for host in started(app)}


def test_the_images_process_is_its_boot_step(app):
    """The image's CMD. Here it is the container's PID 1; on Fly it runs as the child of Fly's
    init (PID 1 there), which sends it kill_signal and kills it after kill_timeout (fly.toml)."""
    for container in started(app):
        command_line = docker("exec", container, "cat", "/proc/1/cmdline").stdout
        assert command_line.split("\0")[:2] == ["/usr/bin/python3", "/usr/local/sbin/devbox-boot"], command_line


def test_jupyter_outlives_the_ssh_sessions_and_no_fly_proxy_is_left(app, first_converge):
    close_ssh_masters(app)
    wait_until(lambda: not fly_proxy_pids(app["name"]), timeout=15,
               what="the fly proxies to end with their SSH masters")
    for container in started(app):
        status = docker("exec", container, "su", "-", "pythonuser", "-c", "python3 ~/.devbox/lib/ansible_collections/devbox/machine/plugins/module_utils/devbox_launcher.py jupyter status",
                        check=False)
        assert status.returncode == 0, status.stdout + status.stderr
        assert json.loads(status.stdout)["healthy"] is True


def jupyter_through_flycast(app, timeout, **env):
    """GET /api through `fly proxy 0:8888 <app>.flycast`, as the open hint says; the JSON answer."""
    proxy = subprocess.Popen(["fly", "proxy", "0:8888", f"{app['name']}.flycast", "-a", app["name"], "--watch-stdin"],
                             env=dict(app["env"], **env), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = int(re.match(r"Proxying localhost:(\d+) to remote", proxy.stdout.readline()).group(1))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api", timeout=timeout) as response:
            assert response.status == 200
            return json.load(response)
    finally:
        proxy.stdin.close()
        proxy.wait(10)
        assert process_gone(proxy.pid)


def test_jupyter_answers_through_fly_proxy_as_the_open_hint_says(app, first_converge):
    """Through the app's Flycast address: Fly Proxy reaches Jupyter on the Machine's private IPv4."""
    assert "version" in jupyter_through_flycast(app, timeout=20)
    probe = "import socket, sys; socket.create_connection((sys.argv[1], 8888), timeout=5).close()"
    for container in started(app):
        ipv4, ipv6 = addresses(container)
        assert docker("exec", container, "python3", "-c", probe, ipv4, check=False).returncode == 0
        assert docker("exec", container, "python3", "-c", probe, ipv6, check=False).returncode != 0, \
            "Jupyter listens on the private IPv4 alone, not on every address"


def test_an_expired_certificate_is_renewed_before_connecting(app, first_converge):
    key = str(app["creds"] / f"id_fly_{app['name']}")
    scratch = app["work"] / "expiring"
    scratch.mkdir()
    public = subprocess.run(["ssh-keygen", "-y", "-f", key], check=True, capture_output=True, text=True).stdout
    (scratch / "key.pub").write_text(public)
    # Signed by the org CA, but only 20 minutes left: too little for a run.
    subprocess.run(["ssh-keygen", "-q", "-s", ca_path(app["state"]), "-I", "expiring", "-n",
                    ",".join(PRINCIPALS), "-V", "-3h:+20m", str(scratch / "key.pub")], check=True)
    shutil.copyfile(scratch / "key-cert.pub", key + "-cert.pub")
    assert not fly_inventory.certificate_is_usable(key, PRINCIPALS)
    result, output = ansible(app, "ansible", "all", "-m", "ansible.builtin.ping")
    assert result.returncode == 0, output[-3000:]
    assert output.count("ping: pong") == len(started(app))
    assert fly_inventory.certificate_is_usable(key, PRINCIPALS)
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


def logs(container):
    result = docker("logs", "--tail", "25", container, check=False)
    return result.stdout + result.stderr


def test_a_stopped_machine_wakes_when_a_connection_reaches_the_flycast_address(app, first_converge):
    """After idle stop (here: docker stop, as `fly machine stop`), `fly proxy 8888 <app>.flycast` starts a
    Machine and Jupyter answers, with no `fly machine start`. Last in the module: it stops the app's Machines."""
    close_ssh_masters(app)
    before = {container: addresses(container)[0] for container in started(app)}
    for container in started(app):
        docker("stop", "-t", "30", container)  # fly.toml's kill_timeout
    try:
        # The double's Fly Proxy waits for the woken Machine's boot step to start Jupyter.
        answer = jupyter_through_flycast(app, timeout=180, FLY_DOUBLE_AUTOSTART_WAIT_S="170")
    except OSError as error:
        pytest.fail(f"{error}; private IPv4 before the stop: {before}; now: " + "; ".join(
            docker("inspect", "-f", "{{.Name}} {{.State.Status}} {{.State.ExitCode}} {{.State.StartedAt}} "
                   "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", c).stdout
            + logs(c) for c in started(app)))
    assert "version" in answer
    woken = [c for c in started(app) if docker("inspect", "-f", "{{.State.Running}}", c).stdout.strip() == "true"]
    assert len(woken) == 1, "Fly Proxy starts one Machine for the connection"
    assert not [c["argv"] for c in calls(app["state"]) if c["argv"][:2] == ["machine", "start"]
                and app["machines"][woken[0]] in c["argv"]]
