"""The project venv on the volume: inspect, create, heal, configure, install. Standard library only.

Runs as the non-root user on the target. The broken-interpreter case is handled by reading the
venv's own dist-info metadata, which needs no working Python inside the venv.
"""
from __future__ import annotations

import configparser
import fcntl
import glob
import importlib.metadata
import io
import json
import os
import pathlib
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

from ansible_collections.devbox.machine.plugins.module_utils.devbox_files import (
    COMPLETE_MARKER, LOCK_FILE, REQUESTED_FILE, REQUESTED_RECORD, SETTINGS_FILE, built_for, read_text)
from ansible_collections.devbox.machine.plugins.module_utils.devbox_uv_bootstrap import BootstrapError, download_uv



class VenvError(Exception):
    """Something the user must fix; the message says what."""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_distributions(venv: str) -> dict[str, dict]:
    """{canonical name: {name, version, requires, direct_url}} from the venv's site-packages metadata.

    importlib.metadata reads the files (METADATA, with a multi-line License as the email parser
    reads any folded header, and direct_url.json) from these folders only: no Python inside the
    venv runs, so a venv whose interpreter is gone still says what it held.
    """
    sites = sorted(glob.glob(os.path.join(venv, "lib", "python3*", "site-packages")))
    # Parsing every METADATA takes a few hundred ms for JupyterLab's ~200 distributions: a run
    # reads them again only when a metadata folder came, went or was replaced since.
    listing = _metadata_folders(sites)
    if _last_read.get(venv, (None,))[0] == listing:
        return _last_read[venv][1]
    found = {}
    for site, folder, _, _ in listing:
        path = os.path.join(site, folder)
        fields = _dist_info_fields(path) if folder.endswith(".dist-info") else None
        if fields is None:  # an egg-info, or a METADATA this reader does not take: importlib.metadata's own way
            dist = importlib.metadata.PathDistribution(pathlib.Path(path))
            fields = {"Name": dist.metadata.get("Name"), "Version": dist.metadata.get("Version"),
                      "Requires-Dist": dist.requires or []}
        name, version = fields["Name"], fields["Version"]
        if name and version and canonical(name) not in found:  # the first on the path, as an import would
            found[canonical(name)] = {"name": canonical(name), "version": version,
                                      "requires": fields["Requires-Dist"],
                                      "direct_url": json_object(read_text(os.path.join(path, "direct_url.json")))
                                      or None}
    _last_read[venv] = (listing, found)
    return found


_last_read: dict[str, tuple] = {}


def _dist_info_fields(folder: str) -> dict | None:
    """Name, Version and every Requires-Dist of a .dist-info's METADATA, read from its headers (the lines before
    the first empty one; a line that starts with a space or tab continues the one before) without the email
    parser, which reads the whole file and took most of a run's time; None when METADATA is missing or not UTF-8."""
    fields = {"Name": None, "Version": None, "Requires-Dist": []}
    try:
        with open(os.path.join(folder, "METADATA"), encoding="utf-8") as metadata:
            for line in metadata:
                if line[0] in " \t":  # a folded header's next line, even when it holds only spaces
                    continue
                if not line.strip():
                    break
                key, colon, value = line.partition(":")
                if not colon or key not in fields:
                    continue
                if key == "Requires-Dist":
                    fields[key].append(value.strip())
                elif fields[key] is None:
                    fields[key] = value.strip()
    except (OSError, UnicodeDecodeError):
        return None
    return fields


def _metadata_folders(sites: list[str]) -> tuple:
    """Each *.dist-info / *.egg-info folder by name, inode and time: installers write a new one."""
    folders = []
    for site in sites:
        with os.scandir(site) as entries:
            for entry in entries:
                if entry.name.endswith((".dist-info", ".egg-info")):
                    info = entry.stat(follow_symlinks=False)
                    folders.append((site, entry.name, info.st_ino, info.st_mtime_ns))
    return tuple(sorted(folders))


def installed_distributions(venv: str, portable_only: bool = False) -> dict[str, str]:
    """{canonical name: version} from the venv's site-packages metadata.

    portable_only leaves out editable and local installs (those with a direct_url.json), which
    cannot be fetched again by name and version.
    """
    return {name: dist["version"] for name, dist in read_distributions(venv).items()
            if not (portable_only and dist["direct_url"])}


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


