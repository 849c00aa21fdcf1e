"""End-to-end tests: real Docker, real OpenSSH, the `fly` test double. Run only them with
`.venv/bin/pytest -q -m e2e tests`, or leave them out with `-m "not e2e"`."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: end-to-end through Docker containers, OpenSSH and the fly double")
