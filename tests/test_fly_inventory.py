"""The fly inventory plugin: fly.toml, Machines JSON -> hosts, the SSH certificate, every error path."""
import datetime
import json
import os
import shutil
import stat
import subprocess
import sys

import tomllib

import pytest
from ansible.errors import AnsibleParserError
from ansible.inventory.data import InventoryData
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import inventory_loader

import devbox_boot
from ansible_collections.devbox.machine.plugins.module_utils import devbox_launcher
from fly_testkit import (DOUBLE, ORG, PROXY_HELPER, ROOT, ca_path, calls, echo_server, fingerprint, fly_env, make_state,
                         process_gone, set_ips, signing_ca)

# Loaded as Ansible loads it, so its option definitions are registered.
inventory_loader.add_directory(os.path.join(ROOT, "plugins", "inventory"))
fly = sys.modules[inventory_loader.get("fly").__class__.__module__]

# fly-facts.md's example of `fly machines list --json`, plus a stopped Machine.
MACHINES = [
    {
        "id": "a5c5de9ce64ca12", "name": "aged-wind-2649", "state": "started", "region": "ord",
        "image_ref": {"registry": "registry.fly.io", "repository": "myapp", "tag": "deployment-01H",
                      "digest": "sha256:...", "labels": {}},
        "instance_id": "01HE...", "private_ip": "fdaa:0:18:a7b:196:e274:9ce1:2",
        "created_at": "2023-10-31T02:30:10Z", "updated_at": "2023-10-31T02:35:26Z", "host_status": "ok",
        "cordoned": False,
        "config": {
            "init": {"swap_size_mb": 32768}, "image": "registry.fly.io/myapp:deployment-01H",
            "guest": {"cpu_kind": "performance", "cpus": 8, "memory_mb": 32768},
            "mounts": [{"volume": "vol_...", "path": "/home/pythonuser", "name": "data", "size_gb": 100,
                        "encrypted": True}],
            "restart": {"policy": "on-failure", "max_retries": 10}, "metadata": {"fly_platform_version": "v2"},
        },
    },
    {"id": "3d8d9015be7189", "name": "quiet-sun-101", "state": "stopped", "region": "ams", "cordoned": False,
     "image_ref": {}, "host_status": "ok",
     "config": {"guest": {"cpu_kind": "performance", "cpus": 8, "memory_mb": 32768},
                "metadata": {"fly_platform_version": "v2", "fly_process_group": "app"}}},
]
MACHINES[0]["config"]["metadata"]["fly_process_group"] = "app"


def machine_in(group, machine_id, state="started", **fields):
    """A Machine of the app in a process group (fly_app_console: `fly console`; ...)."""
    return dict(MACHINES[0], id=machine_id, name=f"m-{machine_id}", state=state, **fields,
                config=dict(MACHINES[0]["config"], metadata={"fly_platform_version": "v2", "fly_process_group": group}))

FLY_TOML = """
app = "myapp"
swap_size_mb = 2048

[[vm]]
  size = "performance-8x"

[build.args]
  NONROOT_USER = "alice"

[mounts]
  source = "data"
  destination = "/home/alice"
"""


