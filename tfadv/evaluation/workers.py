"""Multi-worker evaluation: the workers of a ``TF_CONFIG`` cluster split an evaluation by whole
attack batches and the chief merges their shards in example order.

Batch ``b`` (of ``batch_size`` examples, the last one possibly smaller) is attacked by worker
``b mod W``; each worker runs :func:`tfadv.evaluation.evaluate` on its own batches, on its own
devices (``distribute=``: a MirroredStrategy over its local GPUs or logical CPUs, which splits
every model pass of a batch as on one host: :mod:`tfadv.evaluation.sharding`). No collective runs
inside an attack: the workers share nothing but a directory. Each worker's resumable state, its
*shard*, is written atomically after every batch to ``OUT_DIR/shards/worker-I-of-W.npz``
(:mod:`tfadv.evaluation.state`); a worker started again continues its shard. The chief (task 0:
the ``chief`` job, else worker 0) evaluates its own shard, waits for the others' (at most
``timeout_s``; the error names the shards still missing and how far each got), and merges them
in example order into one :class:`~tfadv.evaluation.runner.EvaluationResult`: per example the
result of a one-device run. ``OUT_DIR`` must therefore be one directory that every worker reads and
writes (a shared file system).

Why whole batches: an attack's randomness is drawn per call, on the batch it is given, so a batch
attacked on another worker gives the same numbers only when the attack's result is a function of
that batch alone (``Attack.reproducible_per_call``: AutoAttack, APGD, FAB and Square with a seed,
the iterative attacks without a random start, DeepFool, C&W-L2). The others (a seeded random start
draws from a stateful op: the seed fixes the sequence of draws over calls, not each call's) and
attacks fitted to the model first (generator attacks) are refused.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import sys
import time
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf

from tfadv import distribute as distribute_lib
from tfadv import ranges as ranges_lib
from tfadv.evaluation import runner
from tfadv.evaluation.state import State, fingerprint, state_identity

SHARD_DIR = "shards"


@dataclasses.dataclass(frozen=True)
class Worker:
    """This process's place in the cluster: task ``index`` of ``count`` (the chief is 0)."""

    index: int
    count: int

    def __post_init__(self):
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1 or \
                isinstance(self.index, bool) or not isinstance(self.index, int) or \
                not 0 <= self.index < self.count:
            raise ValueError(f"A worker is task index in [0, count), count >= 1. "
                             f"Received: index={self.index!r}, count={self.count!r}.")

    @property
    def chief(self) -> bool:
        return self.index == 0

    @classmethod
    def from_tf_config(cls, raw: Optional[str] = None) -> "Worker":
        """This task's place in the ``TF_CONFIG`` cluster (the environment's unless ``raw``)."""
        return cls(*distribute_lib.cluster_position(raw))


def shard_path(out_dir: str, index: int, count: int) -> str:
    """``OUT_DIR/shards/worker-INDEX-of-COUNT.npz``: the resumable state of one worker."""
    return os.path.join(out_dir, SHARD_DIR, f"worker-{index}-of-{count}.npz")


def check_reproducible(specs) -> None:
    """Refuses (ValueError) the attacks whose per-batch results could depend on which worker ran
    the batch: those not ``reproducible_per_call`` and those fitted to the model first."""
    refused = [label for label, spec in specs.items()
               if getattr(getattr(spec, "attack", spec), "needs_preparation", False)
               or not getattr(getattr(spec, "attack", spec), "reproducible_per_call", lambda: False)()]
    if refused:
        raise ValueError(
            "A multi-worker evaluation gives one device's per-example results only for attacks "
            "whose result on a batch depends on that batch alone: a seeded random start of "
            "pgd/fgsm/cw (a stateful draw), an unseeded attack, random targets and generator "
            "attacks (fitted per worker) are refused; use random_start=none, a seed, or evaluate "
            f"these attacks on one host (--num_gpus=N). Received: {refused}.")


def batch_sizes(num_examples: int, batch_size: int) -> List[int]:
    """The sizes of the batches of ``num_examples`` examples in batches of ``batch_size``."""
    for name, value, low in (("num_examples", num_examples, 0), ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}. Received: {name}={value!r}.")
    full, rest = divmod(int(num_examples), int(batch_size))
    return [int(batch_size)] * full + ([rest] if rest else [])


class _EveryNth:
    """Items ``start, start + step, ...`` of a re-iterable, read lazily on every pass."""

    def __init__(self, items, start, step):
        self.items, self.start, self.step = items, start, step

    def __iter__(self):
        return itertools.islice(iter(self.items), self.start, None, self.step)


def take_batches(dataset, worker: Worker):
    """The batches ``b`` of ``dataset`` with ``b mod worker.count == worker.index``, in order, read
    afresh on every pass as ``dataset`` is (a ``tf.data.Dataset`` stays one)."""
    if isinstance(dataset, tf.data.Dataset):
        return dataset.enumerate().filter(
            lambda b, _: tf.equal(b % worker.count, worker.index)).map(lambda _, batch: batch)
    return _EveryNth(dataset, worker.index, worker.count)


