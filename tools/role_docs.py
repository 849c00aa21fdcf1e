#!/usr/bin/env python3
"""Write each role's README variable table from its meta/argument_specs.yml and defaults/main.yml, so they never drift.

  python tools/role_docs.py          rewrite the tables
  python tools/role_docs.py --check  exit 1 when a README is out of date
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN, END = "<!-- BEGIN VARIABLES (tools/role_docs.py) -->", "<!-- END VARIABLES -->"


def table(spec_path: str) -> str:
    """The variables of meta/argument_specs.yml, each with its default from defaults/main.yml (its one home)."""
    with open(spec_path) as spec_file:
        main = yaml.safe_load(spec_file)["argument_specs"]["main"]
    defaults_path = os.path.join(os.path.dirname(os.path.dirname(spec_path)), "defaults", "main.yml")
    defaults = {}
    if os.path.exists(defaults_path):
        with open(defaults_path) as defaults_file:
            defaults = yaml.safe_load(defaults_file) or {}
    rows = ["| variable | type | default | description |", "|---|---|---|---|"]
    for name, option in main["options"].items():
        kind = option.get("type", "str") + (f" of {option['elements']}" if "elements" in option else "")
        default = json.dumps(defaults[name]) if name in defaults else "unset"
        rows.append(f"| `{name}` | {kind} | `{default}` | {' '.join(str(option['description']).split())} |")
    return "\n".join([BEGIN, *rows, END])


def render(readme: str, spec_path: str) -> str:
    head, _, rest = readme.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return head + table(spec_path) + tail


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true")
    stale = []
    check = parser.parse_args().check
    for spec_path in sorted(glob.glob(os.path.join(ROOT, "roles", "*", "meta", "argument_specs.yml"))):
        readme_path = os.path.join(os.path.dirname(os.path.dirname(spec_path)), "README.md")
        with open(readme_path) as readme_file:
            readme = readme_file.read()
        if BEGIN not in readme:
            sys.exit(f"{readme_path} has no {BEGIN} marker")
        wanted = render(readme, spec_path)
        if wanted != readme:
            stale.append(readme_path)
            if not check:
                with open(readme_path, "w") as readme_file:
                    readme_file.write(wanted)
    if check and stale:
        print("out of date (run python tools/role_docs.py):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
