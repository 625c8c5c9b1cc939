"""Callbacks and run metadata: what makes a run reproducible from its log directory alone."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from typing import Optional

import keras

from tfadv import atomic

RUN_METADATA = "run_metadata.json"


def git_state(repo_dir: Optional[str] = None) -> dict:
    """The git commit of the code that ran and whether the work tree had local changes."""
    repo_dir = repo_dir or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def run(*args):
        try:
            return subprocess.run(["git", *args], cwd=repo_dir, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = run("rev-parse", "HEAD")
    return {"commit": commit or "unknown", "dirty": bool(run("status", "--porcelain")) if commit else None}


def write_run_metadata(logdir: str, *, flags: dict, seed: Optional[int], extra: Optional[dict] = None) -> dict:
    """Writes flags, git hash, seed, command line and library versions to LOGDIR/run_metadata.json."""
    import tensorflow as tf

    meta = {
        "flags": flags,
        "seed": seed,
        "git": git_state(),
        "argv": sys.argv,
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "versions": {"python": platform.python_version(), "tensorflow": tf.__version__,
                     "keras": keras.__version__},
    }
    meta.update(extra or {})
    atomic.write_json(os.path.join(logdir, RUN_METADATA), meta)
    return meta


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the optimizer's current learning rate to the epoch logs (so TensorBoard plots it).

    Place it before ``keras.callbacks.TensorBoard`` in the callback list.
    """

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