def create_venv(venv: str, base_python: str, installer: str, settings: dict, uv: str | None = None) -> None:
    """An empty venv with pip, made by uv for the uv installer: the binary `uv` names (the project venv's), else
    one fetched from the index and installed into the venv too (devbox_uv_bootstrap), seconds faster than
    ensurepip and pip. Where that cannot be done, and for pip: python -m venv, and ensure_uv installs uv."""
    if installer == "uv" and uv and os.access(uv, os.X_OK):
        _make_venv(_uv_venv_command(uv, base_python, venv), venv, settings)
        return
    if installer == "uv":
        folder = tempfile.mkdtemp(prefix=".uv-bootstrap-", dir=os.path.dirname(venv))
        try:
            version, fetched_uv = download_uv(settings, folder)
            # pip alone beside uv, as python -m venv gives it (uv venv --seed would add wheel and packaging, which
            # a uv project's lock may pin otherwise).
            _make_venv(_uv_venv_command(fetched_uv, base_python, venv, seed=False), venv, settings)
            python = os.path.join(venv, "bin", "python")
            # uv from the folder as from an index (--find-links): a wheel file named directly would be recorded as
            # installed from that path (direct_url.json), and the lock would say `uv @ file:///...`.
            run_installer([fetched_uv, "pip", "install", "--quiet", "--python", python, "--no-index", "--find-links",
                           folder, f"uv=={version}"], installer_env(settings))
            run_installer([fetched_uv, "pip", "install", "--quiet", "--python", python, "pip"], installer_env(settings))
            return
        except (BootstrapError, VenvError):
            pass  # the slow path below, whose installer knows every index
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    _make_venv([base_python, "-m", "venv", "--clear", venv], venv, settings)


def _uv_venv_command(uv: str, base_python: str, venv: str, seed: bool = True) -> list[str]:
    return [uv, "venv", "--quiet", *(["--seed"] if seed else []), "--python", base_python, "--python-preference",
            "only-system", venv]


def _make_venv(command: list[str], venv: str, settings: dict) -> None:
    shutil.rmtree(venv, ignore_errors=True)  # as --clear: uv venv may refuse a folder that is there
    result = subprocess.run(command, capture_output=True, text=True, env=installer_env(settings))
    if result.returncode != 0:
        raise VenvError(f"{' '.join(command[:2])} ... {venv} failed: {result.stderr.strip()}")


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


def json_object(text: str | None) -> dict:
    """The JSON object in text; {} for none, junk or another JSON type."""
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def load_json(path: str) -> dict:
    try:
        with open(path) as stored:
            return json_object(stored.read())
    except (OSError, ValueError):  # ValueError: not UTF-8
        return {}


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


# The user information of a URL anywhere in a text: `scheme://user[:password]@`.
CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@\s:]*)(?P<colon>:?)(?P<password>[^/@\s]*)@")
MASK = "********"


def _secret(match: re.Match) -> str | None:
    """The secret of one URL's user information: the password, or a user name alone (a token, the form
    Gemfury and Azure use: https://TOKEN@host, https://TOKEN:@host), but an ssh login name (git+ssh://git@)."""
    if match.group("password"):
        return match.group("password")
    if match.group("user") and not match.group("scheme").lower().rstrip(":/").endswith("ssh"):
        return match.group("user")
    return None


def _masked(match: re.Match) -> str:
    if match.group("password"):
        return f"{match.group('scheme')}{match.group('user')}:{MASK}@"
    if _secret(match):
        return f"{match.group('scheme')}{MASK}{match.group('colon')}@"
    return match.group(0)


def mask_credentials(text: str) -> str:
    """Every URL's secret in text masked: https://user:secret@host -> https://user:********@host,
    https://TOKEN@host -> https://********@host, https://TOKEN:@host -> https://********:@host.

    The one masking rule for what is shown or written: the input check, --diff, the lock on the machine and its
    copy on the controller, error messages."""
    return CREDENTIALS.sub(_masked, text)


