"""Make the project's Python (module_utils, plugins, launcher, boot step) importable in tests."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for folder in ("plugins/module_utils", "plugins/test", "roles/jupyter/files", "boot"):
    sys.path.insert(0, os.path.join(ROOT, folder))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "playbooks", "collections"))
