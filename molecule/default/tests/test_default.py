"""What the user gets after site.yml, checked from inside the machine as the user would."""
import json

import pytest

USER = "pythonuser"
HOME = f"/home/{USER}"
VENV = f"{HOME}/project-venv"
JUPYTER_VENV = f"{HOME}/.local/share/devbox/venvs/jupyter"
LAUNCHER = f"{HOME}/.devbox/lib/ansible_collections/devbox/machine/plugins/module_utils/devbox_launcher.py"


def as_user(host, command: str):
    return host.run("su -s /bin/sh -c %s %s", command, USER)


def jupyter_url(host) -> str:
    # The one launcher, as the module keeps it (root's own file) and PID 1 runs it.
    status = as_user(host, f"python3 {LAUNCHER} jupyter status")
    assert status.rc == 0, status.stdout + status.stderr
    return json.loads(status.stdout)["url"]


HTTP_PROBE = """
import sys, urllib.request, urllib.error
headers = {"Authorization": "token " + sys.argv[2]} if len(sys.argv) > 2 else {}
try:
    print(urllib.request.urlopen(urllib.request.Request(sys.argv[1], headers=headers), timeout=10).status)
except urllib.error.HTTPError as error:
    print(error.code)
except OSError:
    print(0)  # nothing listens there
"""


def http_code(host, url: str, token: str | None = None) -> int:
    """HTTP status of GET url from inside the machine; 0 when the connection is refused."""
    args = [url] + ([token] if token else [])
    result = host.run("python3 -c %s " + " ".join(["%s"] * len(args)), HTTP_PROBE, *args)
    assert result.rc == 0, result.stderr
    return int(result.stdout.strip())


def test_user_has_fixed_ids_and_owns_home(host):
    user = host.user(USER)
    assert user.uid == 1000 and user.gid == 1000
    assert user.home == HOME and user.shell == "/bin/bash"
    assert host.file(HOME).user == USER and host.file(HOME).group == USER


def test_skeleton_files_are_in_home(host):
    assert host.file(f"{HOME}/.bashrc").exists
    assert host.file(f"{HOME}/.bashrc").user == USER


def test_venv_python_runs_as_user(host):
    result = as_user(host, f"{VENV}/bin/python -c 'import sys; print(sys.prefix)'")
    assert result.rc == 0 and result.stdout.strip() == VENV
    assert host.file(VENV).user == USER


@pytest.mark.parametrize("module", ["six", "tomli", "ipykernel"])
def test_listed_packages_import_as_user(host, module):
    assert as_user(host, f"{VENV}/bin/python -c 'import {module}'").rc == 0


def test_jupyterlab_has_a_venv_of_its_own_and_the_project_venv_is_the_default_kernel(host):
    assert as_user(host, f"{JUPYTER_VENV}/bin/python -c 'import jupyterlab'").rc == 0
    assert as_user(host, f"{VENV}/bin/python -c 'import jupyterlab'").rc != 0, "not among the user's packages"
    kernel = json.loads(host.file(f"{HOME}/.local/share/jupyter/kernels/python3/kernel.json").content_string)
    assert kernel["argv"][0] == f"{VENV}/bin/python" and kernel["display_name"] == "Python (project)"


def test_pinned_version_installed(host):
    result = as_user(host, f"{VENV}/bin/python -c 'import tomli; print(tomli.__version__)'")
    assert result.stdout.strip() == "2.0.1"


def test_venv_pip_conf_trusts_the_ca_bundle(host):
    assert "cert = /etc/devbox/ca-bundle.pem" in host.file(f"{VENV}/pip.conf").content_string


def jupyter_process_owners(host) -> list[str]:
    """Owners of the running Jupyter servers, read from /proc (the image has no ps)."""
    script = ("import glob, os, pwd\n"
              "for d in glob.glob('/proc/[0-9]*'):\n"
              "    try:\n        argv = open(d + '/cmdline', 'rb').read().split(b'\\0')\n"
              "    except OSError:\n        continue\n"
              "    if argv[0].startswith(b'%s/bin/python') and any(a.endswith(b'/jupyter-lab') for a in argv):\n"
              "        print(pwd.getpwuid(os.stat(d).st_uid).pw_name)\n" % JUPYTER_VENV)
    return host.check_output("python3 -c %s", script).split()


def test_jupyter_runs_as_the_user_not_root(host):
    assert jupyter_process_owners(host) == [USER]


def test_token_file_is_private(host):
    token = host.file(f"{HOME}/.jupyter/devbox_token")
    assert token.user == USER and token.mode == 0o600
    assert len(token.content_string.strip()) >= 32


def test_api_answers(host):
    assert http_code(host, jupyter_url(host) + "api") == 200


def test_authenticated_call_needs_the_token(host):
    url = jupyter_url(host) + "api/status"
    token = host.file(f"{HOME}/.jupyter/devbox_token").content_string.strip()
    assert http_code(host, url, token) == 200
    assert http_code(host, url) == 403
    assert http_code(host, url, "wrong" + token) == 403


def test_jupyter_listens_on_the_private_address_only(host):
    url = jupyter_url(host)
    address = host.run("getent hosts devbox-molecule").stdout.split()[0]
    assert url == f"http://{address}:8888/"
    assert http_code(host, "http://127.0.0.1:8888/api") == 0
