"""The printed Jupyter URL in a real browser, as a user would use it, across `down` and `up`.

`tools/local_machine.py up` (what `make up` runs) provisions a machine of its own with `six`
from python_env_packages; headless Chromium opens the URL it printed, makes a notebook, imports
six, `%pip install`s tomli-w in a cell and saves. After `down` and `up` the same URL opens the
same notebook, and a fresh kernel imports both packages. Screenshots: tests/output/browser/.
"""
import json
import os
import re
import subprocess
import sys

import pytest

from jupyterlab_page import JupyterLab, chromium
from docker_machines import ROOT, TEST_IMAGE, LocalMachine, fresh, tagged
from local_machine import engine_info, gpu_request

NAME, VOLUME, PORT = tagged("devbox-browser"), tagged("devbox-browser-home"), 18870
SHOTS = os.path.join(ROOT, "tests", "output", "browser")
NOTEBOOK = "devbox-check.ipynb"
URL_LINE = re.compile(rf"jupyter: (http://127\.0\.0\.1:{PORT}/lab\?token=[0-9A-Za-z_-]+)")


def local_machine(action: str) -> str:
    """Run `tools/local_machine.py <action>` for the test's machine; its output."""
    env = dict(os.environ, DEVBOX_NAME=NAME, DEVBOX_VOLUME=VOLUME, DEVBOX_PORT=str(PORT), DEVBOX_IMAGE=TEST_IMAGE,
               VARS=json.dumps({"python_env_packages": ["six==1.16.0"]}))
    env.pop("DEVBOX_GPUS", None)
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "local_machine.py"), action],
                            cwd=ROOT, env=env, text=True, capture_output=True, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


def printed_url(output: str) -> str:
    urls = URL_LINE.findall(output)
    assert len(urls) == 1, output[-3000:]
    return urls[0]


@pytest.fixture(scope="module")
def machine():
    with fresh(LocalMachine(name=NAME, volume=VOLUME, image=TEST_IMAGE, port=PORT), start=False) as machine:
        yield machine  # `make up` starts it


@pytest.fixture(scope="module")
def lab():
    os.makedirs(SHOTS, exist_ok=True)
    driver = chromium()
    try:
        yield JupyterLab(driver)
    finally:
        driver.save_screenshot(os.path.join(SHOTS, "last.png"))  # where it stopped, passed or failed
        driver.quit()


def test_notebook_and_pip_install_survive_down_and_up(machine, lab):
    output = local_machine("up")
    _, gpus_in_words = gpu_request(engine_info(), None)
    assert f"GPUs: {gpus_in_words}" in output, "up says whether the container gets the GPUs"
    url = printed_url(output)

    lab.open(url)
    assert lab.driver.title == "JupyterLab"
    lab.new_notebook()
    lab.run_cell('import six; print("six", six.__version__)', expect="six 1.16.0")
    lab.run_cell("%pip install tomli-w==1.0.0", expect="Successfully installed tomli-w-1.0.0")
    lab.run_cell('import tomli_w; print(tomli_w.dumps({"devbox": 1}))', expect="devbox = 1")
    lab.save_as(NOTEBOOK)
    saved = machine.exec(f"cat /home/pythonuser/project/{NOTEBOOK}").stdout
    assert "tomli_w.dumps" in saved and "six 1.16.0" in saved, saved[:2000]
    lab.screenshot(os.path.join(SHOTS, "1-notebook.png"))

    output = local_machine("down")
    assert machine.state() is None, "down removes the container"
    output = local_machine("up")
    assert printed_url(output) == url, "same address, same token after down and up"

    lab.open(url)
    lab.open_file(NOTEBOOK)
    lab.wait(lambda d: "devbox = 1" in lab.outputs(), "the saved outputs")
    outputs = lab.run_cell('import importlib.metadata as m, six, tomli_w; print("fresh kernel:", '
                           'six.__version__, m.version("tomli-w"))', expect="fresh kernel: 1.16.0 1.0.0")
    assert "fresh kernel: 1.16.0 1.0.0" in outputs
    lab.screenshot(os.path.join(SHOTS, "2-after-down-and-up.png"))
    assert "official Jupyter news" not in lab.toasts(), "JupyterLab must not ask about news by default"
