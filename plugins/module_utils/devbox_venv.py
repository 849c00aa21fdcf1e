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
import tempfile
import time

COMPLETE_MARKER = ".devbox-complete"
SETTINGS_FILE = "devbox-installer.json"


class VenvError(Exception):
    """Something the user must fix; the message says what."""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_distributions(venv: str, portable_only: bool = False) -> dict[str, str]:
    """{canonical name: version} from the venv's site-packages metadata.

    portable_only leaves out editable and local installs (those with a direct_url.json), which
    cannot be fetched again by name and version.
    """
    found = {}
    for metadata in glob.glob(os.path.join(venv, "lib", "python3*", "site-packages", "*.dist-info", "METADATA")):
        if portable_only and os.path.exists(os.path.join(os.path.dirname(metadata), "direct_url.json")):
            continue
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


# `name` or `name==version`: the forms whose satisfaction can be read off the metadata.
SIMPLE_SPEC = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:==\s*([A-Za-z0-9.!+_-]+))?\s*$")
SPEC_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
TOOLING = {"pip", "setuptools", "wheel", "uv"}


def requirement_lines(text: str) -> list[str]:
    """The requirement lines of a requirements file (no comments, blanks or options)."""
    lines = (line.split(" #", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith(("#", "-"))]


def surely_satisfied(specs: list[str], installed: dict[str, str]) -> bool:
    """True only when every spec is a plain name or name==version that is installed as asked."""
    for spec in specs:
        match = SIMPLE_SPEC.match(spec)
        if match is None:
            return False
        version = installed.get(canonical(match.group(1)))
        if version is None or (match.group(2) and match.group(2) != version):
            return False
    return True


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


def planned_write(path: str, text: str, mode: int = 0o644) -> dict | None:
    """What writing text with mode to path would change, as an Ansible diff; None for nothing."""
    try:
        with open(path) as current:
            before = current.read()
        if before == text and os.stat(path).st_mode & 0o777 == mode:
            return None
    except OSError:
        before = ""
    return {"before_header": path, "after_header": path, "before": before, "after": text}


def write_if_changed(path: str, text: str, mode: int = 0o644, dry_run: bool = False, diffs: list | None = None) -> bool:
    """Atomically write text with mode unless the file already holds it; True when (it would be) written.

    The change is appended to diffs when given (settings files: what `--diff` shows)."""
    change = planned_write(path, text, mode)
    if change is None:
        return False
    if diffs is not None:
        diffs.append(change)
    if dry_run:
        return True
    descriptor, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".devbox-")
    with os.fdopen(descriptor, "w") as out:
        out.write(text)
        os.fchmod(out.fileno(), mode)
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


def save_settings(venv: str, settings: dict, dry_run: bool = False, diffs: list | None = None) -> bool:
    """Persist the installer settings: pip.conf for pip, a JSON copy for uv and later runs."""
    # 0600: index URLs may carry credentials.
    changed = write_if_changed(os.path.join(venv, "pip.conf"), pip_conf_text(settings), 0o600, dry_run, diffs)
    text = json.dumps(settings, indent=2, sort_keys=True) + "\n"
    return write_if_changed(os.path.join(venv, SETTINGS_FILE), text, 0o600, dry_run, diffs) or changed


def installer_env(settings: dict) -> dict:
    """The installer's environment. Index URLs go here, not on the command line: they may carry
    credentials, and every user can read any process's command line (/proc/*/cmdline)."""
    env = dict(os.environ)
    env.pop("PIP_CONFIG_FILE", None)
    if settings.get("ca_bundle"):
        env["SSL_CERT_FILE"] = settings["ca_bundle"]
        env["PIP_CERT"] = settings["ca_bundle"]
    if settings.get("index_url"):
        env["UV_INDEX_URL"] = settings["index_url"]
    if settings.get("extra_index_urls"):
        env["UV_EXTRA_INDEX_URL"] = " ".join(settings["extra_index_urls"])
    return env


