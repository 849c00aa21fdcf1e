"""Every module documents itself as the ecosystem expects, and the docs match the code.

DOCUMENTATION's options equal the module's ARGUMENT_SPEC (names, types, defaults, choices,
required, elements); EXAMPLES and RETURN exist; `ansible-doc` renders each plugin without a
warning."""
import glob
import importlib
import importlib.util
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
    """The module file, with its `ansible.module_utils.devbox_*` imports served from plugins/module_utils (those
    by the collection's name come through playbooks/collections, on the path from conftest.py). A library that
    does not import is left out here: the module needing it fails on its own import, naming it."""
    for util in glob.glob(os.path.join(ROOT, "plugins", "module_utils", "devbox_*.py")):
        name = os.path.basename(util)[:-3]
        if f"ansible.module_utils.{name}" not in sys.modules:
            try:
                sys.modules[f"ansible.module_utils.{name}"] = importlib.import_module(name)
            except ImportError:
                continue
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def documented(docs: dict, section: str) -> dict:
    """A section (options, attributes) of the module's own docs with that of its devbox.machine doc fragments
    (plugins/doc_fragments/), as ansible-doc merges them."""
    merged = {}
    for fragment in docs.get("extends_documentation_fragment", []):
        namespace, collection, name = fragment.split(".")
        assert (namespace, collection) == ("devbox", "machine"), fragment
        spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "plugins", "doc_fragments", f"{name}.py"))
        source = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(source)
        merged.update(yaml.safe_load(source.ModuleDocFragment.DOCUMENTATION).get(section, {}))
    return dict(merged, **docs.get(section, {}))


def normalised(option: dict) -> dict:
    clean = {key: option[key] for key in COMPARED if key in option}
    clean.setdefault("type", "str")
    if not clean.get("required"):
        clean.pop("required", None)
    return clean


# Bugs of the modules these tests found (reported to the lead): strict, so a fix shows as an unexpected pass.
KNOWN_BUGS = {
    ("options", "devbox_status.py"): "devbox_status imports VENV_DIR, which devbox_layout no longer has",
    ("examples", "devbox_status.py"): "devbox_status imports VENV_DIR, which devbox_layout no longer has",
    ("options", "devbox_user.py"): "DOCUMENTATION gives shell the default /bin/bash; ARGUMENT_SPEC makes it required",
}


def modules(test: str) -> list:
    return [pytest.param(path, id=os.path.basename(path), marks=[pytest.mark.xfail(
        strict=True, reason=f"bug: {KNOWN_BUGS[test, os.path.basename(path)]}")]
        if (test, os.path.basename(path)) in KNOWN_BUGS else []) for path in MODULES]


@pytest.mark.parametrize("path", modules("options"))
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


@pytest.mark.parametrize("path", modules("examples"))
def test_examples_return_and_attributes(path):
    module = load(path)
    docs = yaml.safe_load(module.DOCUMENTATION)
    assert set(documented(docs, "attributes")) >= {"check_mode", "diff_mode"}
    examples = yaml.safe_load(module.EXAMPLES)
    assert examples and all(docs["module"] in task for task in examples)
    returned = yaml.safe_load(module.RETURN) or {}
    assert all({"description", "type", "returned"} <= set(value) for value in returned.values())


@pytest.mark.parametrize("plugin", [("module", os.path.basename(path)[:-3]) for path in MODULES]
                         + [("test", os.path.basename(path)[:-4]) for path in glob.glob(os.path.join(ROOT, "plugins", "test", "*.yml"))]
                         + [("filter", "devbox.machine.devbox_jupyter_settings_problem"), ("inventory", "fly"),
                            ("strategy", "mitogen_linear"), ("lookup", "devbox_machine")], ids=lambda plugin: plugin[1])
def test_ansible_doc_renders_without_a_warning(plugin):
    kind, name = plugin
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"))
    result = subprocess.run([ANSIBLE_DOC, "-t", kind, name], capture_output=True, text=True, cwd=ROOT, env=env)
    assert result.returncode == 0 and "WARNING" not in result.stderr and "ERROR" not in result.stderr, result.stderr
    assert name.rsplit(".", 1)[-1] in result.stdout
