"""The AnsiballZ payloads of this collection's modules, kept from one run to the next.

ansible-core builds each module's payload (the module and every module_util it imports, read, compiled to find
the imports, and zipped) once per run, into the run's own cache C.DEFAULT_LOCAL_TMP/ansiballz_cache, which it
deletes at the end: about a quarter of a second of every run for each of our modules a run uses (the look, on a
converged rerun). The callback plugin devbox.machine.payload_cache keeps the run cache's entries of our modules
(devbox_*) in ANSIBLE_HOME/devbox/ansiballz/<key>/ at the end of a run, and puts them back into the next run's
cache at its start, where ansible-core finds and uses them as its own. The key is the digest of what goes into
those payloads: ansible-core's version, the controller's Python (the entries are pickles), and every file of this
collection's modules and module_utils; any change makes a new key, so a kept payload is never stale.

Each kept payload also carries the bytecode of every Python file in it, compiled by the controller's Python
(with_bytecode): Python imports a module from the payload's zip without compiling it when the zip holds a .pyc of
its own version, which saves about 0.15 s of every module run on a machine whose Python is the controller's
version (bench/); on another version the .pyc is passed over and the .py compiled, as before.

What is kept sits beside Ansible's own plugins and collections in ANSIBLE_HOME, which whoever can write there
already controls; its folders are the user's own (0700), its files 0600. Under Mitogen, which sends modules its
own way, nothing is built and nothing is kept. A cache that cannot be read or written only costs the builds.
"""
from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import importlib.util
import io
import marshal
import os
import pickle
import shutil
import sys
import tempfile
import zipfile

from ansible import constants as C
from ansible_collections.devbox.machine.plugins.plugin_utils.devbox_tree import hash_tree
from ansible.release import __version__ as ANSIBLE_VERSION

PLUGINS = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
# Every file a payload of this collection's modules can hold besides ansible-core's own.
SOURCES = ("modules", "module_utils")
# The modules whose payloads are kept: this collection's (their code is in the key).
MODULE_PREFIX = "devbox_"
# What a kept entry holds: a change makes a new key, so entries of the old form are not used.
FORMAT = "payload and bytecode"
# A .pyc header's flags (PEP 552): hash-based, not checked against the source, which sits beside it in the same zip.
UNCHECKED_HASH = (1).to_bytes(4, "little")


def payload_key(plugins: str = PLUGINS) -> str:
    """The digest of ansible-core's version, the controller's Python, what an entry holds and this collection's module
    code."""
    hashed = hashlib.sha256(f"{ANSIBLE_VERSION}\0{sys.version_info[:2]}\0{FORMAT}\0".encode())
    hash_tree(hashed, plugins, SOURCES)
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


def with_bytecode(entry: bytes) -> bytes:
    """A run cache entry (ansible-core's pickled _CachedModule, its zip base64-encoded) with a .pyc beside each .py
    of the zip: the controller Python's magic number and unchecked-hash flag (zipimport compares no time stamps),
    the bytecode of exactly that source."""
    cached = pickle.loads(entry)
    source = zipfile.ZipFile(io.BytesIO(base64.b64decode(cached.zip_data)))
    names = set(source.namelist())
    output = io.BytesIO()
    with zipfile.ZipFile(output, "w") as zipped:
        for info in source.infolist():
            data = source.read(info)
            zipped.writestr(info, data)
            if info.filename.endswith(".py") and info.filename + "c" not in names:
                code = compile(data, info.filename, "exec", dont_inherit=True)
                header = importlib.util.MAGIC_NUMBER + UNCHECKED_HASH + importlib.util.source_hash(data)
                compiled = zipfile.ZipInfo(info.filename + "c", info.date_time)
                compiled.compress_type = info.compress_type
                zipped.writestr(compiled, header + marshal.dumps(code))
    return pickle.dumps(dataclasses.replace(cached, zip_data=base64.b64encode(output.getvalue())))


def _copy_entries(source: str, target: str, transform=None) -> int:
    """Copy the kept entries of `source` that `target` lacks, through transform (bytes to bytes) when given; how
    many. An entry transform fails on is copied as it is."""
    copied = 0
    for name in sorted(os.listdir(source)):
        if is_kept_entry(name) and not os.path.exists(os.path.join(target, name)):
            with open(os.path.join(source, name), "rb") as entry:
                data = entry.read()
            if transform is not None:
                try:
                    data = transform(data)
                except Exception:  # noqa: BLE001 - a payload in a shape this does not know is kept as it was built
                    pass
            _write_atomically(data, os.path.join(target, name))
            copied += 1
    return copied


def _write_atomically(data: bytes, target: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".devbox-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, target)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


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
            return _copy_entries(run_cache, kept, with_bytecode)
    return 0