def write(tmp_path, text, name="fly.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


class FakeFlyctl:
    """Answers `fly machines list` from a script of lists; records starts."""

    def __init__(self, *listings):
        self.app = "myapp"
        self.executable = "/usr/local/bin/fly"
        self.listings = list(listings)
        self.started = []

    def machines(self):
        return self.listings.pop(0) if len(self.listings) > 1 else self.listings[0]

    def start(self, machine_id):
        self.started.append(machine_id)


def plugin_with(options):
    plugin = inventory_loader.get("fly")
    plugin._options = dict({"start_stopped": False}, **options)
    plugin.inventory = InventoryData()
    return plugin


# ---- fly.toml ------------------------------------------------------------------------------

def test_the_projects_fly_toml_gives_app_user_home_and_swap():
    settings = fly.read_fly_toml(os.path.join(ROOT, "fly.toml"))
    assert settings["app"] == "python-dev-machine"
    assert settings["user"] == "pythonuser" and settings["home"] == "/home/pythonuser"
    assert settings["swap_mb"] == 32768
    assert settings["warnings"] == []


def test_a_custom_user_and_swap_are_read(tmp_path):
    settings = fly.read_fly_toml(write(tmp_path, FLY_TOML))
    assert (settings["app"], settings["user"], settings["home"], settings["swap_mb"]) == ("myapp", "alice", "/home/alice", 2048)


def test_a_mount_that_is_not_the_users_home_says_how_to_fix_it(tmp_path):
    path = write(tmp_path, FLY_TOML.replace('destination = "/home/alice"', 'destination = "/data"'))
    with pytest.raises(fly.FlyInventoryError, match=r'Set \[mounts\] destination = "/home/alice"'):
        fly.read_fly_toml(path)


def test_a_missing_mount_is_an_error(tmp_path):
    path = write(tmp_path, FLY_TOML.split("[mounts]")[0])
    with pytest.raises(fly.FlyInventoryError, match="no \\[mounts\\] section"):
        fly.read_fly_toml(path)


def test_swap_filed_under_a_table_is_an_error(tmp_path):
    path = write(tmp_path, FLY_TOML.replace("swap_size_mb = 2048\n", "").replace('size = "performance-8x"',
                                                                              'size = "performance-8x"\nswap_size_mb = 2048'))
    with pytest.raises(fly.FlyInventoryError, match=r"swap_size_mb sits inside \[vm\].*move the line above"):
        fly.read_fly_toml(path)


@pytest.mark.parametrize("vm", ['size = "a100-40gb"', 'size = "a100-80gb"', 'size = "l40s"', 'size = "a10"',
                                'size = "performance-8x"\n  gpu_kind = "a100-pcie-40gb"'])
def test_a_gpu_size_gives_a_clear_warning(tmp_path, vm):
    settings = fly.read_fly_toml(write(tmp_path, FLY_TOML.replace('size = "performance-8x"', vm)))
    assert len(settings["warnings"]) == 1
    assert "Fly rejects GPU guests since 2026-08-01" in settings["warnings"][0]
    assert "inventory/ssh_hosts.example.yml" in settings["warnings"][0]


def test_a_missing_fly_toml_names_the_command_to_create_it(tmp_path):
    with pytest.raises(fly.FlyInventoryError, match="fly launch --no-deploy"):
        fly.read_fly_toml(str(tmp_path / "fly.toml"))


def test_a_fly_toml_without_an_app_is_an_error(tmp_path):
    with pytest.raises(fly.FlyInventoryError, match="names no app"):
        fly.read_fly_toml(write(tmp_path, FLY_TOML.replace('app = "myapp"', "")))


def test_process_groups_are_app_unless_fly_toml_names_others(tmp_path):
    assert fly.read_fly_toml(write(tmp_path, FLY_TOML))["process_groups"] == ["app"]
    named = FLY_TOML + '\n[processes]\n  devbox = "/usr/local/sbin/devbox-boot"\n'
    assert fly.read_fly_toml(write(tmp_path, named, "named.toml"))["process_groups"] == ["devbox"]


def test_the_projects_fly_toml_gives_jupyter_time_to_stop_before_the_kill():
    """Fly's init sends kill_signal, then SIGKILL after kill_timeout: the boot step's stop, and
    inside it the launcher's wait for Jupyter's kernels, must end before that."""
    with open(os.path.join(ROOT, "fly.toml"), "rb") as handle:
        config = tomllib.load(handle)
    assert config["kill_signal"] in ("SIGTERM", "SIGINT"), "the signals the boot step stops on"
    assert devbox_launcher.STOP_TIMEOUT_S < devbox_boot.STOP_BUDGET_S < config["kill_timeout"]
    # A boot step that exits 0 (idle stop) leaves the Machine stopped only with these policies.
    assert [entry["policy"] for entry in config["restart"]] in (["on-failure"], ["never"])


# ---- Machines -> hosts ---------------------------------------------------------------------

def test_started_machines_become_hosts_with_their_vars_and_region_groups():
    plugin = plugin_with({})
    settings = fly.read_fly_toml(os.path.join(ROOT, "fly.toml")) | {"app": "myapp"}
    plugin.add_hosts(settings, "/usr/local/bin/fly", "/p/.fly/ssh/id_fly_myapp", MACHINES[:1])
    host = plugin.inventory.get_host("aged-wind-2649")
    assert host is not None
    assert [group.name for group in host.get_groups()] == ["fly", "fly_region_ord"]
    host_vars = host.get_vars()
    assert host_vars["ansible_host"] == "a5c5de9ce64ca12.vm.myapp.internal"
    assert host_vars["ansible_user"] == "root"
    assert host_vars["ansible_ssh_timeout"] >= 30, "the banner arrives only after fly proxy has started"
    assert host_vars["fly_machine_id"] == "a5c5de9ce64ca12" and host_vars["fly_region"] == "ord"
    assert host_vars["fly_private_ip"] == "fdaa:0:18:a7b:196:e274:9ce1:2"
    assert (host_vars["fly_cpus"], host_vars["fly_memory_mb"]) == (8, 32768)
    assert host_vars["fly_mounts"][0]["path"] == "/home/pythonuser"
    assert (host_vars["dev_user_name"], host_vars["dev_user_home"], host_vars["swap_min_mb"]) == \
        ("pythonuser", "/home/pythonuser", 32768)
    assert host_vars["dev_user_home_is_volume"] is True
    assert host_vars["devbox_open_hint"] == "fly proxy 8888 myapp.flycast -a myapp (jupyter; starts a stopped Machine)"
    assert host_vars["ansible_ssh_private_key_file"] == "/p/.fly/ssh/id_fly_myapp"
    args = host_vars["ansible_ssh_common_args"]
    assert "fly_proxy_command.py --fly /usr/local/bin/fly --app myapp --ready-timeout 50 --port %p %h'" in args
    for option in ("ControlMaster=auto", "ControlPersist=", "StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null",
                   "CertificateFile=/p/.fly/ssh/id_fly_myapp-cert.pub"):
        assert option in args


def test_with_several_machines_the_open_hint_names_each_machine_or_says_flycast_reaches_one():
    plugin = plugin_with({})
    second = dict(MACHINES[0], id="148e21d4b2d389", name="bold-sea-7")
    settings = fly.read_fly_toml(os.path.join(ROOT, "fly.toml")) | {"app": "myapp"}
    plugin.add_hosts(settings, "fly", "/k", [MACHINES[0], second])
    assert plugin.inventory.get_host("bold-sea-7").get_vars()["devbox_open_hint"] == \
        "fly proxy 8888 myapp.flycast -a myapp (jupyter; starts a stopped Machine; any one of the Machines)"
    plugin = plugin_with({})
    plugin.add_hosts(dict(settings, flycast={}), "fly", "/k", [MACHINES[0], second])
    assert plugin.inventory.get_host("bold-sea-7").get_vars()["devbox_open_hint"] == \
        "fly proxy 8888 148e21d4b2d389.vm.myapp.internal -a myapp (jupyter)"


def test_the_projects_fly_toml_serves_jupyter_through_flycast_with_autostart_and_no_autostop():
    assert fly.read_fly_toml(os.path.join(ROOT, "fly.toml"))["flycast"] == {8888: 8888}
    with open(os.path.join(ROOT, "fly.toml"), "rb") as handle:
        [service] = tomllib.load(handle)["services"]
    assert (service["auto_start_machines"], service["auto_stop_machines"]) == (True, "off")
    assert "handlers" not in service["ports"][0], "Fly Proxy passes Jupyter's TCP stream through"


SERVICE = """
[[services]]
  internal_port = 8888
  auto_start_machines = true
  auto_stop_machines = "off"
  [[services.ports]]
    port = 8888
"""


@pytest.mark.parametrize("autostop", ["true", '"stop"', '"suspend"'])
def test_fly_proxys_autostop_is_refused_the_stop_is_the_machines_own(tmp_path, autostop):
    path = write(tmp_path, FLY_TOML + SERVICE.replace('auto_stop_machines = "off"', f"auto_stop_machines = {autostop}"))
    with pytest.raises(fly.FlyInventoryError, match=r'auto_stop_machines = .*: set auto_stop_machines = "off"'):
        fly.read_fly_toml(path)


def test_only_a_service_with_autostart_is_a_way_in_that_wakes_the_machine(tmp_path):
    assert fly.read_fly_toml(write(tmp_path, FLY_TOML + SERVICE))["flycast"] == {8888: 8888}
    assert fly.read_fly_toml(write(tmp_path, FLY_TOML))["flycast"] == {}
    no_start = FLY_TOML + SERVICE.replace("auto_start_machines = true", "auto_start_machines = false")
    assert fly.read_fly_toml(write(tmp_path, no_start, "no-start.toml"))["flycast"] == {}
    moved = fly.read_fly_toml(write(tmp_path, FLY_TOML + SERVICE.replace("    port = 8888\n", "    port = 80\n"), "80.toml"))
    assert moved["flycast"] == {8888: 80}
    assert open_hint_of(moved) == "fly proxy 8888:80 myapp.flycast -a myapp (jupyter; starts a stopped Machine)"


def open_hint_of(settings):
    return fly.open_hint(settings["facts"], "myapp", "", settings["flycast"])


def test_a_flycast_service_on_another_port_than_jupyters_is_warned_about(tmp_path):
    settings = fly.read_fly_toml(write(tmp_path, FLY_TOML + SERVICE), {"jupyter_port": 9000})
    assert any("no [[services]] entry with internal_port = 9000 (jupyter_port)" in w for w in settings["warnings"])
    assert open_hint_of(settings) == "fly proxy 9000 -a myapp (jupyter)"


def test_the_open_hint_names_every_services_port_from_the_facts():
    plugin = plugin_with({})
    # TensorBoard on the loopback (its default) is reached through Jupyter: no proxy of its own.
    given = {"jupyter_port": 9000, "tensorboard_enabled": True,
             "devbox_services": [{"name": "streamlit", "port": 8501, "command": ["streamlit", "hello"]}]}
    settings = fly.read_fly_toml(os.path.join(ROOT, "fly.toml"), given) | {"app": "myapp"}
    plugin.add_hosts(settings, "fly", "/k", MACHINES[:1])
    assert plugin.inventory.get_host("aged-wind-2649").get_vars()["devbox_open_hint"] == (
        "fly proxy 9000 -a myapp (jupyter); fly proxy 8501 -a myapp (streamlit)")
    plugin = plugin_with({})
    settings = dict(settings, flycast={8501: 8501, 9000: 9000})
    plugin.add_hosts(settings, "fly", "/k", MACHINES[:1])
    assert plugin.inventory.get_host("aged-wind-2649").get_vars()["devbox_open_hint"] == (
        "fly proxy 9000 myapp.flycast -a myapp (jupyter; starts a stopped Machine); "
        "fly proxy 8501 myapp.flycast -a myapp (streamlit; starts a stopped Machine)")


def test_the_facts_must_agree_with_fly_toml_before_anything_is_created(tmp_path):
    path = write(tmp_path, FLY_TOML)
    with pytest.raises(fly.FlyInventoryError, match=r"dev_user_name is 'bob', but .* NONROOT_USER = 'alice': set "
                                                    r'\[build.args\] NONROOT_USER = "bob"'):
        fly.read_fly_toml(path, {"dev_user_name": "bob"})
    with pytest.raises(fly.FlyInventoryError, match=r"the home is /data \(dev_user_name 'alice'\) and \[mounts\] has "
                                                    r'/home/alice. Set \[mounts\] destination = "/data"'):
        fly.read_fly_toml(path, {"dev_user_home": "/data"})
    moved = write(tmp_path, FLY_TOML.replace('destination = "/home/alice"', 'destination = "/data"'), "moved.toml")
    assert fly.read_fly_toml(moved, {"dev_user_home": "/data"})["home"] == "/data"
    with pytest.raises(fly.FlyInventoryError, match="needs a port"):
        fly.read_fly_toml(path, {"devbox_services": [{"name": "streamlit", "command": ["x"]}]})
    assert fly.read_fly_toml(path)["facts"]["home_is_volume"] is True


def test_a_fly_toml_without_nonroot_user_says_what_to_add(tmp_path):
    with pytest.raises(fly.FlyInventoryError, match="no NONROOT_USER"):
        fly.read_fly_toml(write(tmp_path, FLY_TOML.replace('NONROOT_USER = "alice"', "")))


def test_only_the_apps_own_process_group_machines_are_hosts(monkeypatch):
    notes = []
    monkeypatch.setattr(fly.display, "v", notes.append)
    machines = [machine_in("app", "1a"), machine_in("fly_app_console", "2b"), machine_in("fly_app_release_command", "3c"),
                machine_in("worker", "4d"), machine_in("app", "5e", state="destroyed")]
    own = plugin_with({}).own_machines("myapp", ["app"], machines)
    assert [m["id"] for m in own] == ["1a"]
    assert len(notes) == 3 and "'fly_app_console'" in notes[0]


def test_the_former_process_group_key_still_counts():
    machine = dict(MACHINES[0], config={"metadata": {"process_group": "app"}})
    assert fly.process_group(machine) == "app"


def test_only_console_machines_is_an_error_naming_fly_deploy():
    with pytest.raises(fly.FlyInventoryError, match=r"no Machines in process group app, only 2b "
                                                    r"\(process group 'fly_app_console'\): run `fly deploy`"):
        plugin_with({}).own_machines("myapp", ["app"], [machine_in("fly_app_console", "2b")])


def test_a_machine_on_an_unreachable_host_is_reported_not_guessed_at(monkeypatch):
    warnings = []
    monkeypatch.setattr(fly.display, "warning", warnings.append)
    lost = machine_in("app", "2b", host_status="unreachable")
    lost["incomplete_config"] = lost.pop("config")
    own = plugin_with({}).own_machines("myapp", ["app"], [machine_in("app", "1a"), lost])
    assert [m["id"] for m in own] == ["1a"]
    assert len(warnings) == 1 and "2b (m-2b, host_status unreachable)" in warnings[0]
    with pytest.raises(fly.FlyInventoryError, match="hosts Fly cannot reach now, left out: 2b"):
        plugin_with({}).own_machines("myapp", ["app"], [lost])


def test_host_names_fall_back_to_ids_where_names_are_missing_or_shared():
    machines = [{"id": "1", "name": "a"}, {"id": "2", "name": "a"}, {"id": "3", "name": ""}, {"id": "4", "name": "b"}]
    assert fly.host_names(machines) == {"1": "1", "2": "2", "3": "3", "4": "b"}


def test_stopped_machines_are_reported_with_the_command_to_start_them(monkeypatch):
    warnings = []
    monkeypatch.setattr(fly.display, "warning", warnings.append)
    started = plugin_with({}).started_machines(FakeFlyctl(MACHINES), MACHINES)
    assert [m["id"] for m in started] == ["a5c5de9ce64ca12"]
    assert len(warnings) == 1
    assert "3d8d9015be7189 (quiet-sun-101, stopped)" in warnings[0]
    assert "fly machine start 3d8d9015be7189 -a myapp" in warnings[0] and "start_stopped: true" in warnings[0]


def test_only_stopped_machines_is_an_error_naming_the_start_command():
    with pytest.raises(fly.FlyInventoryError, match="no started Machines.*fly machine start 3d8d9015be7189 -a myapp"):
        plugin_with({}).started_machines(FakeFlyctl(MACHINES[1:]), MACHINES[1:])


def test_no_machines_at_all_is_an_error_naming_fly_deploy():
    with pytest.raises(fly.FlyInventoryError, match="has no Machines: run `fly deploy`"):
        plugin_with({}).started_machines(FakeFlyctl([]), [])


def test_start_stopped_starts_them_and_waits_until_they_run(monkeypatch):
    monkeypatch.setattr(fly.time, "sleep", lambda _: None)
    monkeypatch.setattr(fly.display, "warning", lambda message: pytest.fail(f"unexpected warning: {message}"))
    starting = [MACHINES[0], dict(MACHINES[1], state="starting")]
    running = [MACHINES[0], dict(MACHINES[1], state="started")]
    flyctl = FakeFlyctl(starting, running)
    started = plugin_with({"start_stopped": True}).started_machines(flyctl, MACHINES)
    assert flyctl.started == ["3d8d9015be7189"]
    assert [m["id"] for m in started] == ["a5c5de9ce64ca12", "3d8d9015be7189"]


# ---- certificate ---------------------------------------------------------------------------

def sign(tmp_path, validity, principals="root,pythonuser"):
    """A key and certificate signed by a local CA, valid as given (ssh-keygen -V)."""
    ca = tmp_path / "ca"
    if not ca.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ca)], check=True)
    key = tmp_path / "id_fly_myapp"
    for path in (key, tmp_path / "id_fly_myapp.pub", tmp_path / "id_fly_myapp-cert.pub"):
        path.unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    # TZ=UTC: ssh-keygen reads an absolute -V time as local time.
    subprocess.run(["ssh-keygen", "-q", "-s", str(ca), "-I", "t", "-n", principals, "-V", validity, f"{key}.pub"],
                   check=True, env=dict(os.environ, TZ="UTC"))
    return str(key)


