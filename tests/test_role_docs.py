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
def test_every_default_is_specified_with_the_same_value(role):
    with open(os.path.join(ROOT, "roles", role, "defaults", "main.yml")) as defaults_file:
        defaults = yaml.safe_load(defaults_file)
    with open(os.path.join(ROOT, "roles", role, "meta", "argument_specs.yml")) as spec_file:
        options = yaml.safe_load(spec_file)["argument_specs"]["main"]["options"]
    assert set(defaults) == set(options)
    for name, value in defaults.items():
        assert options[name]["default"] == value, name
        assert options[name].get("description"), name
