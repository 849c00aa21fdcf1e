"""The `home` option of the modules that work in the dev user's home:
`extends_documentation_fragment: [devbox.machine.home]`; their argument spec says
`"home": {"type": "path", "required": True}`."""
from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  home:
    description: The dev user's home, the volume.
    type: path
    required: true
"""
