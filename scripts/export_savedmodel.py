"""Exports a training checkpoint as a SavedModel (serve(images) -> logits, inference mode).

    python scripts/export_savedmodel.py --checkpoint=runs/madry_digits --out=/tmp/madry_sm

``--checkpoint`` is a run directory (latest checkpoint), its checkpoints/ folder or a
``.weights.h5`` file; the network is rebuilt from the run's run_config.json.
"""

from absl import app, flags, logging

from tfadv import checkpoints as ckpt_lib
from tfadv import export as export_lib

flags.DEFINE_string("checkpoint", None, "Run directory, checkpoints/ folder or .weights.h5 file.")
flags.DEFINE_string("out", None, "Output SavedModel directory (replaced atomically).")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments. Received: {argv[1:]!r}.")
    logging.set_verbosity(logging.WARNING)
    network, config, weights = ckpt_lib.restore_network(FLAGS.checkpoint)
    export_lib.export_savedmodel(network, FLAGS.out, pixel_range=config["pixel_range"],
                                 metadata={"architecture": config["model"], "dataset": config.get("dataset"),
                                           "model_kwargs": dict(config.get("model_kwargs") or {}),
                                           "checkpoint": weights})
    print(f"Exported {weights} to {FLAGS.out}")


if __name__ == "__main__":
    flags.mark_flags_as_required(["checkpoint", "out"])
    app.run(main)
