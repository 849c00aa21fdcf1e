"""The user's uv project on the machine: pyproject.toml and uv.lock synced into the project venv. Standard library only.

Runs as the dev user, inside devbox_venv's run (its lock, its venv health and settings). The two files come as
module arguments (no file transfer) and are written to the project directory; `uv sync --locked` installs exactly
the lock (checking that it matches pyproject.toml, and the hashes) into the project venv, the project itself only
when asked. A record in the venv (devbox-project.json: a hash of what was synced, and the set the lock installs
on this machine) makes a rerun with the same files a no-op without running uv, and tells a later lock's sync what
left the lock (removed) from what the user installed by hand (kept).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tempfile

from ansible_collections.devbox.machine.plugins.module_utils.devbox_torch import build_problem
from ansible_collections.devbox.machine.plugins.module_utils.devbox_venv import (
    PIN, SPEC_NAME, VenvError, canonical, credentials_in, installer_env, load_json, mask_credentials,
    marker_environment, marker_holds, write_if_changed)

PYPROJECT, UV_LOCK = "pyproject.toml", "uv.lock"
PROJECT_RECORD = "devbox-project.json"
# uv's dry run and sync list each change as ` + name==version` / ` - name==version`.
CHANGE = re.compile(r"^\s*([+-])\s+([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")
INDEX_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def project_key(params: dict) -> str:
    """What a sync depends on, hashed: the two files, the selection, and what goes on top."""
    project = params["project"]
    parts = {key: project.get(key) for key in ("pyproject", "lock", "groups", "extras", "install")}
    parts["on_top"] = sorted(params["requirements"])
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def selection(project: dict) -> list[str]:
    """The groups and extras asked for (none: uv's default groups), and the project itself unless asked."""
    arguments = ["--no-default-groups"] if project.get("groups") else []
    for group in project.get("groups") or []:
        arguments += ["--group", group]
    for extra in project.get("extras") or []:
        arguments += ["--extra", extra]
    return arguments


def index_variable(name: str, field: str) -> str:
    """uv's variable for a named index's credential: UV_INDEX_<NAME>_USERNAME / _PASSWORD."""
    return f"UV_INDEX_{re.sub(r'[^A-Za-z0-9]', '_', name).upper()}_{field.upper()}"


def project_env(venv: str, settings: dict, credentials: dict) -> dict:
    """uv's environment for the project: the project venv, no interpreter downloads, the CA bundle, and the named
    indexes' credentials (in the environment, never on a command line). The indexes are the project's own
    (pyproject.toml, the lock), not the playbook's."""
    env = installer_env(settings)
    for key in ("UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX"):
        env.pop(key, None)
    env.update(UV_PROJECT_ENVIRONMENT=venv, UV_PYTHON_DOWNLOADS="never", UV_NO_PROGRESS="1")
    for name, credential in (credentials or {}).items():
        for field in ("username", "password"):
            if credential.get(field):
                env[index_variable(name, field)] = credential[field]
    return env


def credentials_problem(credentials) -> str | None:
    """Why python_env_index_credentials cannot be used; None when it can."""
    if not isinstance(credentials, dict):
        return "python_env_index_credentials must map an index's name (as pyproject.toml names it) to {username, password}"
    for name, credential in credentials.items():
        if not (isinstance(name, str) and INDEX_NAME.match(name)):
            return f"python_env_index_credentials: {name!r} is not an index name (letters, digits, '_', '-')"
        if not isinstance(credential, dict) or set(credential) - {"username", "password"} or not all(
                isinstance(value, str) for value in credential.values()):
            return f"python_env_index_credentials[{name!r}] must be {{username: ..., password: ...}} (text)"
    return None


def uv(venv: str) -> str:
    return os.path.join(venv, "bin", "uv")


def run_uv(command: list[str], env: dict, cwd: str, label: str) -> str:
    """Run uv; its output, or VenvError saying what to do (a lock that needs `uv lock`), credentials masked."""
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, stdin=subprocess.DEVNULL)
    output = result.stdout + result.stderr
    if result.returncode == 0:
        return output
    reason = mask_credentials(result.stderr.strip()[-3000:] or result.stdout.strip()[-3000:])
    if "needs to be updated" in reason:
        raise VenvError(f"{label}: uv.lock does not match pyproject.toml. Run `uv lock` there, commit both files, "
                        f"and run again; nothing was changed.\n{reason}")
    raise VenvError(f"{label}: {' '.join(command[1:3])} failed:\n{reason}")


