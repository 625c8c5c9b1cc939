"""Where and how a training step runs: the tf.distribute strategy, mixed precision and XLA flags.

* ``--num_gpus=N``: ``MirroredStrategy`` over N local GPUs (BAT ImageNet sec. 5: 8 GPUs on one DGX,
  the tensorpack code's one replica per GPU). ``--logical_cpus=N`` is a testing aid: the host CPU is
  split into N logical devices before TensorFlow initialises, and ``--num_gpus=N`` mirrors over them
  when fewer than N GPUs are visible.
* ``--strategy=multi_worker``: ``MultiWorkerMirroredStrategy`` over the cluster in ``TF_CONFIG``
  (validated here, so a malformed value fails with the value instead of a collective timeout).
* Training input (:func:`distribute_input`): ``strategy.distribute_datasets_from_function`` builds
  one pipeline per worker from its ``InputContext``: a disjoint shard of the examples (taken before
  shuffling; ImageNet's file list before decoding), batched to the worker's share of the global
  batch and split into its replicas' consecutive per-replica batches.
* ``--precision=fp32|bf16|fp16``: the Keras dtype policy (``mixed_bfloat16`` / ``mixed_float16``);
  logits are computed in float32 (the output layer's policy) so losses are float32, and
  ``compute_in_float32`` traces a block (the attack) in float32.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from typing import Callable, Optional, Tuple

import keras
import tensorflow as tf
from absl import logging

STRATEGIES = ("auto", "multi_worker")
PRECISIONS = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


def _check_count(value, name: str) -> int:
    if isinstance(value, bool) or value is None or int(value) != value or value < 0:
        raise ValueError(f"--{name} must be a non-negative integer. Received: {name}={value!r}.")
    return int(value)


def configure_logical_cpus(n: int) -> int:
    """Splits the host CPU into ``n`` logical devices (0 or 1: leave it alone).

    Must run before TensorFlow initialises its devices (before the first op); calling it again with
    the same ``n`` is a no-op. Returns the number of logical CPU devices.
    """
    n = _check_count(n, "logical_cpus")
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if n <= 1 or (current is not None and len(current) == n):
        return len(current) if current else 1
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)])
    except RuntimeError as e:
        raise ValueError(f"--logical_cpus must be set before TensorFlow initialises its devices "
                         f"({e}); pass it on the command line of a fresh process. "
                         f"Received: logical_cpus={n}.") from None
    return n


def parse_tf_config(raw: Optional[str] = None) -> dict:
    """Validates ``TF_CONFIG`` (``{"cluster": {"worker": ["host:port", ...], "chief": [...]},
    "task": {"type": "worker", "index": i}}``) and returns it as a dict."""
    raw = os.environ.get("TF_CONFIG") if raw is None else raw
    if not raw:
        raise ValueError("--strategy=multi_worker reads the cluster from the TF_CONFIG environment "
                         "variable, which is not set. Expected e.g. TF_CONFIG='{\"cluster\": "
                         "{\"worker\": [\"host1:port\", \"host2:port\"]}, \"task\": {\"type\": "
                         "\"worker\", \"index\": 0}}'. Received: TF_CONFIG=None.")
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON ({e}). Received: TF_CONFIG={raw!r}.") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not (cluster.get("worker") or cluster.get("chief")):
        raise ValueError("TF_CONFIG needs a 'cluster' with a non-empty 'worker' (or 'chief') list "
                         f"of host:port addresses. Received: TF_CONFIG={raw!r}.")
    for kind, addresses in cluster.items():
        if not isinstance(addresses, list) or not all(
                isinstance(a, str) and ":" in a for a in addresses):
            raise ValueError(f"TF_CONFIG cluster['{kind}'] must be a list of 'host:port' strings. "
                             f"Received: TF_CONFIG={raw!r}.")
    if not isinstance(task, dict) or task.get("type") not in cluster:
        raise ValueError(f"TF_CONFIG needs a 'task' whose 'type' is one of the cluster's jobs "
                         f"{sorted(cluster)}. Received: TF_CONFIG={raw!r}.")
    index = task.get("index")
    if isinstance(index, bool) or not isinstance(index, int) or \
            not 0 <= index < len(cluster[task["type"]]):
        raise ValueError(f"TF_CONFIG task 'index' must be an integer in [0, "
                         f"{len(cluster[task['type']])}). Received: TF_CONFIG={raw!r}.")
    return config


def strategy_from_flags(num_gpus: int = 0, *, strategy: str = "auto",
                        logical_cpus: int = 0) -> tf.distribute.Strategy:
    """The strategy a run's flags name.

    ``strategy="auto"``: ``num_gpus=0`` is the default strategy (one device) and ``N>=1`` a
    MirroredStrategy over N GPUs (over N logical CPUs when fewer GPUs are visible and
    ``logical_cpus >= N``). ``strategy="multi_worker"``: MultiWorkerMirroredStrategy over the
    ``TF_CONFIG`` cluster (each worker mirrors over its local GPUs).
    """
    num_gpus = _check_count(num_gpus, "num_gpus")
    logical_cpus = _check_count(logical_cpus, "logical_cpus")
    if strategy not in STRATEGIES:
        raise ValueError(f"Unknown strategy. Expected one of {STRATEGIES}. "
                         f"Received: strategy={strategy!r}.")
    if logical_cpus > 1:
        configure_logical_cpus(logical_cpus)
    if strategy == "multi_worker":
        config = parse_tf_config()
        logging.warning("MultiWorkerMirroredStrategy: task %s of cluster %s.", config["task"],
                        config["cluster"])
        return tf.distribute.MultiWorkerMirroredStrategy()
    if num_gpus == 0:
        return tf.distribute.get_strategy()
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) >= num_gpus:
        return tf.distribute.MirroredStrategy([d.name for d in gpus[:num_gpus]])
    cpus = tf.config.list_logical_devices("CPU")
    if logical_cpus >= num_gpus and len(cpus) >= num_gpus:
        message = (f"--num_gpus={num_gpus} but {len(gpus)} GPU(s) are visible: mirroring over "
                   f"{num_gpus} logical CPU devices (--logical_cpus={logical_cpus}, a testing aid).")
        logging.warning(message)
        print(message, flush=True)
        return tf.distribute.MirroredStrategy([d.name for d in cpus[:num_gpus]])
    raise ValueError(f"--num_gpus={num_gpus} but only {len(gpus)} GPU(s) are visible "
                     f"({[d.name for d in gpus]}); on a CPU host pass --logical_cpus>={num_gpus} to "
                     f"mirror over logical CPU devices. Received: num_gpus={num_gpus}.")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files (worker 0 / the chief; always on one host)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and int(resolver.task_id) == 0 and \
        "chief" not in resolver.cluster_spec().as_dict()


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """Whether ``strategy`` spans several processes (a ``TF_CONFIG`` cluster of more than one
    task)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return False
    return sum(len(tasks) for tasks in resolver.cluster_spec().as_dict().values()) > 1


