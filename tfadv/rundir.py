"""A run directory belongs to one run: the ownership check a training run makes before it writes.

``LOGDIR/run_metadata.json`` records the run's resolved configuration (``config``, ``defense`` and
``defense_kwargs``). A new start in LOGDIR (:func:`prepare`):

* continues the run when the configuration that defines it matches (:func:`identity`: everything
  but the fields that may change between a run and its resumption, :data:`NOT_IDENTITY`);
* refuses a different configuration, naming the differing keys, a ``--noresume`` start and a
  directory that holds files but no run, unless ``overwrite``: then everything in LOGDIR is moved
  (never deleted) to the sibling ``LOGDIR.replaced-<UTC time>`` and the move is printed;
* once allowed to start, removes the temporaries a killed atomic write left (and says which).
"""

from __future__ import annotations

import datetime
import json
import os
import sys
from typing import Optional

from tfadv import atomic
from tfadv.callbacks import RUN_METADATA

# Multi-worker runs: the other workers' scratch directories (tfadv.distribute.worker_logdir),
# written concurrently with the chief's start, so neither cleaned nor moved by it.
WORKERS_DIR = "workers"
# TrainConfig fields that do not define a run: where it is written or read from, how it is run
# (devices, compilation, verbosity) and what is evaluated after it.
NOT_IDENTITY = frozenset({"logdir", "data_dir", "resume", "overwrite", "verbose", "num_gpus",
                          "strategy", "logical_cpus", "xla", "checkpoint_every", "eval_attacks",
                          "eval_limit", "eval_step_size"})


def plain(value):
    """``value`` as JSON data, as run_metadata.json stores it: tuples as lists, objects with a
    ``get_config`` as their class name plus config, anything else as ``str`` (or its type's name)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    get_config = getattr(value, "get_config", None)
    if callable(get_config):
        return {"class": type(value).__name__, **plain(get_config())}
    text = str(value)
    return type(value).__name__ if " at 0x" in text else text  # no per-process addresses


def identity(config: dict, defense: str, defense_kwargs: Optional[dict] = None) -> dict:
    """What defines a run: its defense, its defense's keyword arguments (when known) and the
    TrainConfig fields (``dataclasses.asdict``) outside :data:`NOT_IDENTITY`."""
    out = {"defense": defense, **{k: v for k, v in config.items() if k not in NOT_IDENTITY}}
    if defense_kwargs is not None:
        out["defense_kwargs"] = defense_kwargs
    return json.loads(json.dumps(plain(out), sort_keys=True))


def differences(old: dict, new: dict) -> list:
    """``["defense 'madry' != 'trades'", ...]`` over the keys both identities have (a run written
    before a key existed is not refused for lacking it)."""
    return [f"{key} {old[key]!r} != {new[key]!r}" for key in sorted(set(old) & set(new))
            if old[key] != new[key]]


def read_metadata(logdir: str) -> Optional[dict]:
    """LOGDIR's run_metadata.json, or None when there is none or it is unreadable."""
    try:
        with open(os.path.join(logdir, RUN_METADATA), encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and isinstance(meta.get("config"), dict) else None


def replaced_path(logdir: str) -> str:
    """A free sibling ``LOGDIR.replaced-<UTC time>`` for the run ``--overwrite`` moves aside."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = f"{os.path.normpath(os.path.abspath(logdir))}.replaced-{stamp}"
    path, n = base, 1
    while os.path.exists(path):
        path, n = f"{base}-{n}", n + 1
    return path


def move_aside(logdir: str, entries, stream=sys.stdout) -> str:
    """Moves ``entries`` of ``logdir`` into :func:`replaced_path` (run_metadata.json first, so an
    interrupted move leaves no run that a later start would take for the old one) and prints
    what went where."""
    target = replaced_path(logdir)
    os.makedirs(target)
    for name in sorted(entries, key=lambda n: n != RUN_METADATA):
        os.rename(os.path.join(logdir, name), os.path.join(target, name))
    stream.write(f"--overwrite: moved {', '.join(sorted(entries))} from {logdir} to {target}\n")
    stream.flush()
    return target


def prepare(logdir: str, run: dict, *, resume: bool = True, overwrite: bool = False,
            stream=sys.stdout) -> bool:
    """Makes ``logdir`` ready for the run whose :func:`identity` is ``run``; returns whether it
    continues the run already there. Raises ValueError, having changed nothing, when it may not
    write there; otherwise removes the temporaries a killed write left (and says which)."""
    if os.path.exists(logdir) and not os.path.isdir(logdir):
        raise ValueError(f"--logdir must be a directory; this is a file. Received: {logdir!r}.")
    if not os.path.isdir(logdir):
        return False
    entries = [n for n in os.listdir(logdir) if n != WORKERS_DIR and not atomic.is_temporary(n)]
    resumed = bool(entries) and not overwrite and _check_owner(logdir, entries, run, resume=resume)
    if entries and overwrite:
        move_aside(logdir, entries, stream)
    stale = atomic.remove_stale(logdir, skip=(WORKERS_DIR,))
    if stale:
        stream.write(f"Removed {len(stale)} temporary file(s) an interrupted write left in "
                     f"{logdir}: {', '.join(os.path.relpath(p, logdir) for p in stale)}\n")
    return resumed


def _check_owner(logdir: str, entries, run: dict, *, resume: bool) -> bool:
    """True when the run in ``logdir`` is ``run`` and may be resumed; else a ValueError."""
    remedy = "Pass a new --logdir, or --overwrite to move the old run aside (nothing is deleted)."
    meta = read_metadata(logdir)
    if meta is None:
        raise ValueError(f"The run directory is not empty and holds no tfadv run (no readable "
                         f"{RUN_METADATA}; it contains {', '.join(sorted(entries)[:8])}). "
                         f"{remedy} Received: --logdir={logdir!r}.")
    if not resume:
        raise ValueError(f"--noresume would start a new run in a directory that holds one "
                         f"({meta.get('defense')} on {meta['config'].get('dataset')}). {remedy} "
                         f"Received: --logdir={logdir!r}.")
    old = identity(meta["config"], meta.get("defense"), meta.get("defense_kwargs"))
    diffs = differences(old, run)
    if diffs:
        raise ValueError(f"The run directory holds a different run; resuming needs the same "
                         f"configuration, and it differs: {', '.join(diffs)}. {remedy} "
                         f"Received: --logdir={logdir!r}.")
    return True
