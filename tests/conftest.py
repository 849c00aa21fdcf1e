"""Make the project's Python importable in tests: its libraries and plugins by the collection's name
(ansible_collections.devbox.machine.plugins..., through playbooks/collections, as ansible.cfg finds
them; the installed ansible package's ansible_collections merges with it, a namespace package), the
boot step (a script) by its file name, the tools."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for folder in ("playbooks/collections", "boot", "tools"):
    sys.path.insert(0, os.path.join(ROOT, folder))
