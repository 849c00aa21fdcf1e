"""The ~/.bashrc block: in place, once; a real interactive bash over "SSH" starts in ~/project with the venv."""
import os
import subprocess
import sys

import yaml

from ansible_collections.devbox.machine.plugins.module_utils.devbox_shell_init import BEGIN_PREFIX as BEGIN, block, ensure_block, with_block

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The layout's defaults are python_env's own (the module takes them from the role); the block is built from them.
with open(os.path.join(ROOT, "roles", "python_env", "defaults", "main.yml")) as _defaults:
    _PYTHON_ENV = yaml.safe_load(_defaults)
LAYOUT = {"venv_dir": _PYTHON_ENV["python_env_venv_dir"], "project_dir": _PYTHON_ENV["python_env_project_dir"]}
DEFAULT_BLOCK = block(LAYOUT["venv_dir"], LAYOUT["project_dir"])


def test_the_block_is_added_once_and_replaced_in_place():
    original = "# user's own\nalias ll='ls -l'"
    once = with_block(original, DEFAULT_BLOCK)
    assert once.startswith(original + "\n") and once.count(BEGIN) == 1
    assert with_block(once, DEFAULT_BLOCK) == once
    stale = once.replace("project-venv/bin/activate", "old/activate") + "export AFTER=1\n"
    fixed = with_block(stale, DEFAULT_BLOCK)
    assert fixed.count(BEGIN) == 1 and "old/activate" not in fixed and fixed.endswith("export AFTER=1\n")


def test_ensure_block_follows_a_linked_bashrc_and_keeps_its_mode(tmp_path):
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    (dotfiles / "bashrc").write_text("export KEEP=1\n")
    os.chmod(dotfiles / "bashrc", 0o600)
    home = tmp_path / "home"
    home.mkdir()
    os.symlink(dotfiles / "bashrc", home / ".bashrc")
    assert ensure_block(str(home), True, **LAYOUT) is True
    assert (dotfiles / "bashrc").read_text() == "export KEEP=1\n"
    assert ensure_block(str(home), False, **LAYOUT) is True and ensure_block(str(home), False, **LAYOUT) is False
    assert os.path.islink(home / ".bashrc") and os.stat(dotfiles / "bashrc").st_mode & 0o777 == 0o600
    assert BEGIN in (dotfiles / "bashrc").read_text()


def shell(home, *args, **env):
    base = {"HOME": str(home), "PATH": "/usr/bin:/bin", "TERM": "dumb"}
    return subprocess.run(["bash", *args, "-c", 'echo "$PWD|${VIRTUAL_ENV:-}"'], cwd=home, env=dict(base, **env),
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60).stdout.strip()


def test_interactive_ssh_shells_start_in_project_with_the_venv_and_others_do_not(tmp_path):
    home = tmp_path / "home"
    (home / "project").mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(home / "project-venv")], check=True)
    ensure_block(str(home), False, **LAYOUT)
    venv = str(home / "project-venv")
    assert shell(home, "-i", SSH_CONNECTION="10.0.0.1 5 10.0.0.2 22") == f"{home}/project|{venv}"
    assert shell(home, "-i") == f"{home}|{venv}", "a terminal that is not an SSH login stays where it is"
    assert shell(home, "-i", SSH_CONNECTION="x", TERM_PROGRAM="vscode") == f"{home}|{venv}"
    assert shell(home, SSH_CONNECTION="x") == f"{home}|", "non-interactive shells are untouched"


def test_other_venv_and_project_dirs_reach_the_block_and_replace_the_default_one(tmp_path):
    home = tmp_path / "home"
    (home / "work" / "src").mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(home / ".venvs" / "main")], check=True)
    ensure_block(str(home), False, **LAYOUT)
    assert ensure_block(str(home), False, venv_dir=".venvs/main", project_dir="work/src") is True
    text = (home / ".bashrc").read_text()
    assert text.count(BEGIN) == 1 and "project-venv" not in text and text.endswith(block(".venvs/main", "work/src"))
    assert shell(home, "-i", SSH_CONNECTION="x") == f"{home}/work/src|{home}/.venvs/main"
