"""The devbox modules' AnsiballZ payloads kept between runs (plugins/plugin_utils/devbox_payload_cache.py, through the
callback plugin devbox.machine.payload_cache that ansible.cfg enables)."""
import os
import shutil
import subprocess

import pytest

from ansible_collections.devbox.machine.plugins.plugin_utils import devbox_payload_cache as cache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = os.path.join(ROOT, ".venv", "bin", "python")
# A devbox module that only reads (/proc/meminfo), and one of ansible-core's, whose payload is not ours to keep.
PLAYBOOK = ("- hosts: localhost\n  gather_facts: false\n"
            "  environment: {ANSIBLE_DEBUG: \"0\"}  # the modules answer in JSON alone\n"
            "  tasks:\n    - devbox_swap:\n    - ansible.builtin.ping:\n")


def run_playbook(tmp_path, home) -> str:
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_HOME=str(home),
               ANSIBLE_DEBUG="1", ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    result = subprocess.run([os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), "-i", "localhost,", "-c", "local",
                             "-e", f"ansible_python_interpreter={PYTHON}", str(tmp_path / "play.yml")],
                            env=env, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def built(output: str) -> int:
    return output.count("ANSIBALLZ: Creating module")


def test_the_second_run_uses_the_payloads_the_first_one_built(tmp_path):
    home = tmp_path / "ansible-home"
    older = home / "devbox" / "ansiballz" / "key-of-older-code"
    older.mkdir(parents=True)
    assert built(run_playbook(tmp_path, home)) == 2
    assert not older.exists(), "the payloads of older code are not kept forever"
    kept = home / "devbox" / "ansiballz" / cache.payload_key()
    assert [name.partition("-")[0] for name in os.listdir(kept)] == ["ansible.legacy.devbox_swap"]
    assert {oct(os.stat(path).st_mode & 0o777) for path in (kept.parent, kept)} == {"0o700"}
    second = run_playbook(tmp_path, home)
    assert built(second) == 1 and "ANSIBALLZ: using cached module" in second, "ping is built again, not ours"


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


@pytest.mark.parametrize("name, kept", [
    ("ansible.legacy.devbox_look-ZIP_DEFLATED-none", True),
    ("ansible_collections.devbox.machine.plugins.modules.devbox_venv-ZIP_STORED-none", True),
    ("ansible.legacy.devbox_look-ZIP_DEFLATED-none.lock", False),
    ("ansible.legacy.devbox_look-ZIP_DEFLATED-none-part", False),
    ("ansible.modules.ping-ZIP_DEFLATED-none", False),
    ("ansible.legacy.devbox_look", False),
])
def test_only_finished_payloads_of_our_modules_are_kept(name, kept):
    assert cache.is_kept_entry(name) is kept


def test_a_cache_that_cannot_be_written_only_costs_the_builds(tmp_path):
    run_cache, kept = tmp_path / "run", tmp_path / "keep"
    run_cache.mkdir()
    (run_cache / "ansible.legacy.devbox_look-ZIP_DEFLATED-none").write_text("built")
    kept.write_text("a file where the folder should be")
    assert cache.keep(str(run_cache), str(kept / "key")) == 0
    assert cache.restore(str(run_cache), str(kept / "key")) == 0
    assert kept.read_text() == "a file where the folder should be"