def evaluate_on_workers(model, dataset, specs, *, worker: Worker, out_dir: str, batch_size: int,
                        num_examples: int, pixel_range, only_robust: bool = False,
                        identity: Optional[dict] = None, timeout_s: float = 3600.0,
                        poll_s: float = 2.0, progress=sys.stderr,
                        distribute=None) -> Optional[runner.EvaluationResult]:
    """Evaluates this worker's batches of ``dataset`` into its shard under ``out_dir``; on the
    chief, waits for every shard and returns the merged result (in example order, per example that
    of one device); on the other workers returns None.

    ``dataset`` yields the same ``num_examples`` examples in batches of ``batch_size`` (the last
    one possibly smaller) on every worker, in the same order. ``identity`` (JSON values: dataset,
    split, eps, seed, ...) is what the shards must match, as ``evaluate(identity=)``; the model is
    identified by a hash of its weights unless it names it. ``distribute``: this worker's local
    strategy (one process; see :func:`tfadv.evaluation.evaluate`). ``timeout_s``: how long the chief
    waits for the other shards after its own.
    """
    if not isinstance(worker, Worker):
        raise ValueError(f"worker must be a tfadv.evaluation.workers.Worker. Received: {worker!r}.")
    if not isinstance(out_dir, str) or not out_dir:
        raise ValueError(f"out_dir must be a directory path shared by the workers. "
                         f"Received: out_dir={out_dir!r}.")
    for name, value in (("timeout_s", timeout_s), ("poll_s", poll_s)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{name} must be a positive number of seconds. Received: {name}={value!r}.")
    sizes = batch_sizes(num_examples, batch_size)
    check_reproducible(specs)
    rng = ranges_lib.get_range(pixel_range)
    identity = state_identity(model, identity, num_examples)

    def shard_identity(index):
        return {**identity, "shard": {"worker": index, "workers": worker.count,
                                      "batch_size": int(batch_size)}}

    def shard_key(index):  # what evaluate() fingerprints the shard's state with
        return fingerprint(specs, pixel_range=rng, only_robust=only_robust,
                           identity=shard_identity(index))

    runner.evaluate(model, take_batches(dataset, worker), specs, pixel_range=rng,
                    num_examples=sum(sizes[worker.index::worker.count]), progress=progress,
                    only_robust=only_robust,
                    state_path=shard_path(out_dir, worker.index, worker.count),
                    identity=shard_identity(worker.index),
                    distribute=distribute)
    if not worker.chief:
        return None
    states = wait_for_shards(out_dir, worker.count, shard_key, list(specs), timeout_s=timeout_s,
                             poll_s=poll_s, progress=progress)
    return merge(states, specs, sizes, only_robust=only_robust)


def wait_for_shards(out_dir: str, count: int, shard_key, labels, *, timeout_s: float,
                    poll_s: float, progress=None) -> List[State]:
    """The finished shard states of workers ``0..count-1`` (every attack of ``labels`` done),
    waiting at most ``timeout_s`` for them; a shard of another configuration is refused."""
    states: Dict[int, State] = {}
    deadline = time.time() + timeout_s
    announced = False
    while True:
        progress_of = {}
        for index in range(count):
            if index in states:
                continue
            path = shard_path(out_dir, index, count)
            state = State(path, shard_key(index), 0.0) if os.path.exists(path) else None
            if state is not None and all(state.attacks.get(l, {}).get("done") for l in labels):
                states[index] = state
            else:
                progress_of[index] = "not started" if state is None else ", ".join(
                    f"{l}: {state.attacks[l]['examples']} examples" + (" (done)" if
                                                                     state.attacks[l]["done"] else "")
                    for l in labels if l in state.attacks) or "started"
        if not progress_of:
            return [states[index] for index in range(count)]
        if time.time() >= deadline:
            missing = "; ".join(f"{shard_path(out_dir, i, count)} ({text})"
                                for i, text in sorted(progress_of.items()))
            raise ValueError(
                f"The chief waited {timeout_s:g} s for the shards of {len(progress_of)} worker(s) "
                f"that have not finished: {missing}. Start (or restart: a shard continues where it "
                f"stopped) those workers with the same flags and the same shared output directory, "
                f"or wait longer (--shard_timeout). Received: timeout_s={timeout_s!r}.")
        if progress is not None and not announced:
            progress.write(f"  waiting for the shards of workers {sorted(progress_of)} "
                           f"(at most {timeout_s:g} s)\n")
            progress.flush()
            announced = True
        time.sleep(min(poll_s, max(deadline - time.time(), 0.0)))


def merge(states: List[State], specs, sizes: List[int], *,
          only_robust: bool) -> runner.EvaluationResult:
    """One result from the workers' shard states: batch ``b``'s rows from shard ``b mod W``, in
    example order; times, attacked points and ensemble members' counts summed over the shards."""
    count = len(states)
    results = {}
    for label, spec in specs.items():
        attack = getattr(spec, "attack", spec)
        entries = [state.attacks[label] for state in states]
        arrays = [{name: np.concatenate(e[name]) if e[name] else np.zeros([0])
                   for name in State.ARRAYS} for e in entries]
        for index, shard in enumerate(arrays):
            expected = sum(sizes[index::count])
            if shard["correct"].size != expected:
                raise ValueError(f"Shard {index} of attack {label!r} holds "
                                 f"{shard['correct'].size} examples, not the {expected} of its "
                                 f"batches: the workers' data differ. Received: "
                                 f"{shard['correct'].size}.")
        rows = {name: [] for name in State.ARRAYS}
        offsets = [0] * count
        for batch, size in enumerate(sizes):
            index = batch % count
            for name in State.ARRAYS:
                rows[name].append(arrays[index][name][offsets[index]:offsets[index] + size])
            offsets[index] += size
        entry = {"label": label, "done": True, "batches": len(sizes), "examples": sum(sizes),
                 "seconds": sum(float(e["seconds"]) for e in entries),
                 "points_attacked": sum(int(e["points_attacked"]) for e in entries),
                 **{name: [np.concatenate(rows[name])] if rows[name] else []
                    for name in State.ARRAYS}}
        for e in entries:
            runner.add_components(entry, e.get("components", []), label)
        results[label] = runner.result_from_entry(label, entry, attack,
                                                  runner.attack_name(spec, attack), only_robust)
    return runner.EvaluationResult(results=results, num_examples=sum(sizes),
                                   only_robust=bool(only_robust))
