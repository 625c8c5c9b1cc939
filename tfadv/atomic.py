"""Atomic writes: a reader sees the old file/directory or the complete new one, never half of one."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile


@contextlib.contextmanager
def atomic_path(path: str, *, directory: bool = False):
    """Yields a temporary sibling path; on success it is renamed over ``path``.

    On error the temporary is removed and ``path`` is left as it was.
    """
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    base = os.path.basename(path)
    if directory:
        tmp = tempfile.mkdtemp(prefix=f".{base}.tmp-", dir=parent)
        shutil.rmtree(tmp)  # the writer creates it
    else:
        # The temporary keeps the full name as its suffix, so extension checks (".weights.h5") pass.
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=f"-{base}", dir=parent)
        os.close(fd)
        os.remove(tmp)
    try:
        yield tmp
        if directory:
            if os.path.isdir(path):
                old = tempfile.mkdtemp(prefix=f".{base}.old-", dir=parent)
                os.rmdir(old)
                os.rename(path, old)
                os.rename(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.remove(tmp)


def is_temporary(name: str) -> bool:
    """Whether ``name`` is one of :func:`atomic_path`'s temporaries (``.tmp-*-BASE`` files,
    ``.BASE.tmp-*`` directories, ``.BASE.old-*`` replaced directories): what a killed write leaves."""
    return name.startswith(".tmp-") or (name.startswith(".") and (".tmp-" in name or ".old-" in name))


def remove_stale(directory: str, *, skip=()) -> list:
    """Removes the temporaries a killed :func:`atomic_path` write left anywhere under ``directory``
    (not descending into the top-level entries named in ``skip``); returns their paths."""
    removed = []
    for root, dirs, files in os.walk(directory):
        if root == directory:
            dirs[:] = [d for d in dirs if d not in skip]
        for name in [d for d in dirs if is_temporary(d)]:
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
            removed.append(os.path.join(root, name))
            dirs.remove(name)
        for name in files:
            if is_temporary(name):
                os.remove(os.path.join(root, name))
                removed.append(os.path.join(root, name))
    return sorted(removed)


def write_text(path: str, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def write_json(path: str, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str, *, missing: str):
    """The JSON value in ``path`` (as :func:`write_json` wrote it). ValueError with the message
    ``missing`` when there is no such file, and naming the file, the error and the path when it
    cannot be read or parsed."""
    if not os.path.isfile(path):
        raise ValueError(missing)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"Corrupt {os.path.basename(path)} ({e}). Received: {path!r}.") from None
