"""A role's defaults, argument spec and README say the same thing."""
import glob
import os
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROLES = sorted(os.path.basename(os.path.dirname(path)) for path in glob.glob(os.path.join(ROOT, "roles", "*", "meta")))


def test_readme_tables_are_generated_from_the_specs():
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "role_docs.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("role", ROLES)
def test_every_default_is_specified_and_spelled_only_in_the_defaults(role):
    """Each default lives once, in defaults/main.yml (a role without variables of its own, services, has none);
    the argument spec names and describes every one without restating its value."""
    path = os.path.join(ROOT, "roles", role, "defaults", "main.yml")
    defaults = {}
    if os.path.exists(path):
        with open(path) as defaults_file:
            defaults = yaml.safe_load(defaults_file) or {}
    with open(os.path.join(ROOT, "roles", role, "meta", "argument_specs.yml")) as spec_file:
        options = yaml.safe_load(spec_file)["argument_specs"]["main"]["options"]
    assert set(defaults) <= set(options)
    for name in options:
        assert "default" not in options[name], f"{name}: the default is defaults/main.yml's alone"
        assert options[name].get("description"), name