def cluster_position(raw: Optional[str] = None) -> Tuple[int, int]:
    """``(index, count)`` of this task among all tasks of the ``TF_CONFIG`` cluster (validated by
    :func:`parse_tf_config`, read by tf.distribute's ``TFConfigClusterResolver``): the chief
    first, then the workers in order. Starts no server and opens no connection."""
    config = parse_tf_config(raw)
    previous = os.environ.get("TF_CONFIG")
    os.environ["TF_CONFIG"] = json.dumps(config)
    try:
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
        cluster, task_type, task_id = (resolver.cluster_spec().as_dict(), resolver.task_type,
                                       int(resolver.task_id))
    finally:
        if previous is None:
            del os.environ["TF_CONFIG"]
        else:
            os.environ["TF_CONFIG"] = previous
    order = [(job, i) for job in ["chief"] + sorted(set(cluster) - {"chief"})
             for i in range(len(cluster.get(job, ())))]
    return order.index((task_type, task_id)), len(order)


def worker_logdir(logdir: str, strategy: tf.distribute.Strategy) -> str:
    """``logdir`` on the chief; a private scratch directory under it on the other workers, which
    must still save (saving reads sync-on-read variables collectively) but not over the chief."""
    if is_chief(strategy):
        return logdir
    resolver = strategy.cluster_resolver
    return os.path.join(logdir, "workers", f"{resolver.task_type}-{resolver.task_id}")


