"""Mitogen's linear strategy, found by name through ansible.cfg's strategy_plugins.

Mitogen (PyPI `mitogen`, pinned in requirements.txt) keeps one Python interpreter per host for
the whole run and runs each module in it: a module run costs one round trip instead of a new
exec, interpreter start-up and module unpacking. It acts only where the connection is one it
knows by its short name (`docker`, `ssh`); on any other (Molecule's
`community.docker.docker`) this is Ansible's own linear strategy. `ANSIBLE_STRATEGY=linear`
turns it off for a run.
"""
DOCUMENTATION = r"""
name: mitogen_linear
short_description: Ansible's linear strategy, each host's modules run in one Python interpreter (Mitogen)
description:
  - Mitogen's C(mitogen_linear) (PyPI C(mitogen), pinned in requirements.txt). Tasks run in lockstep as with
    C(ansible.builtin.linear), and each host keeps one interpreter, started by one exec, for the whole run.
  - Acts where the connection has its short name (C(docker), C(ssh)); with any other connection it is
    C(ansible.builtin.linear).
notes:
  - C(ANSIBLE_STRATEGY=linear) runs a playbook with Ansible's own strategy instead; the tests run both.
author: devbox maintainers
"""

from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule  # noqa: E402,F401
