"""Every module documents itself as the ecosystem expects, and the docs match the code.

DOCUMENTATION's options equal the module's ARGUMENT_SPEC (names, types, defaults, choices,
required, elements); EXAMPLES and RETURN exist; `ansible-doc` renders each plugin without a
warning."""
import glob
import importlib
import os
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = sorted(glob.glob(os.path.join(ROOT, "plugins", "modules", "*.py")))
ANSIBLE_DOC = os.path.join(os.path.dirname(sys.executable), "ansible-doc")
COMPARED = ("type", "default", "choices", "required", "elements")


def load(path):
    """The plugin file (plugins/<kind>/<name>.py), imported by the collection's name as Ansible imports it."""
    relative = os.path.relpath(path, ROOT)[:-len(".py")]
    return importlib.import_module("ansible_collections.devbox.machine." + relative.replace(os.sep, "."))


def documented(docs: dict, section: str) -> dict:
    """A section (options, attributes) of the module's own docs with that of its devbox.machine doc fragments
    (plugins/doc_fragments/), as ansible-doc merges them."""
    merged = {}
    for fragment in docs.get("extends_documentation_fragment", []):
        namespace, collection, name = fragment.split(".")
        assert (namespace, collection) == ("devbox", "machine"), fragment
        source = load(os.path.join(ROOT, "plugins", "doc_fragments", f"{name}.py"))
        merged.update(yaml.safe_load(source.ModuleDocFragment.DOCUMENTATION).get(section, {}))
    return dict(merged, **docs.get(section, {}))


def normalised(option: dict) -> dict:
    clean = {key: option[key] for key in COMPARED if key in option}
    clean.setdefault("type", "str")
    if not clean.get("required"):
        clean.pop("required", None)
    return clean


@pytest.mark.parametrize("path", MODULES, ids=os.path.basename)
def test_documented_options_equal_the_argument_spec(path):
    module = load(path)
    options = documented(yaml.safe_load(module.DOCUMENTATION), "options")
    action = os.path.join(ROOT, "plugins", "action", os.path.basename(path))
    if os.path.exists(action) and not hasattr(module, "ARGUMENT_SPEC"):
        # A doc stub: docs of an action plugin, which takes exactly these arguments.
        assert set(options) == load(action).ActionModule._VALID_ARGS
    else:
        if os.path.exists(action):
            # The module of an action that builds its arguments from the variables (devbox_services): the task
            # names no option, the module's are documented.
            assert load(action).ActionModule._VALID_ARGS == frozenset()
        assert {name: normalised(option) for name, option in options.items()} == \
               {name: normalised(option) for name, option in module.ARGUMENT_SPEC.items()}
    assert all(option.get("description") for option in options.values())


@pytest.mark.parametrize("path", MODULES, ids=os.path.basename)
def test_examples_return_and_attributes(path):
    module = load(path)
    docs = yaml.safe_load(module.DOCUMENTATION)
    assert set(documented(docs, "attributes")) >= {"check_mode", "diff_mode"}
    examples = yaml.safe_load(module.EXAMPLES)
    assert examples and all(docs["module"] in task for task in examples)
    returned = yaml.safe_load(module.RETURN) or {}
    assert all({"description", "type", "returned"} <= set(value) for value in returned.values())


@pytest.mark.parametrize("plugin", [("module", os.path.basename(path)[:-3]) for path in MODULES]
                         + [("inventory", "fly"), ("inventory", "devbox_yaml"), ("strategy", "mitogen_linear"),
                            ("lookup", "devbox_machine"), ("lookup", "devbox_run_summary"),
                            ("callback", "devbox.machine.devbox"), ("callback", "devbox.machine.payload_cache")],
                         ids=lambda plugin: plugin[1])
def test_ansible_doc_renders_without_a_warning(plugin):
    kind, name = plugin
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"))
    result = subprocess.run([ANSIBLE_DOC, "-t", kind, name], capture_output=True, text=True, cwd=ROOT, env=env)
    assert result.returncode == 0 and "WARNING" not in result.stderr and "ERROR" not in result.stderr, result.stderr
    assert name.rsplit(".", 1)[-1] in result.stdout