def credentials_in(text: str) -> list[str]:
    """The secrets mask_credentials hides in text (for Ansible's no_log_values)."""
    return [secret for match in CREDENTIALS.finditer(text or "") if (secret := _secret(match))]


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


def ensure_uv(venv: str, settings: dict, uv: str | None = None) -> bool:
    """uv inside the venv, once: a copy of the binary `uv` names (the project venv's), else installed with the
    venv's pip."""
    target = os.path.join(venv, "bin", "uv")
    if os.path.exists(target):
        return False
    if uv and os.access(uv, os.X_OK):
        shutil.copy2(uv, target)
        return True
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


# The lock: the venv's exact set as a requirements file, read from its metadata (no installer,
# no network), and the same file installed on another machine.

# The names the playbook asked for over time (the roots; their dependencies follow from the metadata), kept in
# REQUESTED_RECORD (the devbox_venv module reads and writes it as root): whatever else is installed came by hand,
# from a notebook or a terminal.
# python_env_sync never removes the installers themselves.
INSTALLERS = {"pip", "uv"}
BY_HAND = "# by hand"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([A-Za-z0-9.!+_-]+)$")
URL_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*@\s*(\S+)$")
SPEC_EXTRAS = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")
EXTRA_MARKER = re.compile(r"""extra\s*==\s*['"]([^'"]+)['"]""")
ANY_PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([A-Za-z0-9.!+_-]*[A-Za-z0-9])")


def roots_of(specs: list[str]) -> dict[str, list[str]]:
    """{canonical name: [extras]} of requirement specifiers."""
    roots: dict[str, list[str]] = {}
    for spec in specs:
        match = SPEC_EXTRAS.match(spec)
        if match:
            extras = {canonical(extra) for extra in (match.group(2) or "").split(",") if extra.strip()}
            name = canonical(match.group(1))
            roots[name] = sorted(set(roots.get(name, [])) | extras)
    return roots


MARKER_COMPARISON = re.compile(r"""(\w+)\s*(===|==|!=|<=|>=|~=|<|>|not\s+in\b|in\b)\s*(['"])([^'"]*)\3""")
ONLY_BOOLEANS = re.compile(r"[\s()]*(?:(?:True|False|and|or)[\s()]*)*")


def marker_environment(venv: str) -> dict[str, str]:
    """The environment markers of the venv's Python, on this machine (where the module runs)."""
    return {"python_version": built_for(venv) or "", "python_full_version": built_for(venv, parts=3) or "",
            "sys_platform": sys.platform, "platform_system": platform.system(), "os_name": os.name,
            "platform_machine": platform.machine(), "implementation_name": sys.implementation.name,
            "platform_python_implementation": platform.python_implementation()}


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def comparison_holds(variable: str, operator: str, value: str, environment: dict, extras: set[str]) -> bool | None:
    """One marker comparison; None when it is not understood."""
    operator = " ".join(operator.split())
    if variable == "extra":
        return {"==": canonical(value) in extras, "!=": canonical(value) not in extras}.get(operator)
    if variable not in environment:
        return None
    actual = environment[variable]
    if variable in ("python_version", "python_full_version") and operator not in ("in", "not in"):
        if value.endswith(".*"):
            prefix = version_tuple(value)
            return {"==": version_tuple(actual)[:len(prefix)] == prefix,
                    "!=": version_tuple(actual)[:len(prefix)] != prefix}.get(operator)
        left, right = version_tuple(actual), version_tuple(value)
        return {"==": left == right, "===": actual == value, "!=": left != right, "<": left < right,
                "<=": left <= right, ">": left > right, ">=": left >= right, "~=": left >= right}[operator]
    return {"==": actual == value, "===": actual == value, "!=": actual != value,
            "in": actual in value, "not in": actual not in value}.get(operator)


def marker_holds(marker: str, environment: dict, extras: set[str]) -> bool:
    """PEP 508 marker of a Requires-Dist line; one that is not understood counts as true (the
    dependency is then simply looked for among what is installed)."""
    key = (marker, frozenset(extras), tuple(sorted(environment.items())))
    if key not in MARKER_CACHE:
        MARKER_CACHE[key] = evaluate_marker(marker, environment, extras)
    return MARKER_CACHE[key]