def test_the_certificate_gives_its_expiry_and_principals(tmp_path):
    key = sign(tmp_path, "20261128122140:20261128145140")
    valid_to, principals = fly.certificate_status(key + "-cert.pub")
    assert valid_to == datetime.datetime(2026, 11, 28, 14, 51, 40, tzinfo=datetime.timezone.utc)
    assert principals == ["root", "pythonuser"]
    assert fly.certificate_status(sign(tmp_path, "always:forever") + "-cert.pub") == (None, ["root", "pythonuser"])
    with pytest.raises(ValueError, match="not a certificate"):
        fly.certificate_status(key + ".pub")
    (tmp_path / "junk-cert.pub").write_text("ssh-ed25519-cert-v01@openssh.com AAAA junk\n")
    with pytest.raises(ValueError, match="cannot read the certificate"):
        fly.certificate_status(str(tmp_path / "junk-cert.pub"))


def test_a_certificate_is_reused_only_with_an_hour_left_and_the_right_principals(tmp_path):
    wanted = ["root", "pythonuser"]
    assert fly.certificate_is_usable(sign(tmp_path, "-1h:+3h"), wanted)
    assert not fly.certificate_is_usable(sign(tmp_path, "-1h:+50m"), wanted)
    assert not fly.certificate_is_usable(sign(tmp_path, "-3h:-1h"), wanted)
    assert not fly.certificate_is_usable(sign(tmp_path, "-1h:+3h", principals="root"), wanted)
    assert not fly.certificate_is_usable(str(tmp_path / "missing"), wanted)


