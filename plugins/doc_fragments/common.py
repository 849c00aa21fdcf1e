"""What every devbox module says unless its own docs say otherwise: who maintains it, and that it
runs in check mode and shows no diff. `extends_documentation_fragment: [devbox.machine.common]`;
a module's own `attributes` entry replaces this one's."""
from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
author: devbox maintainers
"""