MARKER_CACHE: dict[tuple, bool] = {}  # the same markers recur all over a dependency tree


def evaluate_marker(marker: str, environment: dict, extras: set[str]) -> bool:
    unknown = False

    def truth(match: re.Match) -> str:
        nonlocal unknown
        holds = comparison_holds(match.group(1), match.group(2), match.group(4), environment, extras)
        unknown = unknown or holds is None
        return f" {bool(holds)} "

    expression = MARKER_COMPARISON.sub(truth, marker)
    if unknown or not ONLY_BOOLEANS.fullmatch(expression):
        return True
    try:
        # Nothing but True, False, and, or and parentheses is left: safe to evaluate.
        return bool(eval(expression, {"__builtins__": {}}))  # noqa: S307
    except (SyntaxError, RecursionError):
        return True


def dependencies(requires: list[str], extras: set[str], environment: dict) -> dict[str, set[str]]:
    """{name: extras} that Requires-Dist lines pull in for a distribution installed with `extras`."""
    found: dict[str, set[str]] = {}
    for line in requires:
        spec, _, marker = line.partition(";")
        if marker.strip() and not marker_holds(marker, environment, extras):
            continue
        for name, its_extras in roots_of([spec]).items():
            found[name] = found.get(name, set()) | set(its_extras)
    return found


def asked_by_playbook(distributions: dict[str, dict], roots: dict[str, list[str]], environment: dict) -> set[str]:
    """The roots and everything their metadata requires, transitively."""
    seen: dict[str, set[str]] = {}
    todo = [(name, set(extras)) for name, extras in roots.items()]
    while todo:
        name, extras = todo.pop()
        if name in seen and extras <= seen[name]:
            continue
        seen[name] = seen.get(name, set()) | extras
        if name in distributions:
            todo += dependencies(distributions[name]["requires"], seen[name], environment).items()
    return set(seen)


def lock_line(dist: dict) -> str:
    """`name==version`, `name @ url` for a URL install, a comment for a local directory."""
    pin = f"{dist['name']}=={dist['version']}"
    source = dist["direct_url"]
    if not source:
        return pin
    url = mask_credentials(source.get("url", ""))
    if "vcs_info" in source:
        vcs = source["vcs_info"]
        return f"{dist['name']} @ {vcs.get('vcs', 'git')}+{url}@{vcs.get('commit_id', '')}"
    if "archive_info" in source:
        return f"{dist['name']} @ {url}"
    return f"# {pin}  # not locked: installed from the local directory {url}"


def index_lines(settings: dict) -> list[str]:
    lines = [f"# index: {mask_credentials(settings['index_url']) if settings.get('index_url') else 'PyPI'}"]
    lines += [f"# extra index: {mask_credentials(url)}" for url in settings.get("extra_index_urls") or []]
    return lines


def lock_text(venv: str, settings: dict, requested: dict[str, list[str]], distributions: dict | None = None) -> str:
    """The lock of the venv as it is now (distributions: its metadata, when already read); the same
    venv always gives the same text."""
    distributions = read_distributions(venv) if distributions is None else distributions
    roots = dict(requested, **{name: [] for name in TOOLING})
    by_playbook = asked_by_playbook(distributions, roots, marker_environment(venv))
    lines = [
        "# requirements.lock: every distribution in the project's venv, exactly (written by devbox's python_env role).",
        "# Another machine gets this set with python_env_lock_file: <this file>; python_env_sync: true also",
        "# removes what it does not list. Lines marked `by hand` were installed from a notebook or a terminal.",
        f"# python: {built_for(venv, parts=3)}",
        *index_lines(settings),
        "# (pip and uv do not record which of these indexes each distribution came from.)",
    ]
    for name in sorted(distributions):
        line = lock_line(distributions[name])
        if not line.isprintable():  # the venv's metadata is the user's: never a hidden line in the lock
            lines.append(f"# not locked: {line!r} holds a control character")
            continue
        lines.append(line if name in by_playbook else f"{line}  {BY_HAND}")
    return "\n".join(lines) + "\n"