def locked_set(venv: str, directory: str, project: dict, env: dict, label: str) -> dict[str, str]:
    """{name: version} the lock installs on this machine (its markers evaluated here), read from the lock by
    `uv export --frozen`: no resolution, no network."""
    text = run_uv([uv(venv), "export", "--frozen", "--no-hashes", "--no-annotate", "--no-header", "--no-emit-project",
                   "--format", "requirements-txt", *selection(project)], env, directory, label)
    environment, found = marker_environment(venv), {}
    for line in text.splitlines():
        requirement, _, marker = line.partition(";")
        pinned = PIN.match(requirement.strip())
        if pinned and (not marker.strip() or marker_holds(marker, environment, set())):
            found[canonical(pinned.group(1))] = pinned.group(2)
    return found


def constraints_text(locked: dict[str, str]) -> str:
    return "".join(f"{name}=={version}\n" for name, version in sorted(locked.items()))


def on_top(params: dict, locked: dict[str, str]) -> list[str]:
    """The playbook's packages for the project venv (the kernel, a service's) that the lock does not hold."""
    return [spec for spec in params["requirements"]
            if (match := SPEC_NAME.match(spec)) and canonical(match.group(1)) not in locked]


def lock_installed(record: dict, installed: dict[str, str]) -> bool:
    packages = record.get("packages")
    return isinstance(packages, dict) and all(installed.get(name) == version for name, version in packages.items())


def up_to_date(venv: str, params: dict, installed: dict[str, str]) -> bool:
    """The converged rerun's whole test: the record's hash is this run's, and what the lock installed is still
    there (read from the venv's metadata, as for requirements.lock). No uv runs."""
    record = load_json(os.path.join(venv, PROJECT_RECORD))
    names = [canonical(match.group(1)) for spec in params["requirements"] if (match := SPEC_NAME.match(spec))]
    return (record.get("key") == project_key(params) and lock_installed(record, installed)
            and all(name in installed for name in names))


def recorded_packages(venv: str) -> dict[str, str]:
    packages = load_json(os.path.join(venv, PROJECT_RECORD)).get("packages")
    return {name: version for name, version in packages.items() if isinstance(version, str)} \
        if isinstance(packages, dict) else {}


def write_project(project_dir: str, project: dict, dry_run: bool = False) -> bool:
    """pyproject.toml and uv.lock in the project directory (0600 when one holds a URL's password); True when either
    changed."""
    changed = [write_if_changed(os.path.join(project_dir, name), project[key],
                                0o600 if credentials_in(project[key]) else 0o644, dry_run)
               for name, key in ((PYPROJECT, "pyproject"), (UV_LOCK, "lock"))]
    return any(changed)


def sync_command(venv: str, project: dict, dry_run: bool = False) -> list[str]:
    # --inexact: what the user installed by hand stays; what left the lock is removed by name (sync below).
    command = [uv(venv), "sync", "--locked", "--inexact", "--python", os.path.join(venv, "bin", "python"),
               *selection(project)]
    if not project.get("install"):
        command.append("--no-install-project")
    return command + (["--dry-run"] if dry_run else [])


def kernel_fix(extra: list[str], error: VenvError) -> VenvError:
    names = " ".join(SPEC_NAME.match(spec).group(1) for spec in extra)
    return VenvError(f"the lock leaves no version of {', '.join(extra)} that fits its pins: add it to the project "
                     f"(`uv add --dev {names}`, which updates uv.lock) and run again; nothing was changed.\n{error}")


def sync(venv: str, params: dict, settings: dict, label: str) -> dict:
    """Install exactly the lock (and what goes on top), remove what left it; {added_on_top, gone}. Runs uv."""
    project, directory = params["project"], params["project_dir"]
    env = project_env(venv, settings, params.get("index_credentials"))
    locked = locked_set(venv, directory, project, env, label)
    extra = on_top(params, locked)
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as constraints:
        constraints.write(constraints_text(locked))
        constraints.flush()
        top = [uv(venv), "pip", "install", "--python", os.path.join(venv, "bin", "python"), "-c", constraints.name,
               *extra]
        if extra:  # before anything changes: would the lock's pins leave them a version?
            try:
                run_uv(top + ["--dry-run"], installer_env(settings), directory, label)
            except VenvError as error:
                raise kernel_fix(extra, error) from error
        run_uv(sync_command(venv, project), env, directory, label)
        gone = sorted(name for name in recorded_packages(venv) if name not in locked)
        if gone:
            run_uv([uv(venv), "pip", "uninstall", "--python", os.path.join(venv, "bin", "python"), *gone],
                   installer_env(settings), directory, label)
        if extra:
            run_uv(top, installer_env(settings), directory, label)
    record = {"key": project_key(params), "packages": locked}
    write_if_changed(os.path.join(venv, PROJECT_RECORD), json.dumps(record, indent=2, sort_keys=True) + "\n")
    return {"added_on_top": extra, "locked": sorted(locked), "warnings": torch_warnings(locked, params)}