CREDENTIALS = re.compile(r"(://[^/:@\s]+:)[^/@\s]+@")


def mask_credentials(text: str) -> str:
    """https://user:secret@host -> https://user:********@host."""
    return CREDENTIALS.sub(r"\1********@", text)


def install_command(venv: str, installer: str, requirements: list[str], requirement_files: list[str],
                    dry_run: bool = False) -> list[str]:
    """uv reads the indexes from installer_env, pip from the venv's pip.conf."""
    python = os.path.join(venv, "bin", "python")
    if installer == "uv":
        command = [os.path.join(venv, "bin", "uv"), "pip", "install", "--python", python]
    else:
        command = [python, "-m", "pip", "install", "--disable-pip-version-check"]
    if dry_run:
        command.append("--dry-run")
    for path in requirement_files:
        command += ["-r", path]
    return command + list(requirements)


def run_installer(command: list[str], env: dict) -> str:
    """Run the installer; its output, or VenvError with the reason (credentials masked)."""
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        reason = mask_credentials((result.stderr.strip() or result.stdout.strip())[-3000:])
        raise VenvError(f"package installation failed ({' '.join(command[:3])} ...):\n{reason}")
    return result.stdout + result.stderr


def would_install(venv: str, installer: str, settings: dict, requirements: list[str],
                  requirement_files: list[str]) -> bool:
    """Ask the installer (--dry-run: resolves, installs nothing) whether the requirements need a change."""
    output = run_installer(install_command(venv, installer, requirements, requirement_files, dry_run=True),
                           installer_env(settings))
    return "Would install" in output or "Would uninstall" in output


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


def write_project_files(params: dict, dry_run: bool = False) -> tuple[list[str], bool]:
    """The project directory and its requirements.txt; (requirement files, changed)."""
    project, text = params.get("project_dir"), params.get("requirements_file_text")
    if not project:
        return [], False
    changed = not os.path.isdir(project)
    if changed and not dry_run:
        os.makedirs(project, mode=0o755)
    if text is None:
        return [], changed
    path = os.path.join(project, "requirements.txt")
    # 0600: an index line in it may carry credentials.
    return [path], write_if_changed(path, text, 0o600, dry_run) or changed


def reinstall_owed(venv: str, installer: str, settings: dict, owed: dict[str, str]) -> list[str]:
    """Reinstall a rebuilt venv's distributions at their versions; where a version cannot be had
    (no wheel for the new Python), take the newest that can. Returns what moved."""
    pinned = [f"{name}=={version}" for name, version in sorted(owed.items())]
    try:
        run_installer(install_command(venv, installer, pinned, []), installer_env(settings))
        return []
    except VenvError:
        run_installer(install_command(venv, installer, sorted(owed), []), installer_env(settings))
    now = installed_distributions(venv)
    return sorted(f"{name}: {version} -> {now.get(name)}" for name, version in owed.items() if now.get(name) != version)


def empty_result() -> dict:
    return {"changed": False, "rebuilt": None, "reinstalled": [], "moved": [], "installed": [], "removed": [],
            "upgraded": [], "diff": [], "python_version": None, "distributions": 0}