def control_problem(text: str, label: str) -> str | None:
    """Why a lock's text cannot be used: its first line holding a control character (a terminal escape such
    as \\x1b[8m hides the line in `cat`; any C0 or C1 control, DEL, or other unprintable character but the
    newline), shown escaped; None when there is none."""
    for number, raw in enumerate(text.split("\n"), start=1):
        if not raw.isprintable():
            return (f"{label} line {number}: {raw!r} holds a control character, which can hide the line on a "
                    "terminal: nothing was installed. Take the lock again from a machine (~/project/requirements.lock) "
                    "or remove the line")
    return None


def parse_lock(text: str, label: str) -> dict:
    """{python, entries: [{line, text, name, version, by_hand}]}; VenvError names a bad line (a control
    character: before any other check)."""
    problem = control_problem(text, label)
    if problem:
        raise VenvError(problem)
    lock = {"python": None, "entries": []}
    for number, raw in enumerate(text.split("\n"), start=1):
        body, _, comment = raw.partition(" #")
        body = body.strip()
        if body.startswith("#") or not body:
            found = re.match(r"^#\s*python:\s*(\d+\.\d+)", raw.strip())
            if found and lock["python"] is None:
                lock["python"] = found.group(1)
            continue
        pinned, by_url = PIN.match(body), URL_PIN.match(body)
        if not (pinned or by_url):
            raise VenvError(f"{label} line {number}: {body!r} is not a locked distribution (name==version or "
                            "name @ url, one per line): take the lock from a machine (~/project/requirements.lock)")
        match = pinned or by_url
        lock["entries"].append({"line": number, "text": body, "name": canonical(match.group(1)),
                                "version": match.group(2) if pinned else None, "by_hand": "by hand" in comment})
    return lock


def check_lock_python(lock: dict, label: str, base_python: str, venv: str) -> None:
    """A lock from another Python version fails here, before anything changes: wheels are built per version."""
    here = python_version(base_python) or built_for(venv)
    if lock["python"] and here and lock["python"] != here:
        raise VenvError(
            f"{label} was made on Python {lock['python']} (its `# python:` line), but this machine's venv is "
            f"Python {here} ({base_python}): the exact versions it lists may not exist for Python {here}, so "
            "nothing was changed. Either take a new lock on a Python "
            f"{here} machine (provision it without python_env_lock_file, then use its ~/project/requirements.lock), "
            f"or run a base image whose python3 is {lock['python']}.")


def load_lock(params: dict) -> dict | None:
    """The lock asked for, checked before anything changes (its lines, its Python, python_env_sync)."""
    if params.get("lock_text") is None:
        if params.get("sync"):
            raise VenvError("python_env_sync needs python_env_lock_file: the lock says what to keep")
        return None
    label = params.get("lock_name") or "the lock"
    lock = parse_lock(params["lock_text"], label)
    check_lock_python(lock, label, params["base_python"], params["path"])
    if params.get("sync"):
        locked = {entry["name"] for entry in lock["entries"]}
        asked = roots_of(list(params["requirements"]) + requirement_lines(params.get("requirements_file_text") or ""))
        missing = sorted(set(asked) - locked)
        if missing:
            raise VenvError(f"python_env_sync would remove {', '.join(missing)} right after installing it "
                            f"(asked for by the playbook, not listed in {label}): take the lock again on a machine "
                            "that has it, or turn python_env_sync off")
    return lock


def lock_pins(lock: dict | None) -> list[str]:
    return [entry["text"] for entry in lock["entries"]] if lock else []


def lock_satisfied(lock: dict | None, installed: dict[str, str]) -> bool:
    """Every locked distribution installed at its version (a URL pin: installed at all)."""
    return all(entry["name"] in installed and entry["version"] in (None, installed[entry["name"]])
               for entry in (lock["entries"] if lock else []))


