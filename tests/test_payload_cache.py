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


def test_a_kept_payload_carries_bytecode_that_python_imports_from_the_zip(tmp_path):
    """The bytecode is what the import runs (the .py beside it is not compiled again): a .py changed after
    with_bytecode still imports as it was."""
    import base64
    import importlib.util
    import io
    import pickle
    import sys
    import zipfile

    from ansible.executor.module_common import _CachedModule

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("pkg/__init__.py", "")
        zipped.writestr("pkg/answer.py", "VALUE = 'compiled'\n")
    cached = _CachedModule(zip_data=base64.b64encode(buffer.getvalue()), metadata=None, source_mapping={})
    kept = pickle.loads(cache.with_bytecode(pickle.dumps(cached)))
    original = zipfile.ZipFile(io.BytesIO(base64.b64decode(kept.zip_data)))
    assert sorted(original.namelist()) == ["pkg/__init__.py", "pkg/__init__.pyc", "pkg/answer.py", "pkg/answer.pyc"]
    assert original.read("pkg/answer.pyc")[:4] == importlib.util.MAGIC_NUMBER
    changed = tmp_path / "payload.zip"
    with zipfile.ZipFile(changed, "w") as zipped:
        for name in original.namelist():
            text = original.read(name)
            zipped.writestr(name, b"VALUE = 'source'\n" if name == "pkg/answer.py" else text)
    found = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(changed)!r}); "
                            "import pkg.answer; print(pkg.answer.VALUE)"], capture_output=True, text=True)
    assert found.stdout.strip() == "compiled", found.stderr


def test_an_entry_in_an_unknown_shape_is_kept_as_it_is(tmp_path):
    run_cache, kept = tmp_path / "run", tmp_path / "ansiballz" / "key"
    run_cache.mkdir()
    (run_cache / "ansible.legacy.devbox_swap-ZIP_DEFLATED-none").write_bytes(b"not a pickle")
    assert cache.keep(str(run_cache), str(kept)) == 1
    assert (kept / "ansible.legacy.devbox_swap-ZIP_DEFLATED-none").read_bytes() == b"not a pickle"