def test_a_credentials_folder_with_an_at_sign_never_reaches_fly_ssh_issue(tmp_path, monkeypatch):
    """flyctl takes a path with "@" for an email address, then prompts (the double does the same)."""
    state = make_state(str(tmp_path / "state"), {"myapp": ORG})
    for name, value in fly_env(state).items():
        monkeypatch.setenv(name, value)
    folder = tmp_path / "me@work" / "creds"
    flyctl = fly.Flyctl(shutil.which("fly"), "myapp")
    prompted = flyctl.run("ssh", "issue", ORG, str(folder.parent / "key"), "--org", ORG)
    assert prompted.returncode == 1 and "prompt: non interactive" in prompted.stderr
    key = fly.ensure_certificate(flyctl, ORG, str(folder), ["root", "alice"], 6)
    assert key == str(folder / "id_fly_myapp") and fly.certificate_is_usable(key, ["root", "alice"])
    assert sorted(os.listdir(folder)) == ["id_fly_myapp", "id_fly_myapp-cert.pub"]
    assert all(stat.S_IMODE(os.stat(folder / name).st_mode) == 0o600 for name in os.listdir(folder))
    issued = [c["argv"] for c in calls(state) if c["argv"][:2] == ["ssh", "issue"]][-1]
    assert "@" not in issued[3] and not os.path.exists(os.path.dirname(issued[3])), "the scratch folder is gone"
    monkeypatch.setattr(fly.tempfile, "gettempdir", lambda: str(tmp_path / "tmp@x"))
    with pytest.raises(fly.FlyInventoryError, match=r'both hold "@".*credentials_dir'):
        fly.ensure_certificate(flyctl, ORG, str(tmp_path / "a@b"), ["root"], 6)