def unresolvable_lines(lock: dict, reason: str) -> list[str]:
    """The lock's lines that the installer's error names (uv and pip both quote name==version)."""
    named = {(canonical(name), version) for name, version in ANY_PIN.findall(reason)}

    def is_named(entry: dict) -> bool:
        if entry["version"] is None:  # name @ url: the installer quotes the URL
            return entry["text"].split("@", 1)[1].strip() in reason
        return (entry["name"], entry["version"]) in named

    return [f"line {entry['line']}: {entry['text']}" for entry in lock["entries"] if is_named(entry)]


def lock_failure(error: VenvError, lock: dict, label: str, settings: dict) -> VenvError:
    lines = unresolvable_lines(lock, str(error))
    where = f"{label} {'; '.join(lines)}" if lines else label
    indexes = ", ".join(line.split(": ", 1)[1] for line in index_lines(settings))
    return VenvError(f"{where}: cannot be installed from this machine's indexes ({indexes}); set "
                     "python_env_index_url / python_env_extra_index_urls to the ones named in the lock's header. "
                     f"Nothing was installed.\n{error}")


def uninstall_command(venv: str, installer: str, names: list[str]) -> list[str]:
    python = os.path.join(venv, "bin", "python")
    if installer == "uv":
        return [os.path.join(venv, "bin", "uv"), "pip", "uninstall", "--python", python, *names]
    return [python, "-m", "pip", "uninstall", "-y", "--disable-pip-version-check", *names]


def not_in_lock(lock: dict, installed: dict[str, str]) -> list[str]:
    """What python_env_sync removes: everything the lock does not list, but the installers."""
    return sorted(set(installed) - {entry["name"] for entry in lock["entries"]} - INSTALLERS)


def valid_requested(data) -> dict[str, list[str]]:
    """The requested-package list read as untrusted data: names and their extras, anything else dropped."""
    if not isinstance(data, dict):
        return {}
    return {canonical(name): sorted(extra for extra in extras if isinstance(extra, str) and SPEC_NAME.fullmatch(extra))
            for name, extras in data.items()
            if isinstance(name, str) and SPEC_NAME.fullmatch(name) and isinstance(extras, list)}


def load_requested(venv: str, params: dict) -> dict[str, list[str]]:
    """The requested packages so far: root's record, passed in by the module (params["requested"]); on a
    machine that has none yet, the list the venv kept before (moved over by this run)."""
    if params.get("requested") is not None:
        return valid_requested(params["requested"])
    return valid_requested(load_json(os.path.join(venv, REQUESTED_FILE)))


def forget_old_requested(venv: str, params: dict) -> None:
    """Once root keeps the list, the venv's old copy goes (it is never read again)."""
    if params.get("requested") is not None:
        try:
            os.remove(os.path.join(venv, REQUESTED_FILE))
        except FileNotFoundError:
            pass


def url_requirements(lock: dict | None) -> list[str]:
    """The lock's direct references (name @ url), masked: their build code runs on the machine."""
    return [mask_credentials(entry["text"]) for entry in (lock["entries"] if lock else []) if entry["version"] is None]


def merge_requested(before: dict[str, list[str]], more: dict[str, list[str]]) -> dict[str, list[str]]:
    merged = dict(before)
    for name, extras in more.items():
        merged[name] = sorted(set(merged.get(name, [])) | set(extras))
    return merged


def playbook_roots(params: dict, lock: dict | None, requirement_text: str) -> dict[str, list[str]]:
    """What this run asks for: its specifiers, and the lock's lines not marked by hand."""
    specs = list(params["requirements"]) + requirement_lines(requirement_text)
    if lock:
        specs += [entry["text"] for entry in lock["entries"] if not entry["by_hand"]]
    return roots_of(specs)


def empty_result() -> dict:
    return {"changed": False, "rebuilt": None, "reinstalled": [], "moved": [], "installed": [], "removed": [],
            "upgraded": [], "diff": [], "python_version": None, "distributions": 0, "project": None, "warnings": [],
            "lock": None, "lock_path": None, "lock_written": False, "url_requirements": [], "requested": None}


def keep_lock(params: dict, venv: str, settings: dict, requested: dict, result: dict, dry_run: bool = False,
              distributions: dict | None = None) -> None:
    """The venv's lock in the project directory, written when its text changed; its text in the result."""
    if not params.get("project_dir"):
        return
    result["lock"] = lock_text(venv, settings, requested, distributions)
    result["lock_path"] = os.path.join(params["project_dir"], LOCK_FILE)
    result["lock_written"] = write_if_changed(result["lock_path"], result["lock"], 0o644, dry_run)