def torch_warnings(locked: dict[str, str], params: dict) -> list[str]:
    """The lock decides torch's build; a build this machine's GPU cannot use is said (gpu_cuda_version: the driver's)."""
    problem = build_problem(locked["torch"], params.get("gpu_cuda_version")) if "torch" in locked else None
    return [f"{params.get('project_name') or 'the uv project'}: {problem}"] if problem else []


def planned(venv: str, params: dict, settings: dict, label: str, installed: dict[str, str]) -> dict:
    """What sync would change, changing nothing: uv's own dry run on the new files (in a folder of their own),
    and what left the lock; {installed, removed, upgraded, diff}."""
    project = params["project"]
    env = project_env(venv, settings, params.get("index_credentials"))
    with tempfile.TemporaryDirectory() as directory:
        write_project(directory, project)
        locked = locked_set(venv, directory, project, env, label)
        output = run_uv(sync_command(venv, project, dry_run=True), env, directory, label)
    added, taken = {}, {}
    for line in output.splitlines():
        change = CHANGE.match(line)
        if change:
            (added if change.group(1) == "+" else taken)[canonical(change.group(2))] = change.group(3)
    for name in recorded_packages(venv):
        if name not in locked and name in installed:
            taken[name] = installed[name]
    for spec in on_top(params, locked):
        name = canonical(SPEC_NAME.match(spec).group(1))
        if name not in installed:
            added[name] = "(on top of the lock)"
    changes = {
        "installed": sorted(f"{name}=={version}" for name, version in added.items() if name not in taken),
        "removed": sorted(f"{name}=={version}" for name, version in taken.items() if name not in added),
        "upgraded": sorted(f"{name}: {taken[name]} -> {added[name]}" for name in added if name in taken),
    }
    before = "".join(f"{name}=={version}\n" for name, version in sorted(taken.items()))
    after = "".join(f"{name}=={version}\n" for name, version in sorted(added.items()))
    changes["diff"] = [{"before_header": f"{venv} (what changes)", "after_header": f"{label}",
                        "before": before, "after": after}] if before or after else []
    changes["warnings"] = torch_warnings(locked, params)
    return changes


def converge_project(venv: str, params: dict, settings: dict, installed: dict[str, str]) -> dict:
    """devbox_venv's install step for a uv project: the files in the project directory, then a sync unless the
    record says this very project is installed; {changed, synced, added_on_top, locked}."""
    label = params.get("project_name") or "the uv project"
    changed = write_project(params["project_dir"], params["project"])
    if up_to_date(venv, params, installed):
        return {"changed": changed, "synced": False, "added_on_top": [], "locked": sorted(recorded_packages(venv)),
                "warnings": []}
    return dict(sync(venv, params, settings, label), changed=True, synced=True)


def plan_project(venv: str, params: dict, settings: dict, installed: dict[str, str]) -> dict:
    """devbox_venv's dry run for a uv project: {changed, installed, removed, upgraded, diff, locked}."""
    label = params.get("project_name") or "the uv project"
    changed = write_project(params["project_dir"], params["project"], dry_run=True)
    if up_to_date(venv, params, installed):
        return {"changed": changed, "installed": [], "removed": [], "upgraded": [], "diff": [],
                "locked": sorted(recorded_packages(venv)), "warnings": []}
    changes = planned(venv, params, settings, label, installed)
    return dict(changes, changed=True, locked=[])


def source_problems(source: str, uv_binary: str | None) -> list[str]:
    """On the controller, before any change: python_env_project_source is a folder with pyproject.toml and a
    uv.lock that matches it (checked with `uv lock --check --offline` when uv is here; the machine's
    `uv sync --locked` checks again)."""
    where = f"python_env_project_source={source}"
    if not os.path.isdir(source):
        return [f"{where}: no such folder on the controller (the folder of your pyproject.toml and uv.lock)"]
    if not os.path.isfile(os.path.join(source, PYPROJECT)):
        return [f"{where}: no pyproject.toml there"]
    if not os.path.isfile(os.path.join(source, UV_LOCK)):
        return [f"{where}: no uv.lock there; run `uv lock` in it (and commit uv.lock), then run again"]
    if uv_binary is None:
        return []
    try:
        result = subprocess.run([uv_binary, "lock", "--check", "--offline", "--directory", source],
                                capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120,
                                env=dict(os.environ, UV_PYTHON_DOWNLOADS="never", UV_NO_PROGRESS="1"))
    except (OSError, subprocess.TimeoutExpired):
        return []  # the machine's own check decides
    if result.returncode != 0 and "needs to be updated" in result.stderr:
        return [f"{where}: uv.lock does not match pyproject.toml; run `uv lock` in it (and commit uv.lock), then "
                "run again"]
    return []