def global_batch_check(batch_size: int, strategy: tf.distribute.Strategy) -> int:
    """``--batch_size`` is the GLOBAL batch; it must split evenly over the replicas. Returns the
    per-replica batch."""
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise ValueError(f"--batch_size is the global batch and must be a multiple of the "
                         f"{replicas} replicas (per-replica batch = batch_size / replicas). "
                         f"Received: batch_size={batch_size}.")
    return batch_size // replicas


# ------------------------------------------------------------------------------------ input
def steps_per_epoch(num_examples: int, batch_size: int, replicas: int = 1) -> int:
    """Steps in one pass of ``num_examples`` in batches of ``batch_size`` split over ``replicas``:
    a final batch with fewer examples than replicas is dropped (:func:`split_over_replicas`)."""
    full, rest = divmod(int(num_examples), int(batch_size))
    return full + (1 if rest and rest >= replicas else 0)


def split_over_replicas(ds: tf.data.Dataset, replicas: int) -> tf.data.Dataset:
    """Splits every ``(images, labels)`` batch of ``ds`` into ``replicas`` consecutive per-replica
    batches, as ``experimental_distribute_dataset`` splits a batch of one input pipeline: a batch of
    ``k`` examples gives pieces of ``ceil(k / replicas)`` (a full batch: equal pieces; a ragged last
    one, e.g. 5 over 2: 3 + 2, 5 over 4: 2 + 2 + 1 + 0). A final batch with fewer examples than
    replicas is dropped, as :func:`steps_per_epoch` counts. One replica: ``ds`` unchanged."""
    if replicas == 1:
        return ds

    def pieces(images, labels):
        size = tf.shape(labels)[0]
        part = (size + replicas - 1) // replicas
        starts = tf.minimum(tf.range(replicas) * part, size)
        ends = tf.minimum(starts + part, size)
        return tf.data.Dataset.from_tensor_slices((starts, ends)).map(
            lambda start, end: (images[start:end], labels[start:end]))

    return ds.filter(lambda images, labels: tf.shape(labels)[0] >= replicas).flat_map(pieces)


@dataclasses.dataclass(frozen=True)
class WorkerInput:
    """A training input: ``dataset`` (what ``fit`` takes), the ``info`` of this worker's shard
    (its ``num_examples`` are the shard's) and the ``steps`` of one epoch, the same on every
    worker."""

    dataset: object
    info: object
    steps: int


#: ``load_shard(shard_index, num_shards, batch_size) -> (batched tf.data.Dataset, info)``: one
#: input pipeline's share of the training examples (equal on every pipeline, taken before
#: shuffling), in batches of ``batch_size``; ``info.num_examples`` counts the share.
LoadShard = Callable[[int, int, int], Tuple[tf.data.Dataset, object]]