def plan(params: dict, plan_project=None) -> dict:
    """What converge would do, changing nothing (check mode): the settings files' diffs, and
    the installer's own dry run for requirements that the metadata cannot settle. A uv project
    (params["project"]) is planned by plan_project (devbox_uv_project's, given by the module)."""
    venv = params["path"]
    lock = load_lock(params)
    result = empty_result()
    result["url_requirements"] = url_requirements(lock)
    _, result["changed"] = write_project_files(params, dry_run=True)
    settings = load_settings(venv) if params["settings"] is None else params["settings"]
    installer = params["installer"] or settings.get("installer") or "uv"
    health, reason = venv_health(venv, params["base_python"])
    installed = installed_distributions(venv)
    result["python_version"], result["distributions"] = built_for(venv), len(installed)
    if health != "ok":
        owed = set(installed_distributions(venv, portable_only=True)) - TOOLING
        result.update(changed=True, rebuilt=reason if owed else None, reinstalled=sorted(owed),
                      would_install=list(params["requirements"])
                      + requirement_lines(params.get("requirements_file_text") or ""))
        return result
    if save_settings(venv, settings, dry_run=True, diffs=result["diff"]):
        result["changed"] = True
    needs_uv = installer == "uv" or params.get("project")  # a uv project is synced by uv, whatever the installer
    if (needs_uv and not os.path.exists(os.path.join(venv, "bin", "uv"))) or os.path.exists(venv + ".pending.json"):
        result["changed"] = True
        return result
    text = params.get("requirements_file_text") or ""
    if params.get("project"):
        changes = plan_project(venv, params, settings, installed)
        result.update({key: changes[key] for key in ("installed", "removed", "upgraded", "warnings")})
        result["diff"] += changes["diff"]
        result["changed"] = result["changed"] or changes["changed"]
        roots = merge_requested(load_requested(venv, params), playbook_roots(params, None, ""))
        keep_lock(params, venv, settings, merge_requested(roots, roots_of(changes["locked"])), result, dry_run=True)
        return result
    requested = list(params["requirements"]) + requirement_lines(text)
    # What the run would say it installs: each plain name missing or pinned to another version, as asked.
    result["would_install"] = [spec for spec in requested
                               if SIMPLE_SPEC.match(spec) and not surely_satisfied([spec], installed)]
    if lock and params.get("sync"):
        result["removed"] = [f"{name}=={installed[name]}" for name in not_in_lock(lock, installed)]
    if result["removed"] or not lock_satisfied(lock, installed):
        result["changed"] = True
    elif any(not surely_satisfied([spec], installed) and SIMPLE_SPEC.match(spec) for spec in requested):
        result["changed"] = True  # a plain name missing, or another version than pinned: no need to ask
    elif requested and not surely_satisfied(requested, installed):
        with tempfile.NamedTemporaryFile("w", suffix=".txt") as requirements_file:
            requirements_file.write(text)
            requirements_file.flush()
            files = [requirements_file.name] if text else []
            if would_install(venv, installer, settings, params["requirements"], files):
                result["changed"] = True
    requested_roots = merge_requested(load_requested(venv, params), playbook_roots(params, lock, text))
    keep_lock(params, venv, settings, requested_roots, result, dry_run=True)
    return result


def install_requested(venv: str, installer: str, settings: dict, params: dict, requirement_files: list[str],
                      lock: dict | None) -> None:
    """One installer run for the specifiers, the requirements file and the lock's lines together."""
    if not (params["requirements"] or requirement_files or lock):
        return
    with tempfile.NamedTemporaryFile("w", suffix=".lock.txt") as lock_file:
        lock_file.write("\n".join(lock_pins(lock)) + "\n")
        lock_file.flush()
        files = requirement_files + ([lock_file.name] if lock else [])
        try:
            run_installer(install_command(venv, installer, params["requirements"], files), installer_env(settings))
        except VenvError as error:
            raise lock_failure(error, lock, params.get("lock_name") or "the lock", settings) if lock else error


