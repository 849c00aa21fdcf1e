"""The AnsiballZ payloads of this collection's modules, kept from one run to the next.

ansible-core builds each module's payload (the module and every module_util it imports, read, compiled to find
the imports, and zipped) once per run, into the run's own cache C.DEFAULT_LOCAL_TMP/ansiballz_cache, which it
deletes at the end: about a quarter of a second of every run for each of our modules a run uses (the look, on a
converged rerun). The callback plugin devbox.machine.payload_cache keeps the run cache's entries of our modules
(devbox_*) in ANSIBLE_HOME/devbox/ansiballz/<key>/ at the end of a run, and puts them back into the next run's
cache at its start, where ansible-core finds and uses them as its own. The key is the digest of what goes into
those payloads: ansible-core's version, the controller's Python (the entries are pickles), and every file of this
collection's modules and module_utils; any change makes a new key, so a kept payload is never stale.

What is kept sits beside Ansible's own plugins and collections in ANSIBLE_HOME, which whoever can write there
already controls; its folders are the user's own (0700), its files 0600. Under Mitogen, which sends modules its
own way, nothing is built and nothing is kept. A cache that cannot be read or written only costs the builds.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import tempfile

from ansible import constants as C
from ansible_collections.devbox.machine.plugins.plugin_utils.devbox_tree import tree_files
from ansible.release import __version__ as ANSIBLE_VERSION

PLUGINS = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
# Every file a payload of this collection's modules can hold besides ansible-core's own.
SOURCES = ("modules", "module_utils")
# The modules whose payloads are kept: this collection's (their code is in the key).
MODULE_PREFIX = "devbox_"


def payload_key(plugins: str = PLUGINS) -> str:
    """The digest of ansible-core's version, the controller's Python and this collection's module code."""
    hashed = hashlib.sha256(f"{ANSIBLE_VERSION}\0{sys.version_info[:2]}\0".encode())
    for path, content in tree_files(plugins, SOURCES):
        hashed.update(path.encode() + b"\0" + content + b"\0")
    return hashed.hexdigest()[:24]


def is_kept_entry(file_name: str, prefix: str = MODULE_PREFIX) -> bool:
    """Whether a file of the run cache is a finished payload of one of our modules ("<fqn>-<compression>-<ext>")."""
    fqn, _, rest = file_name.partition("-")
    return (fqn.rpartition(".")[2].startswith(prefix) and bool(rest)
            and not file_name.endswith((".lock", "-part")))


def run_cache_dir() -> str:
    return os.path.join(C.DEFAULT_LOCAL_TMP, "ansiballz_cache")


def keep_dir(root: str | None = None) -> str:
    return os.path.join(root or os.path.join(C.ANSIBLE_HOME, "devbox", "ansiballz"), payload_key())


def _copy_atomically(source: str, target: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".devbox-")
    os.close(handle)
    try:
        shutil.copyfile(source, temporary)
        os.replace(temporary, target)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _copy_entries(source: str, target: str) -> int:
    """Copy the kept entries of `source` that `target` lacks; how many."""
    copied = 0
    for name in sorted(os.listdir(source)):
        if is_kept_entry(name) and not os.path.exists(os.path.join(target, name)):
            _copy_atomically(os.path.join(source, name), os.path.join(target, name))
            copied += 1
    return copied


def restore(run_cache: str, kept: str) -> int:
    """At a run's start: the kept payloads into the run cache; how many (0 when none or on any error)."""
    with contextlib.suppress(OSError):
        if os.path.isdir(kept):
            os.makedirs(run_cache, exist_ok=True)
            return _copy_entries(kept, run_cache)
    return 0


def keep(run_cache: str, kept: str) -> int:
    """At a run's end: the payloads it built, kept for the next run, and those of other keys (older code) gone;
    how many were kept (0 on any error)."""
    with contextlib.suppress(OSError):
        if os.path.isdir(run_cache) and any(is_kept_entry(name) for name in os.listdir(run_cache)):
            root = os.path.dirname(kept)
            for folder in (root, kept):
                os.makedirs(folder, mode=0o700, exist_ok=True)
                os.chmod(folder, 0o700)  # also where an older folder was made otherwise
            for other in os.listdir(root):
                if other != os.path.basename(kept):
                    shutil.rmtree(os.path.join(root, other), ignore_errors=True)
            return _copy_entries(run_cache, kept)
    return 0
