"""The project venv on the volume: inspect, create, heal, configure, install. Standard library only.

Runs as the non-root user on the target. The broken-interpreter case is handled by reading the
venv's own dist-info metadata, which needs no working Python inside the venv.
"""
from __future__ import annotations

import configparser
import fcntl
import glob
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time

COMPLETE_MARKER = ".devbox-complete"
SETTINGS_FILE = "devbox-installer.json"


class VenvError(Exception):
    """Something the user must fix; the message says what."""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_distributions(venv: str) -> dict[str, str]:
    """{canonical name: version} from the venv's site-packages metadata."""
    found = {}
    for metadata in glob.glob(os.path.join(venv, "lib", "python3*", "site-packages", "*.dist-info", "METADATA")):
        name = version = None
        with open(metadata, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if line.startswith("Name:"):
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("Version:"):
                    version = line.split(":", 1)[1].strip()
                elif not line.strip():
                    break
        if name and version:
            found[canonical(name)] = version
    return found


def python_version(python: str) -> str | None:
    """'3.11' for a runnable interpreter, None for a missing or broken one."""
    found = python if os.path.isabs(python) else shutil.which(python)
    if found is None or not os.access(found, os.X_OK):
        return None
    if os.path.realpath(found) == os.path.realpath(sys.executable):
        return "%d.%d" % sys.version_info[:2]  # this very interpreter: no need to start another
    try:
        result = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                capture_output=True, text=True, timeout=60)
    except OSError:
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def built_for(venv: str) -> str | None:
    """'3.11' from pyvenv.cfg's version line."""
    try:
        with open(os.path.join(venv, "pyvenv.cfg")) as config:
            for line in config:
                key, _, value = line.partition("=")
                if key.strip() in ("version", "version_info"):
                    return ".".join(value.strip().split(".")[:2])
    except OSError:
        pass
    return None


def venv_health(venv: str, base_python: str) -> tuple[str, str]:
    """('ok'|'absent'|'incomplete'|'broken', reason)."""
    if not os.path.isdir(venv):
        return "absent", f"{venv} does not exist"
    if not os.path.exists(os.path.join(venv, COMPLETE_MARKER)):
        return "incomplete", f"{venv} was left unfinished by an interrupted run"
    if python_version(os.path.join(venv, "bin", "python")) is None:
        return "broken", f"{venv}/bin/python is missing or does not run"
    # The version the venv was built for (its site-packages path): bin/python is only a
    # symlink, which follows a base interpreter that changed version underneath it.
    inside = built_for(venv)
    base = python_version(base_python)
    if base is not None and inside != base:
        return "broken", f"{venv} uses Python {inside} but {base_python} is Python {base}"
    return "ok", ""


def create_venv(venv: str, base_python: str) -> None:
    result = subprocess.run([base_python, "-m", "venv", "--clear", venv], capture_output=True, text=True)
    if result.returncode != 0:
        raise VenvError(f"{base_python} -m venv {venv} failed: {result.stderr.strip()}")


def mark_complete(venv: str) -> None:
    with open(os.path.join(venv, COMPLETE_MARKER), "w") as marker:
        marker.write("created by devbox\n")


def pip_conf_text(settings: dict) -> str:
    parser = configparser.ConfigParser()
    parser["global"] = {}
    if settings.get("index_url"):
        parser["global"]["index-url"] = settings["index_url"]
    if settings.get("extra_index_urls"):
        parser["global"]["extra-index-url"] = " ".join(settings["extra_index_urls"])
    if settings.get("ca_bundle"):
        parser["global"]["cert"] = settings["ca_bundle"]
    text = io.StringIO()
    text.write("# Written by devbox (python_env role): the user's own `pip install` uses it too.\n")
    parser.write(text)
    return text.getvalue()


def write_if_changed(path: str, text: str, mode: int = 0o644) -> bool:
    """Atomically write text with mode unless the file already holds it; True when written."""
    try:
        with open(path) as current:
            if current.read() == text and os.stat(path).st_mode & 0o777 == mode:
                return False
    except OSError:
        pass
    temporary = path + ".tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "w") as out:
        out.write(text)
    os.chmod(temporary, mode)
    os.replace(temporary, path)
    return True


def load_json(path: str) -> dict:
    try:
        with open(path) as stored:
            data = json.load(stored)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load_settings(venv: str) -> dict:
    return load_json(os.path.join(venv, SETTINGS_FILE))


def save_settings(venv: str, settings: dict) -> bool:
    """Persist the installer settings: pip.conf for pip, a JSON copy for uv and later runs."""
    changed = write_if_changed(os.path.join(venv, "pip.conf"), pip_conf_text(settings))
    text = json.dumps(settings, indent=2, sort_keys=True) + "\n"
    return write_if_changed(os.path.join(venv, SETTINGS_FILE), text) or changed


def installer_env(settings: dict) -> dict:
    env = dict(os.environ)
    env.pop("PIP_CONFIG_FILE", None)
    if settings.get("ca_bundle"):
        env["SSL_CERT_FILE"] = settings["ca_bundle"]
        env["PIP_CERT"] = settings["ca_bundle"]
    return env


