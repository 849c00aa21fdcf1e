"""A module's AnsiballZ payload kept between runs (plugins/plugin_utils/devbox_payload_cache.py)."""
import os
import shutil
import subprocess

import pytest

from ansible_collections.devbox.machine.plugins.plugin_utils import devbox_payload_cache as cache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = os.path.join(ROOT, ".venv", "bin", "python")
PLAYBOOK = ("- hosts: localhost\n  gather_facts: false\n  tasks:\n    - kept_ping:\n"
            "      environment: {ANSIBLE_DEBUG: \"0\"}  # the module answers in JSON alone\n")


def run_playbook(tmp_path, home) -> str:
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_HOME=str(home),
               ANSIBLE_ACTION_PLUGINS=os.path.join(ROOT, "tests", "payload_cache", "action_plugins"),
               ANSIBLE_DEBUG="1", ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    result = subprocess.run([os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), "-i", "localhost,",
                             "-c", "local", "-e", f"ansible_python_interpreter={PYTHON}", str(tmp_path / "play.yml")], env=env, capture_output=True, text=True,
                            cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def test_the_second_run_uses_the_payload_the_first_one_built(tmp_path):
    home = tmp_path / "ansible-home"
    first = run_playbook(tmp_path, home)
    assert "ANSIBALLZ: Creating module" in first
    kept = home / "devbox" / "ansiballz" / cache.payload_key()
    assert [name for name in os.listdir(kept) if cache.is_entry_of(name, "ping")]
    assert {oct(os.stat(path).st_mode & 0o777) for path in (kept.parent, kept)} == {"0o700"}
    second = run_playbook(tmp_path, home)
    assert "ANSIBALLZ: using cached module" in second and "ANSIBALLZ: Creating module" not in second


def test_a_change_of_the_module_code_makes_a_new_key(tmp_path):
    plugins = tmp_path / "plugins"
    shutil.copytree(os.path.join(ROOT, "plugins", "module_utils"), plugins / "module_utils",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (plugins / "modules").mkdir()
    before = cache.payload_key(str(plugins))
    assert cache.payload_key(str(plugins)) == before
    with open(plugins / "module_utils" / "devbox_swap.py", "a") as source:
        source.write("# changed\n")
    assert cache.payload_key(str(plugins)) != before


@pytest.mark.parametrize("name, module, entry", [
    ("ansible.legacy.devbox_look-ZIP_DEFLATED-none", "devbox_look", True),
    ("ansible_collections.devbox.machine.plugins.modules.devbox_look-ZIP_STORED-none", "devbox_look", True),
    ("ansible.legacy.devbox_look-ZIP_DEFLATED-none.lock", "devbox_look", False),
    ("ansible.legacy.devbox_look-ZIP_DEFLATED-none-part", "devbox_look", False),
    ("ansible.legacy.devbox_services-ZIP_DEFLATED-none", "devbox_look", False),
    ("ansible.legacy.devbox_look", "devbox_look", False),
])
def test_only_finished_entries_of_the_module_are_kept(name, module, entry):
    assert cache.is_entry_of(name, module) is entry


def test_a_cache_that_cannot_be_written_only_costs_the_build(tmp_path):
    run_cache, keep_root = tmp_path / "run", tmp_path / "keep"
    keep_root.write_text("a file where the folder should be")
    with cache.kept_payload("devbox_look", str(run_cache), str(keep_root)):
        (run_cache / "ansible.legacy.devbox_look-ZIP_DEFLATED-none").write_text("built")
    assert keep_root.read_text() == "a file where the folder should be"