def plan(params: dict) -> dict:
    """What converge would do, changing nothing (check mode): the settings files' diffs, and
    the installer's own dry run for requirements that the metadata cannot settle."""
    venv = params["path"]
    result = empty_result()
    _, result["changed"] = write_project_files(params, dry_run=True)
    settings = load_settings(venv) if params["settings"] is None else params["settings"]
    installer = params["installer"] or settings.get("installer") or "uv"
    health, reason = venv_health(venv, params["base_python"])
    result["python_version"], result["distributions"] = built_for(venv), len(installed_distributions(venv))
    if health != "ok":
        owed = set(installed_distributions(venv, portable_only=True)) - TOOLING
        result.update(changed=True, rebuilt=reason if owed else None, reinstalled=sorted(owed))
        return result
    if save_settings(venv, settings, dry_run=True, diffs=result["diff"]):
        result["changed"] = True
    if (installer == "uv" and not os.path.exists(os.path.join(venv, "bin", "uv"))) or os.path.exists(venv + ".pending.json"):
        result["changed"] = True
        return result
    text = params.get("requirements_file_text") or ""
    requested = list(params["requirements"]) + requirement_lines(text)
    installed = installed_distributions(venv)
    if any(not surely_satisfied([spec], installed) and SIMPLE_SPEC.match(spec) for spec in requested):
        result["changed"] = True  # a plain name missing, or another version than pinned: no need to ask
    elif requested and not surely_satisfied(requested, installed):
        with tempfile.NamedTemporaryFile("w", suffix=".txt") as requirements_file:
            requirements_file.write(text)
            requirements_file.flush()
            files = [requirements_file.name] if text else []
            if would_install(venv, installer, settings, params["requirements"], files):
                result["changed"] = True
    return result


def converge(params: dict) -> dict:
    """Bring the venv to the requested state; return what happened (changed, details)."""
    venv, base_python = params["path"], params["base_python"]
    # Distributions owed to a rebuilt venv, kept outside it so an interrupted rebuild is
    # finished by the next run instead of being forgotten.
    pending_path = venv + ".pending.json"
    result = empty_result()
    with Lock(venv + ".lock", params["lock_timeout"]):
        requirement_files, result["changed"] = write_project_files(params)
        settings = load_settings(venv) if params["settings"] is None else params["settings"]
        installer = params["installer"] or settings.get("installer") or "uv"
        pending = load_json(pending_path)
        health, reason = venv_health(venv, base_python)
        before = installed_distributions(venv)
        if health != "ok":
            check_free_space(os.path.dirname(venv), params["min_free_mb"])
            # An unfinished or foreign venv (the seed's has no marker) may hold packages too.
            owed = {name: version for name, version in installed_distributions(venv, portable_only=True).items()
                    if name not in TOOLING}
            if owed:
                pending.update(owed)
                write_if_changed(pending_path, json.dumps(pending, indent=2, sort_keys=True))
                result["rebuilt"] = reason
            create_venv(venv, base_python)
            result["changed"] = True
        if save_settings(venv, settings, diffs=result["diff"]):
            result["changed"] = True
        if installer == "uv" and ensure_uv(venv, settings):
            result["changed"] = True
        if health != "ok":
            mark_complete(venv)
        requested = list(params["requirements"])
        for path in requirement_files:
            with open(path) as requirements_file:
                requested += requirement_lines(requirements_file.read())
        # What the user asks for by name wins over the version the old venv had.
        asked = {canonical(m.group(1)) for m in map(SPEC_NAME.match, requested) if m}
        owed = {name: version for name, version in pending.items() if name not in asked}
        if owed or not surely_satisfied(requested, installed_distributions(venv)):
            check_free_space(os.path.dirname(venv), params["min_free_mb"])
        try:
            if owed:
                result["moved"] = reinstall_owed(venv, installer, settings, owed)
                result["reinstalled"] = sorted(f"{name}=={version}" for name, version in owed.items())
            if params["requirements"] or requirement_files:
                run_installer(install_command(venv, installer, params["requirements"], requirement_files),
                              installer_env(settings))
        except VenvError as error:
            if pending:
                raise VenvError(f"{error}\n(still owed to the rebuilt venv, listed in {pending_path}: "
                                f"{', '.join(sorted(pending))})") from error
            raise
        if pending:
            os.remove(pending_path)
        after = installed_distributions(venv)
        result.update(diff(before, after))
        if any(result[key] for key in ("installed", "removed", "upgraded")):
            result["changed"] = True
        result["python_version"] = built_for(venv)
        result["distributions"] = len(after)
    return result
