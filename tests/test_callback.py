"""The stdout callback (plugins/callback/devbox.py) on a real ansible-playbook run on this computer: quiet
without -v (changes, warnings, debug messages and "nothing changed"), everything with -v."""
import os
import subprocess
import sys

import pytest

from test_module_docs import ROOT

PLAYBOOK = """
- name: A play
  hosts: localhost
  gather_facts: false
  tasks:
    - name: A skipped task
      ansible.builtin.debug: {msg: never}
      when: false
    - name: An ok task
      ansible.builtin.set_fact: {fact: 1}
    - name: A task with a warning
      warn_once:
    - name: A changed task
      ansible.builtin.command: "true"
      when: change | bool
    - name: The report
      ansible.builtin.debug: {msg: [the URL line]}
"""
WARNING_MODULE = """
from ansible.module_utils.basic import AnsibleModule
module = AnsibleModule(argument_spec={})
module.warn("a warning to show")
module.exit_json(changed=False)
"""


def run(tmp_path, *extra: str) -> str:
    (tmp_path / "library").mkdir(exist_ok=True)
    (tmp_path / "library" / "warn_once.py").write_text(WARNING_MODULE)
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_STRATEGY="linear",
               ANSIBLE_LIBRARY=str(tmp_path / "library"), ANSIBLE_NOCOLOR="1")
    result = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,",
                             "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}", *extra,
                             str(tmp_path / "play.yml")], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


@pytest.mark.parametrize("change", [True, False])
def test_a_quiet_run_shows_changes_warnings_and_debug_messages_only(tmp_path, change):
    output = run(tmp_path, "-e", f"change={change}")
    assert "TASK [The report]" in output and "- the URL line" in output
    assert "TASK [A task with a warning]" in output and "[WARNING]: a warning to show" in output
    assert ("TASK [A changed task]" in output and "changed: [localhost]" in output) is change
    assert ("localhost: nothing changed" in output) is not change
    for hidden in ("A skipped task", "An ok task", "skipping:"):
        assert hidden not in output


def test_with_v_everything_shows(tmp_path):
    output = run(tmp_path, "-v", "-e", "change=true")
    assert "TASK [A skipped task]" in output and "skipping: [localhost]" in output
    assert "TASK [An ok task]" in output and "ok: [localhost] => " in output