def worker_input(load_shard: LoadShard, context: tf.distribute.InputContext, *,
                 global_batch: int) -> WorkerInput:
    """The per-worker training pipeline of ``context``'s input pipeline.

    Shard ``context.input_pipeline_id`` of ``context.num_input_pipelines`` (disjoint shards of equal
    size whose union is the data set, less at most ``num_input_pipelines - 1`` examples: see
    :func:`tfadv.data.load`), in batches of this worker's share of ``global_batch``
    (``per-replica batch x local replicas``). With one replica per worker that is the dataset:
    ``steps`` batches, iterated afresh every epoch as a plain dataset is. With several, every batch
    is split into its replicas' consecutive per-replica batches (:func:`split_over_replicas`) and
    the passes are repeated, since ``fit`` would count the ``replicas x steps`` per-replica batches
    as steps: it takes ``steps`` per epoch, one pass (an extra iterator, such as the one Keras opens
    to build the model, can read ahead into the next pass of a tiny data set and so advance the
    seeded reshuffles by one epoch). With one input pipeline the replicas of a step receive the
    same global batch, split the same way, as ``experimental_distribute_dataset`` gives them.
    """
    per_replica = context.get_per_replica_batch_size(global_batch)
    replicas = context.num_replicas_in_sync // context.num_input_pipelines
    ds, info = load_shard(context.input_pipeline_id, context.num_input_pipelines,
                          per_replica * replicas)
    steps = steps_per_epoch(info.num_examples, per_replica * replicas, replicas)
    if steps < 1:
        raise ValueError(f"Each of the {context.num_input_pipelines} input pipeline(s) holds "
                         f"{info.num_examples} example(s), fewer than its {replicas} replica(s): "
                         f"no step is possible. Received: num_examples={info.num_examples}.")
    options = tf.data.Options()
    options.deterministic = True
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    ds = ds.with_options(options)
    if replicas > 1:
        ds = split_over_replicas(ds, replicas).repeat()
    return WorkerInput(ds, info, steps)


def distribute_input(strategy: tf.distribute.Strategy, load_shard: LoadShard, *,
                     global_batch: int) -> WorkerInput:
    """The training input of ``strategy``: ``strategy.distribute_datasets_from_function`` over
    :func:`worker_input` (each host builds and reads only its own shard; under the default
    strategy, the plain dataset)."""
    built = []

    def dataset_fn(context):
        built.append(worker_input(load_shard, context, global_batch=global_batch))
        return built[-1].dataset

    distributed = strategy.distribute_datasets_from_function(dataset_fn)
    if len({b.steps for b in built}) != 1:  # built eagerly, once per local input pipeline
        raise ValueError(f"The local input pipelines must each take the same number of steps. "
                         f"Received: steps={[b.steps for b in built]}.")
    return dataclasses.replace(built[0], dataset=distributed)


# ------------------------------------------------------------------------------------ precision
def policy_name(precision: str) -> str:
    """The Keras dtype policy of ``fp32``, ``bf16`` or ``fp16``."""
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision. Expected one of {sorted(PRECISIONS)}. "
                         f"Received: precision={precision!r}.")
    return PRECISIONS[precision]


@contextlib.contextmanager
def precision_policy(precision: str):
    """Sets the global Keras dtype policy for the block (layers keep the policy they are built
    with; build the network, the defense and ``compile()`` inside). Under ``fp16`` ``compile()``
    wraps the optimizer in a LossScaleOptimizer, which ``AdversarialModel.train_step`` uses through
    ``optimizer.scale_loss``."""
    name = policy_name(precision)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield name
    finally:
        keras.mixed_precision.set_global_policy(previous)


def float32_logits(network: keras.Model) -> keras.Model:
    """Makes the layers producing ``network``'s outputs compute in float32, so the logits (and every
    loss on them) are float32 under a mixed policy. Variables are float32 under every policy, so
    checkpoints are interchangeable with fp32 runs. Returns ``network``."""
    for output in network.outputs:
        layer = output._keras_history.operation
        if layer.dtype_policy.compute_dtype != "float32":
            layer.dtype_policy = "float32"
    return network


@contextlib.contextmanager
def compute_in_float32(network: keras.Model):
    """Traces the calls of ``network`` made inside the block in float32 (e.g. the attack of a mixed
    precision run, as tensorpack evaluates in fp32), restoring the layers' policies afterwards.

    The policies are read when a layer is called, i.e. when the step function is traced, so the
    compiled step keeps float32 ops for the block and the mixed policy elsewhere.
    """
    layers = [layer for layer in network._flatten_layers(include_self=True)
              if layer.dtype_policy.compute_dtype != "float32"]
    saved = [(layer, layer.dtype_policy) for layer in layers]
    for layer in layers:
        layer.dtype_policy = "float32"
    try:
        yield network
    finally:
        for layer, policy in saved:
            layer.dtype_policy = policy
