"""Robustness evaluation of a SavedModel or checkpoint under a list of attacks.

    python scripts/eval_robustness.py --model_path=runs/madry_digits/savedmodel \
        --dataset=digits --eps=25.5 --attacks=clean,fgsm,pgd-40,cw-20

Attack list grammar (tfadv/evaluation/specs.py): clean, fgsm, pgd-K, cw-K,
pgd(steps=K,step=S,loss=ce|cw,restarts=R,start=uniform|gaussian|none,norm=linf|l2,eps=E,target=mc|ll|random).
Sizes are pixel levels out of 255. Prints a paper-style table (Acc.(%) per attack and the pointwise
worst case) and writes OUT_DIR/robustness.md and .json.
"""

import os
import sys

from absl import app, flags, logging

from tfadv import checkpoints as ckpt_lib
from tfadv import data as data_lib
from tfadv import evaluation as eval_lib
from tfadv import ranges as ranges_lib
from tfadv.loading import load_for_evaluation

flags.DEFINE_string("model_path", None, "SavedModel dir, run dir, checkpoints dir or .weights.h5.")
flags.DEFINE_string("dataset", None, "Dataset (default: the one recorded with the model).")
flags.DEFINE_string("data_dir", None, "tfds data directory.")
flags.DEFINE_string("split", "test", "Split to evaluate.")
flags.DEFINE_integer("limit", None, "Evaluate the first N examples only.")
flags.DEFINE_integer("batch_size", 200, "Evaluation batch size.")
flags.DEFINE_float("eps", 8.0, "Budget in pixel levels out of 255 (76.5 is MNIST's 0.3).")
flags.DEFINE_float("step_size", None, "Default PGD step in pixel levels (default 2.5*eps/steps).")
flags.DEFINE_string("attacks", "clean,fgsm,pgd-20,cw-20", "Comma-separated attack specs.")
flags.DEFINE_string("out_dir", None, "Where to write robustness.{md,json} (default: beside the model).")
flags.DEFINE_integer("seed", 0, "Seed of random starts.")
FLAGS = flags.FLAGS


def default_out_dir(model_path: str) -> str:
    """The run directory the model came from, else ``MODEL_PATH_eval`` beside a bare SavedModel."""
    path = os.path.abspath(model_path.rstrip("/"))
    for candidate in (path, os.path.dirname(path), os.path.dirname(os.path.dirname(path))):
        if os.path.isfile(os.path.join(candidate, ckpt_lib.RUN_CONFIG)):
            return candidate
    return path + "_eval"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments. Received: {argv[1:]!r}.")
    logging.set_verbosity(logging.WARNING)
    model, info = load_for_evaluation(FLAGS.model_path)
    dataset = FLAGS.dataset or info.get("dataset")
    if not dataset:
        raise app.UsageError("--dataset is required: the model does not record one.")
    eps = ranges_lib.check_pixel_size(FLAGS.eps, name="eps")
    specs = eval_lib.parse_list(FLAGS.attacks, eps=eps, pixel_range=info["pixel_range"],
                                step_size=FLAGS.step_size, seed=FLAGS.seed)
    ds, ds_info = data_lib.load(dataset, FLAGS.split, batch_size=FLAGS.batch_size,
                                pixel_range=info["pixel_range"], data_dir=FLAGS.data_dir,
                                limit=FLAGS.limit)
    if ds_info.num_classes != info["num_classes"]:
        raise ValueError(f"The model has {info['num_classes']} classes but {dataset} has "
                         f"{ds_info.num_classes}. Received: --dataset={dataset}.")
    print(f"Evaluating {info['source']} ({info['architecture']}) on {dataset}/{FLAGS.split} "
          f"({ds_info.num_examples} images), eps {eps:g}/255 of {info['pixel_range']}", flush=True)
    result = eval_lib.evaluate(model, ds, specs, pixel_range=info["pixel_range"],
                               num_examples=ds_info.num_examples)
    out_dir = FLAGS.out_dir or default_out_dir(FLAGS.model_path)
    meta = {"model_path": os.path.abspath(FLAGS.model_path), "dataset": dataset, "split": FLAGS.split,
            "threat_model": "Linf", "eps_pixels": eps, "pixel_range": info["pixel_range"],
            "architecture": info["architecture"],
            "attacks": {label: spec.params for label, spec in specs.items()}}
    eval_lib.write(result, out_dir, metadata=meta, row=info["architecture"])
    print(eval_lib.markdown_table(result, row=info["architecture"]))
    print()
    print(eval_lib.details_table(result))
    print(f"\nWrote {os.path.join(out_dir, 'robustness.md')} and robustness.json", file=sys.stderr)


if __name__ == "__main__":
    flags.mark_flag_as_required("model_path")
    app.run(main)