def converge(params: dict, converge_project=None) -> dict:
    """Bring the venv to the requested state; return what happened (changed, details). A uv project
    (params["project"]) is installed by converge_project (devbox_uv_project's, given by the module)."""
    venv, base_python = params["path"], params["base_python"]
    lock = load_lock(params)  # a lock that cannot be used fails here, before anything changes
    # Distributions owed to a rebuilt venv, kept outside it so an interrupted rebuild is
    # finished by the next run instead of being forgotten.
    pending_path = venv + ".pending.json"
    result = empty_result()
    result["url_requirements"] = url_requirements(lock)
    # The lock lives beside the venv, whose folder may be nested (python_env_venv_dir: .venvs/main).
    os.makedirs(os.path.dirname(venv), mode=0o755, exist_ok=True)
    with Lock(venv + ".lock", params["lock_timeout"]):
        requirement_files, result["changed"] = write_project_files(params)
        settings = load_settings(venv) if params["settings"] is None else params["settings"]
        installer = params["installer"] or settings.get("installer") or "uv"
        pending = load_json(pending_path)
        requested_before = load_requested(venv, params)  # read before a rebuild empties the venv
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
            create_venv(venv, base_python, installer, settings, params.get("uv_from"))
            result["changed"] = True
        if save_settings(venv, settings, diffs=result["diff"]):
            result["changed"] = True
        if (installer == "uv" or params.get("project")) and ensure_uv(venv, settings, params.get("uv_from")):
            result["changed"] = True
        if health != "ok":
            mark_complete(venv)
        requested = list(params["requirements"])
        for path in requirement_files:
            with open(path) as requirements_file:
                requested += requirement_lines(requirements_file.read())
        # What the user asks for wins over the version the old venv had; a bare name (jupyterlab)
        # takes any version, so the old one is kept.
        asked = {canonical(m.group(1)) for spec in requested + lock_pins(lock)
                 if not (SIMPLE_SPEC.match(spec) and "==" not in spec) and (m := SPEC_NAME.match(spec))}
        owed = {name: version for name, version in pending.items() if name not in asked}
        installed = installed_distributions(venv)
        if owed or not surely_satisfied(requested, installed) or not lock_satisfied(lock, installed):
            check_free_space(os.path.dirname(venv), params["min_free_mb"])
        try:
            if owed:
                result["moved"] = reinstall_owed(venv, installer, settings, owed)
                result["reinstalled"] = sorted(f"{name}=={version}" for name, version in owed.items())
            if params.get("project"):
                result["project"] = converge_project(venv, params, settings, installed_distributions(venv))
                result["changed"] = result["changed"] or result["project"]["changed"]
                result["warnings"] = result["project"].pop("warnings")
            else:
                install_requested(venv, installer, settings, params, requirement_files, lock)
            if lock and params.get("sync"):
                extra = not_in_lock(lock, installed_distributions(venv))
                if extra:
                    run_installer(uninstall_command(venv, installer, extra), installer_env(settings))
        except VenvError as error:
            if pending:
                raise VenvError(f"{error}\n(still owed to the rebuilt venv, listed in {pending_path}: "
                                f"{', '.join(sorted(pending))})") from error
            raise
        if pending:
            os.remove(pending_path)
        requested_roots = merge_requested(requested_before,
                                          playbook_roots(params, lock, params.get("requirements_file_text") or ""))
        if result.get("project"):  # what the uv project's lock installs is asked for, not by hand
            requested_roots = merge_requested(requested_roots, roots_of(result["project"]["locked"]))
        result["requested"] = requested_roots  # root keeps it (the devbox_venv module), not the user's venv
        forget_old_requested(venv, params)
        distributions = read_distributions(venv)
        after = {name: dist["version"] for name, dist in distributions.items()}
        result.update(diff(before, after))
        if any(result[key] for key in ("installed", "removed", "upgraded")):
            result["changed"] = True
        result["python_version"] = built_for(venv)
        result["distributions"] = len(after)
        keep_lock(params, venv, settings, requested_roots, result, distributions=distributions)
    return result
