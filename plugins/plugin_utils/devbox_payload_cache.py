"""A module's AnsiballZ payload kept from one run to the next, so a rerun does not build it again.

ansible-core builds each module's payload (the module and every module_util it imports, read, compiled to find
the imports, and zipped) once per run, into the run's own cache C.DEFAULT_LOCAL_TMP/ansiballz_cache, which it
deletes at the end. For the look, the one module of a converged rerun, that build is about a quarter of a
second of every rerun. kept_payload() keeps the run cache's entries of one module in
ANSIBLE_HOME/devbox/ansiballz/<key>/ and puts them back into the next run's cache before the module runs, where
ansible-core finds and uses them as its own. The key is the digest of what goes into the payload: ansible-core's
version, the controller's Python (the entries are pickles), and every file of this collection's modules and
module_utils; any change makes a new key, so a kept payload is never stale.

What is kept sits beside Ansible's own plugins and collections in ANSIBLE_HOME, which whoever can write there
already controls; its folders are the user's own (0700), its files 0600. Under Mitogen, which sends modules its own way, nothing is
built and nothing is kept.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import tempfile

from ansible import constants as C
from ansible.release import __version__ as ANSIBLE_VERSION

PLUGINS = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
# Every file a payload of this collection's modules can hold besides ansible-core's own.
SOURCES = ("modules", "module_utils")


def payload_key(plugins: str = PLUGINS) -> str:
    """The digest of ansible-core's version, the controller's Python and this collection's module code."""
    hashed = hashlib.sha256(f"{ANSIBLE_VERSION}\0{sys.version_info[:2]}\0".encode())
    for folder in SOURCES:
        for root, dirs, files in os.walk(os.path.join(plugins, folder)):
            dirs[:] = sorted(name for name in dirs if name != "__pycache__")
            for name in sorted(name for name in files if name.endswith(".py")):
                path = os.path.join(root, name)
                with open(path, "rb") as source:
                    hashed.update(os.path.relpath(path, plugins).encode() + b"\0" + source.read() + b"\0")
    return hashed.hexdigest()[:24]


def is_entry_of(file_name: str, module: str) -> bool:
    """Whether a file of the run cache is a finished payload of `module` ("<fqn>-<compression>-<extensions>")."""
    fqn, _, rest = file_name.partition("-")
    return fqn.rpartition(".")[2] == module and bool(rest) and not file_name.endswith((".lock", "-part"))


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


@contextlib.contextmanager
def kept_payload(module: str, run_cache: str | None = None, keep_root: str | None = None):
    """Around one _execute_module of `module`: the kept payload goes in before, a newly built one is kept after.

    A cache that cannot be read or written only costs the build: every error here is ignored.
    """
    run_cache = run_cache or os.path.join(C.DEFAULT_LOCAL_TMP, "ansiballz_cache")
    keep = os.path.join(keep_root or os.path.join(C.ANSIBLE_HOME, "devbox", "ansiballz"), payload_key())
    with contextlib.suppress(OSError):
        os.makedirs(run_cache, exist_ok=True)
        for name in os.listdir(keep):
            if is_entry_of(name, module) and not os.path.exists(os.path.join(run_cache, name)):
                _copy_atomically(os.path.join(keep, name), os.path.join(run_cache, name))
    yield
    with contextlib.suppress(OSError):
        built = [name for name in os.listdir(run_cache) if is_entry_of(name, module)]
        if built:
            os.makedirs(os.path.dirname(keep), mode=0o700, exist_ok=True)
            os.makedirs(keep, mode=0o700, exist_ok=True)
            for name in built:
                if not os.path.exists(os.path.join(keep, name)):
                    _copy_atomically(os.path.join(run_cache, name), os.path.join(keep, name))