def test_ensure_certificate_issues_into_a_fresh_path_and_moves_the_pair_into_place(tmp_path, monkeypatch):
    state = make_state(str(tmp_path / "state"), {"myapp": ORG})
    for name, value in fly_env(state).items():
        monkeypatch.setenv(name, value)
    folder = tmp_path / "creds"
    flyctl = fly.Flyctl(shutil.which("fly"), "myapp")
    key = fly.ensure_certificate(flyctl, ORG, str(folder), ["root", "alice"], 6)
    again = fly.ensure_certificate(flyctl, ORG, str(folder), ["root", "alice"], 6)
    assert key == again == str(folder / "id_fly_myapp")
    assert sorted(os.listdir(folder)) == ["id_fly_myapp", "id_fly_myapp-cert.pub"]
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert all(stat.S_IMODE(os.stat(folder / name).st_mode) == 0o600 for name in os.listdir(folder))
    issued = [c["argv"] for c in calls(state) if c["argv"][:2] == ["ssh", "issue"]]
    assert len(issued) == 1, "a valid certificate must be reused"
    assert issued[0][2] == ORG and os.path.dirname(os.path.dirname(issued[0][3])) == str(folder)
    assert issued[0][4:] == ["--hours", "6", "--org", ORG, "-u", "root", "-u", "alice"]
    assert fly.certificate_status(key + "-cert.pub")[1] == ["root", "alice"]


