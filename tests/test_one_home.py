"""One fact, one home: a default of the machine is spelled in its role's defaults/main.yml and nowhere
else in the code. Every other place reads it (plugins/plugin_utils/devbox_machine.py, the roles'
variables); a literal copy would drift (a changed jupyter_port printed a dead URL, another
dev_user_name put the home off the volume).

Code means: the literals of Python code (not comments, not docstrings, not the DOCUMENTATION,
EXAMPLES and RETURN texts of a plugin), the values of the YAML that runs (playbooks, roles' tasks,
the inventories), the Dockerfile and the Makefile. Tests are inputs, not homes, and are not read.
"""
import ast
import glob
import os
import re

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Each checked default: (its role, its variable); the literal is read from the role's defaults.
CHECKED = [("dev_user", "dev_user_name"), ("jupyter", "jupyter_port"), ("tensorboard", "tensorboard_port"),
           ("python_env", "python_env_venv_dir")]
DOC_BLOCKS = {"DOCUMENTATION", "EXAMPLES", "RETURN"}


def default(role: str, variable: str):
    with open(os.path.join(ROOT, "roles", role, "defaults", "main.yml")) as defaults:
        return yaml.safe_load(defaults)[variable]


def python_literals(path: str) -> list[tuple[int, object]]:
    """(line, value) of every str or int constant in the file's code."""
    with open(path) as source:
        tree = ast.parse(source.read())
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(isinstance(target, ast.Name) and target.id in DOC_BLOCKS
                                                for target in node.targets):
            skipped.add(id(node.value))
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                skipped.add(id(first.value))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and id(node) not in skipped and isinstance(node.value, (str, int)):
            found.append((node.lineno, node.value))
        if isinstance(node, ast.JoinedStr):
            found += [(part.lineno, part.value) for part in node.values if isinstance(part, ast.Constant)]
    return found


def yaml_values(path: str) -> list[tuple[int, object]]:
    with open(path) as source:
        data = list(yaml.safe_load_all(source))
    values = []

    def walk(value):
        if isinstance(value, dict):
            for key, item in value.items():
                walk(key)
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        else:
            values.append((0, value))
    walk(data)
    return values


def text_lines(path: str) -> list[tuple[int, object]]:
    with open(path) as source:
        return [(number, line) for number, line in enumerate(source, 1) if not line.lstrip().startswith("#")]


def production_files() -> dict[str, callable]:
    files = {}
    for pattern in ("plugins/**/*.py", "boot/*.py", "tools/*.py", "bench/*.py"):
        for path in glob.glob(os.path.join(ROOT, pattern), recursive=True):
            files[path] = python_literals
    for pattern in ("playbooks/*.yml", "roles/*/tasks/*.yml", "inventory/*.yml"):
        for path in glob.glob(os.path.join(ROOT, pattern)):
            files[path] = yaml_values
    for name in ("Dockerfile", "Makefile"):
        files[os.path.join(ROOT, name)] = text_lines
    return files


def mentions(value, literal) -> bool:
    """The value is the literal, or a text holding it as a word of its own (8888 in '127.0.0.1:8888')."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return False
    if value == literal:
        return True
    return isinstance(value, str) and re.search(rf"(?<![\w-]){re.escape(str(literal))}(?![\w-])", value) is not None


@pytest.mark.parametrize("role,variable", CHECKED)
def test_a_default_is_spelled_only_in_its_role_defaults(role, variable):
    literal = default(role, variable)
    copies = [f"{os.path.relpath(path, ROOT)}:{line}: {value!r}"
              for path, read in production_files().items() for line, value in read(path) if mentions(value, literal)]
    assert not copies, f"{variable}'s default {literal!r} is restated outside roles/{role}/defaults/main.yml:\n" + \
        "\n".join(copies)


def test_the_check_reads_code_literals_but_not_docs(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('"""Listens on 8888."""\nDOCUMENTATION = "port: 8888"\n# 8888\nPORT = 8888\nURL = f"x:{1}:8888"\n')
    values = [value for _, value in python_literals(str(sample))]
    assert 8888 in values and "port: 8888" not in values and "Listens on 8888." not in values
    assert mentions(":8888", 8888) and mentions("/home/pythonuser", "pythonuser")
    assert not mentions(18888, 8888) and not mentions("pythonuser2", "pythonuser") and not mentions(True, 1)