def install_command(venv: str, installer: str, settings: dict, requirements: list[str],
                    requirement_files: list[str]) -> list[str]:
    python = os.path.join(venv, "bin", "python")
    if installer == "uv":
        command = [os.path.join(venv, "bin", "uv"), "pip", "install", "--python", python]
        if settings.get("index_url"):
            command += ["--index-url", settings["index_url"]]
        for url in settings.get("extra_index_urls") or []:
            command += ["--extra-index-url", url]
    else:  # pip reads index and cert from the venv's pip.conf
        command = [python, "-m", "pip", "install", "--disable-pip-version-check"]
    for path in requirement_files:
        command += ["-r", path]
    return command + list(requirements)


def run_installer(command: list[str], env: dict) -> None:
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        reason = (result.stderr.strip() or result.stdout.strip())[-3000:]
        raise VenvError(f"package installation failed ({' '.join(command[:3])} ...):\n{reason}")


def ensure_uv(venv: str, settings: dict) -> bool:
    """uv inside the venv, installed once with the venv's pip."""
    if os.path.exists(os.path.join(venv, "bin", "uv")):
        return False
    run_installer([os.path.join(venv, "bin", "python"), "-m", "pip", "install",
                   "--disable-pip-version-check", "uv"], installer_env(settings))
    return True


def check_free_space(path: str, min_free_mb: int) -> None:
    free_mb = shutil.disk_usage(path).free // (1024 * 1024)
    if free_mb < min_free_mb:
        raise VenvError(
            f"only {free_mb} MB free on the volume at {path}, below python_env_min_free_mb="
            f"{min_free_mb}: nothing was installed. Free some space, or grow the volume "
            "(on Fly: `fly volumes list`, then `fly volumes extend <volume-id> --size <GB>`).")


class Lock:
    """One run at a time per venv: a second run waits up to `timeout` seconds, then fails."""

    def __init__(self, path: str, timeout: float):
        self.path, self.timeout, self.handle = path, timeout, None

    def __enter__(self):
        self.handle = open(self.path, "a")
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise VenvError(f"another run holds the lock {self.path} (waited {self.timeout:.0f} s); "
                                    "wait for it to finish, then run again") from None
                time.sleep(0.5)

    def __exit__(self, *exc):
        self.handle.close()


def diff(before: dict[str, str], after: dict[str, str]) -> dict[str, list[str]]:
    return {
        "installed": sorted(f"{n}=={v}" for n, v in after.items() if n not in before),
        "removed": sorted(f"{n}=={v}" for n, v in before.items() if n not in after),
        "upgraded": sorted(f"{n}: {before[n]} -> {v}" for n, v in after.items() if n in before and before[n] != v),
    }


def converge(params: dict) -> dict:
    """Bring the venv to the requested state; return what happened (changed, details)."""
    venv, base_python = params["path"], params["base_python"]
    # Distributions still owed to a rebuilt venv, kept outside it so an interrupted rebuild
    # is finished by the next run instead of being forgotten.
    pending_path = venv + ".pending.json"
    result = {"changed": False, "rebuilt": None, "installed": [], "removed": [], "upgraded": []}
    requirement_files = []
    if params.get("project_dir"):
        if not os.path.isdir(params["project_dir"]):
            os.makedirs(params["project_dir"], mode=0o755)
            result["changed"] = True
        if params.get("requirements_file_text") is not None:
            requirement_files.append(os.path.join(params["project_dir"], "requirements.txt"))
            if write_if_changed(requirement_files[0], params["requirements_file_text"]):
                result["changed"] = True
    with Lock(venv + ".lock", params["lock_timeout"]):
        settings = load_settings(venv) if params["settings"] is None else params["settings"]
        pending = load_json(pending_path)
        health, reason = venv_health(venv, base_python)
        if health != "ok":
            check_free_space(os.path.dirname(venv), params["min_free_mb"])
            if health == "broken":
                pending.update(installed_distributions(venv))
                write_if_changed(pending_path, json.dumps(pending, indent=2, sort_keys=True))
                result["rebuilt"] = reason
            create_venv(venv, base_python)
            result["changed"] = True
        if save_settings(venv, settings):
            result["changed"] = True
        before = installed_distributions(venv)
        installer = params["installer"] or settings.get("installer") or "uv"
        if installer == "uv" and ensure_uv(venv, settings):
            result["changed"] = True
        if health != "ok":
            mark_complete(venv)
        wanted = [f"{name}=={version}" for name, version in sorted(pending.items())
                  if name not in ("pip", "setuptools", "wheel", "uv")]
        if wanted or params["requirements"] or requirement_files:
            check_free_space(os.path.dirname(venv), params["min_free_mb"])
            run_installer(install_command(venv, installer, settings, wanted + params["requirements"],
                                          requirement_files), installer_env(settings))
        if pending:
            os.remove(pending_path)
        after = installed_distributions(venv)
        result.update(diff(before, after))
        if any(result[key] for key in ("installed", "removed", "upgraded")):
            result["changed"] = True
        result["python_version"] = built_for(venv)
        result["distributions"] = len(after)
    return result
