"""Mitogen's linear strategy, found by name through ansible.cfg's strategy_plugins.

Mitogen (PyPI `mitogen`, pinned in requirements.txt) keeps one Python interpreter per host for
the whole run and runs each module in it: a module run costs one round trip instead of a new
exec, interpreter start-up and module unpacking. It acts only where the connection is one it
knows by its short name (`docker`, `ssh`); on any other (Molecule's
`community.docker.docker`) this is Ansible's own linear strategy. `ANSIBLE_STRATEGY=linear`
turns it off for a run.
"""
from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule  # noqa: F401