# ---- the whole plugin against the fly double -----------------------------------------------------

@pytest.fixture
def fly_home(tmp_path, monkeypatch):
    """A user with the double as `fly`, logged in, an app named in a fly.toml, no Machines yet."""
    app = "devbox-unit-" + os.urandom(4).hex()
    state = make_state(str(tmp_path / "state"), {app: ORG})
    for name, value in fly_env(state).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("DEVBOX_FLY_TOML", write(tmp_path, FLY_TOML.replace('"myapp"', f'"{app}"')))
    monkeypatch.setenv("DEVBOX_FLY_CREDENTIALS_DIR", str(tmp_path / "creds"))
    # The Machines here are not containers: the first tunnel's `fly proxy` finds none in DNS at once.
    monkeypatch.setenv("FLY_DOUBLE_DNS_WAIT", "0")
    source = tmp_path / "fly.yml"
    source.write_text("plugin: fly\n")
    return {"app": app, "state": state, "source": str(source)}


def parse(source):
    plugin = inventory_loader.get("fly")
    inventory = InventoryData()
    plugin.parse(inventory, DataLoader(), source, cache=False)
    return inventory


def test_fly_not_installed_says_how_to_install_it(fly_home, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    with pytest.raises(AnsibleParserError, match=r"flyctl is not installed.*https://fly.io/install.sh"):
        parse(fly_home["source"])


def test_not_logged_in_names_fly_auth_login(fly_home, monkeypatch):
    monkeypatch.delenv("FLY_ACCESS_TOKEN")
    with pytest.raises(AnsibleParserError, match=r"not logged in .*run `fly auth login`"):
        parse(fly_home["source"])


def test_whoami_failing_for_another_reason_shows_flyctls_message(fly_home, monkeypatch):
    monkeypatch.setenv("FLY_DOUBLE_API_UNREACHABLE", "1")
    with pytest.raises(AnsibleParserError) as raised:
        parse(fly_home["source"])
    assert "`fly auth whoami` failed: failed retrieving current user: Post \"https://api.fly.io/graphql\": " \
           "dial tcp: lookup api.fly.io: no such host" in str(raised.value)
    assert "fly auth login" not in str(raised.value)


def test_flyctls_error_line_is_the_message_not_the_lines_after_it():
    result = subprocess.CompletedProcess([], 1, "", "Error: agent: failed to start\nThe agent failed to start with "
                                         "the following error log:\n\nboom\n\nA copy of this log has been saved at /x\n\n")
    assert fly.error_text(result) == "agent: failed to start"
    assert fly.error_text(subprocess.CompletedProcess([], 2, "", "")) == "exit status 2"


def test_a_run_issues_for_root_the_user_and_fly_from_the_apps_org_and_starts_the_agent(fly_home, monkeypatch, tmp_path):
    """FLY_ORG pointing at another org must not pick that org's CA."""
    make_state(fly_home["state"], {fly_home["app"]: ORG}, other_orgs=("other-org",))
    monkeypatch.setenv("FLY_ORG", "other-org")
    monkeypatch.setenv("FLY_DOUBLE_AGENT_START_S", "0")
    monkeypatch.setattr(fly.Flyctl, "machines", lambda self: [dict(MACHINES[0])])
    inventory = parse(fly_home["source"])
    assert inventory.get_host("aged-wind-2649") is not None
    certificate = str(tmp_path / "creds" / f"id_fly_{fly_home['app']}-cert.pub")
    assert fly.certificate_status(certificate)[1] == ["root", "alice", "fly"]
    assert signing_ca(certificate) == fingerprint(ca_path(fly_home["state"], ORG) + ".pub")
    argvs = [c["argv"] for c in calls(fly_home["state"])]
    proxies = [i for i, argv in enumerate(argvs) if argv[0] == "proxy"]
    assert argvs[proxies[0] - 2:proxies[0]] == [["agent", "ping", "--json"], ["agent", "start"]], \
        "the agent runs before any proxy starts"
    before = len(calls(fly_home["state"]))
    parse(fly_home["source"])
    again = [c["argv"][:2] for c in calls(fly_home["state"])[before:] if c["argv"][0] in ("agent", "version")]
    assert again == [["agent", "ping"], ["version", "--json"]], "a running, current agent is only pinged"


def test_a_missing_app_names_fly_launch(fly_home, monkeypatch, tmp_path):
    monkeypatch.setenv("DEVBOX_FLY_TOML", write(tmp_path, FLY_TOML.replace('"myapp"', '"not-my-app"'), "other.toml"))
    with pytest.raises(AnsibleParserError, match=r"app 'not-my-app'.*does not exist.*`fly apps create not-my-app`"):
        parse(fly_home["source"])


def test_an_app_without_machines_names_fly_deploy(fly_home):
    with pytest.raises(AnsibleParserError, match=r"has no Machines: run `fly deploy`"):
        parse(fly_home["source"])
    listed = [c["argv"] for c in calls(fly_home["state"])]
    assert ["machines", "list", "-a", fly_home["app"], "--json"] in listed


def test_an_app_with_a_public_ip_is_refused_with_how_to_release_it(fly_home):
    set_ips(fly_home["state"], fly_home["app"], [{"address": "fdaa:0:18:0:1::2", "type": "private_v6"},
                                                 {"address": "2a09:8280:1::37:fde9", "type": "v6"},
                                                 {"address": "66.241.124.163", "type": "shared_v4"}])
    with pytest.raises(AnsibleParserError) as raised:
        parse(fly_home["source"])
    message = " ".join(str(raised.value).split())
    assert "has public IP addresses: 2a09:8280:1::37:fde9 (v6), 66.241.124.163 (shared_v4)" in message
    assert f"fly ips release 2a09:8280:1::37:fde9 66.241.124.163 -a {fly_home['app']}" in message
    assert not [c for c in calls(fly_home["state"]) if c["argv"][:2] in (["ssh", "issue"], ["proxy"])], \
        "refused before any certificate or tunnel"


@pytest.mark.parametrize("ips, hint", [
    ([{"address": "fdaa:0:18:0:1::2", "type": "private_v6"}], "fly proxy 8888 {app}.flycast -a {app} (jupyter; starts a stopped Machine)"),
    ([], "fly proxy 8888 -a {app} (jupyter)")])
def test_a_private_app_is_reached_through_flycast_once_it_has_the_address(fly_home, monkeypatch, tmp_path, ips, hint):
    app = fly_home["app"]
    with open(os.path.join(ROOT, "fly.toml"), encoding="utf-8") as handle:
        monkeypatch.setenv("DEVBOX_FLY_TOML", write(tmp_path, handle.read().replace(
            'app = "python-dev-machine"', f'app = "{app}"'), "project.toml"))
    set_ips(fly_home["state"], app, ips)
    monkeypatch.setenv("FLY_DOUBLE_AGENT_START_S", "0")
    monkeypatch.setattr(fly.Flyctl, "machines", lambda self: [dict(MACHINES[0])])
    warnings = []
    monkeypatch.setattr(fly.display, "warning", warnings.append)
    inventory = parse(fly_home["source"])
    assert inventory.get_host("aged-wind-2649").get_vars()["devbox_open_hint"] == hint.format(app=app)
    assert any(f"fly ips allocate-v6 --private -a {app}" in warning for warning in warnings) == (not ips)


def test_ansible_inventory_shows_the_error_and_fails_when_told_to(fly_home):
    env = dict(os.environ, ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED="true", ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"))
    env.pop("FLY_ACCESS_TOKEN")
    result = subprocess.run([os.path.join(ROOT, ".venv", "bin", "ansible-inventory"), "--list"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "fly inventory: flyctl is not logged in" in result.stderr and "fly auth login" in result.stderr
    assert json.dumps("fly auth login") not in result.stdout


def test_a_failed_issue_is_an_error_and_leaves_no_files(tmp_path, monkeypatch):
    state = make_state(str(tmp_path / "state"), {"myapp": ORG})
    for name, value in fly_env(state).items():
        monkeypatch.setenv(name, value)
    flyctl = fly.Flyctl(shutil.which("fly"), "myapp")
    folder = tmp_path / "creds"
    with pytest.raises(fly.FlyInventoryError, match="could not issue an SSH certificate: failed retrieving "
                                                    "organization with slug not-my-org"):
        fly.ensure_certificate(flyctl, "not-my-org", str(folder), ["root"], 24)
    assert os.listdir(folder) == []
    with pytest.raises(fly.FlyInventoryError, match="1 to 72 hours"):
        fly.ensure_certificate(flyctl, ORG, str(folder), ["root"], 100)


@pytest.mark.parametrize("user, valid", [("alice", True), ("dev-user_1", True), ("_svc", True), ("a" * 32, True),
                                         ("a" * 33, False), ("Alice", False), ("9lives", False), ("x y", False),
                                         ("-x", False), ("", False)])
def test_one_login_name_rule_for_fly_toml_the_role_check_and_the_module(tmp_path, user, valid):
    """NONROOT_USER, dev_user_name's check on the controller and the account module agree."""
    from ansible_collections.devbox.machine.plugins.module_utils.devbox_records import AccountError, validate
    from ansible_collections.devbox.machine.plugins.action.devbox_check_inputs import RULES

    path = write(tmp_path, FLY_TOML.replace('NONROOT_USER = "alice"', f'NONROOT_USER = "{user}"')
                 .replace('destination = "/home/alice"', f'destination = "/home/{user}"'))
    try:
        fly.read_fly_toml(path)
        fly_accepts = True
    except fly.FlyInventoryError as error:
        assert "not a valid login name: use 1-32 characters" in str(error)
        fly_accepts = False
    try:
        validate({"name": user, "uid": 1000, "gid": 1000, "home": "/home/alice"})
        module_accepts = True
    except AccountError:
        module_accepts = False
    check_accepts = not RULES["dev_user"]({"dev_user_name": user, "dev_user_uid": 1000, "dev_user_gid": 1000,
                                           "dev_user_home": "/home/alice"}, {})
    assert (fly_accepts, check_accepts, module_accepts) == (valid, valid, valid)


class Said:
    """Stands in for the plugin's Display: what it said and warned."""

    def __init__(self):
        self.lines, self.warnings = [], []

    def display(self, message, **_):
        self.lines.append(message)

    def warning(self, message, **_):
        self.warnings.append(message)

    def v(self, message, **_):
        self.lines.append(message)


def agent_state(state):
    with open(os.path.join(state, "agent.json"), encoding="utf-8") as handle:
        return json.load(handle)


def test_a_stale_agent_is_restarted_once_before_the_proxies_and_a_current_one_is_left_alone(fly_home, monkeypatch):
    """After flyctl updated itself: the agent an older flyctl started is restarted here, once, not by each proxy."""
    server = echo_server()
    monkeypatch.setenv("FLY_DOUBLE_AGENT_START_S", "0")
    old = subprocess.Popen([DOUBLE, "proxy", f"0:{server.getsockname()[1]}", "127.0.0.1", "-a", fly_home["app"],
                            "--watch-stdin"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, env=dict(os.environ, FLY_DOUBLE_VERSION="0.3.200"))
    said = Said()
    monkeypatch.setattr(fly, "display", said)
    try:
        assert old.stdout.readline().startswith("Proxying localhost:")
        flyctl = fly.Flyctl(DOUBLE, fly_home["app"])
        flyctl.ensure_agent()
        assert agent_state(fly_home["state"])["version"] == "0.3.220"
        assert old.wait(10) is not None, "the old agent's tunnels went with it"
        assert any("agent runs v0.3.200, flyctl is v0.3.220" in warning and "restart any `fly proxy` of yours"
                   in warning for warning in said.warnings)
        flyctl.ensure_agent()
        restarts = [c["argv"] for c in calls(fly_home["state"]) if c["argv"][:2] == ["agent", "restart"]]
        assert restarts == [["agent", "restart"]], "restarted once, then left alone"
    finally:
        old.kill()
        old.wait()
        server.close()


def test_the_first_tunnel_gets_flyctls_patience_and_says_what_it_waits_for(fly_home, monkeypatch):
    """A new agent whose tunnel takes longer than a connection's proxy waits: the first proxy waits for it."""
    server = echo_server()
    monkeypatch.setenv("FLY_DOUBLE_AGENT_START_S", "0")
    monkeypatch.setenv("FLY_DOUBLE_TUNNEL_S", "6")
    monkeypatch.setattr(fly, "FIRST_TUNNEL_NOTE_S", 1)
    said = Said()
    monkeypatch.setattr(fly, "display", said)
    try:
        # What one SSH connection's proxy does with a short patience: it gives up before the tunnel is up.
        impatient = subprocess.run([sys.executable, PROXY_HELPER, "--fly", DOUBLE, "--app", fly_home["app"],
                                    "--ready-timeout", "2", "--port", str(server.getsockname()[1]), "127.0.0.1"],
                                   stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        assert impatient.returncode == 255 and "printed no readiness line within 2 s" in impatient.stderr
        flyctl = fly.Flyctl(DOUBLE, fly_home["app"])
        flyctl.open_first_tunnel("127.0.0.1")
        assert said.warnings == [], said.warnings
        assert [line for line in said.lines if "waiting for flyctl's WireGuard tunnel" in line
                and "up to 4 minutes" in line]
        assert fly.FIRST_TUNNEL_WAIT_S > 4 * 60
        proxies = [c for c in calls(fly_home["state"]) if c["argv"][0] == "proxy"]
        assert all(process_gone(c["pid"]) for c in proxies), "the first tunnel's proxy is stopped once it is up"
    finally:
        server.close()


def test_the_readmes_quick_start_names_the_users_app_in_fly_toml(tmp_path):
    """The README's `sed` line, run as written in a copy of the project's fly.toml: the inventory reads $APP."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        line = next(line for line in handle if line.startswith("sed -i.bak ") and "fly.toml" in line)
    shutil.copyfile(os.path.join(ROOT, "fly.toml"), tmp_path / "fly.toml")
    command = line.split("#", 1)[0].strip()
    subprocess.run(["bash", "-c", command], cwd=tmp_path, env=dict(os.environ, APP="devbox-alice-ml"), check=True)
    assert fly.read_fly_toml(str(tmp_path / "fly.toml"))["app"] == "devbox-alice-ml"
