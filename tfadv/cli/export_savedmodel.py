"""Exports a training checkpoint as a SavedModel (serve(images) -> logits, inference mode).

    python scripts/export_savedmodel.py --checkpoint=runs/madry_digits --out=/tmp/madry_sm

``--checkpoint`` is a run directory (latest checkpoint), its checkpoints/ folder or a
``.weights.h5`` file; the network is rebuilt from the run's run_config.json. ``--out`` must be
new or empty; an existing tfadv SavedModel is replaced only with ``--overwrite``.
"""

from absl import app, flags, logging

from tfadv import checkpoints as ckpt_lib
from tfadv import export as export_lib
from tfadv.cli import program

flags.DEFINE_string("checkpoint", None, "Run directory, checkpoints/ folder or .weights.h5 file.")
flags.DEFINE_string("out", None, "Output SavedModel directory: new or empty, or (with "
                    "--overwrite) a tfadv SavedModel, replaced atomically. Anything else is refused.")
flags.DEFINE_bool("overwrite", False, "Replace an existing tfadv SavedModel at --out.")
FLAGS = flags.FLAGS


def run(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments. Received: {argv[1:]!r}.")
    logging.set_verbosity(logging.WARNING)
    try:
        export_lib.check_target(FLAGS.out, overwrite=FLAGS.overwrite, flag="--out")
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    network, config, weights = ckpt_lib.restore_network(FLAGS.checkpoint)
    export_lib.export_savedmodel(network, FLAGS.out, pixel_range=config["pixel_range"],
                                 metadata={"architecture": config["model"], "dataset": config.get("dataset"),
                                           "model_kwargs": dict(config.get("model_kwargs") or {}),
                                           "checkpoint": weights}, overwrite=FLAGS.overwrite)
    print(f"Exported {weights} to {FLAGS.out}")


def main():
    """Runs ``tfadv-export`` (``python scripts/export_savedmodel.py``): parses the flags, exports."""
    program.as_main(__name__, __doc__)
    flags.mark_flags_as_required(["checkpoint", "out"])
    app.run(run)
