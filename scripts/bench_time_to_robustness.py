"""Time to robustness: every defense trained under the same training-time budget, its PGD-20
accuracy on a fixed test slice logged against training seconds (issue 20, item 5).

    python scripts/bench_time_to_robustness.py --datasets=mnist,cifar10 --budget=300 \
        --out_dir=runs/time_to_robustness
    python scripts/bench_time_to_robustness.py --datasets=digits --budget=30 --defenses=madry,bat
    python scripts/bench_time_to_robustness.py --datasets=mnist --budget=400 \
        --train_flag=--init_checkpoint=runs/mnist_natural --train_flag=--eps_warmup_epochs=1

Each (dataset, defense) pair runs the defense's own training command (``scripts/train_<defense>.py``;
``madry_awp``: Madry's with AWP at the release's AT-AWP γ, ``DEFENSES`` below; its paper recipe's
attack for the dataset) in a process of its own, one after the other, on the
same network, optimizer, constant learning rate, batch, eps and ``--epochs`` (``DATASETS``
below; the epochs set the length of the schedules that count them, Dynamic's and Fast AT's), with
``--time_budget`` (training stops after that many *training* seconds - by default CPU seconds of
the training process (``--clock=cpu``), which other jobs on a shared machine barely change, less
validation and the checks - or after the epochs, whichever comes first) and
``--track_every`` (``clean,pgd-20`` on the first ``--track_examples`` test images every that many
optimizer steps, written to ``RUN/robustness_over_time.json``, :mod:`tfadv.evaluation.tracking`).
Printed and written to ``OUT_DIR/time_to_robustness_<datasets>.md``/``.json``: for each dataset a table of
the training seconds each defense needs to reach a level of PGD-20 accuracy (``--levels``,
default: 50%, 80% and 100% of the best PGD-20 accuracy the Madry run reached), its final clean and
PGD-20 accuracy and its optimizer steps; ``OUT_DIR/<dataset>_pgd20.png`` draws one curve per
defense. ``--train_flag`` (repeatable) adds one flag to every training command, e.g. a shared
natural start and an eps warm-up, without which PGD training on MNIST at eps 0.3 stays at the
constant predictor for epochs (docs/results.md); a flag the benchmark sets itself is refused. A
run directory that exists is resumed by its training command (same flags) or refused by it
(other flags; ``--overwrite`` moves it aside), never silently reused for other settings.
The processes run one at a time, but the machine's other load is not controlled: on a shared
machine compare the curves of one run only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from absl import app, flags  # noqa: E402

# Per dataset: the --dataset value and the flags every defense shares (network, optimizer, batch,
# eps, evaluation step). Sizes are pixel levels out of 255; eps 0.3 on MNIST, 8/255 on CIFAR-10.
DATASETS = {
    "digits": ("digits", ["--eps=25.5", "--eval_step_size=3.1875"]),
    "mnist": ("npz:../shared/data/mnist_subset.npz",
              ["--model=madry_mnist_cnn", "--model_kwargs=capacity=8", "--eps=76.5",
               "--batch_size=100", "--optimizer=adam", "--lr=1e-3", "--eval_step_size=9.5625"]),
    "cifar10": ("npz:../shared/data/cifar10_subset.npz",
                ["--model=resnet20_cifar", "--eps=8", "--batch_size=128", "--optimizer=sgd",
                 "--lr=0.05", "--momentum=0.9", "--weight_decay=2e-4", "--eval_step_size=2"]),
}
# Per defense: its training command, scripts/train_<script>.py, and whether it adds AWP (an option
# of Madry's command, at the release's AT-AWP gamma: tfadv/recipes/awp.py, RELEASE).
DEFENSES = {"natural": ("natural", False), "madry": ("madry", False), "bat": ("bat", False),
            "trades": ("trades", False), "dynamic": ("dynamic", False), "fast": ("fast", False),
            "mart": ("mart", False), "free": ("free", False), "madry_awp": ("madry", True)}
TRACKED = "PGD-20"

flags.DEFINE_list("datasets", ["mnist", "cifar10"], "Subset of " + ", ".join(DATASETS))
flags.DEFINE_list("defenses", ["natural", "madry", "bat", "trades", "dynamic"],
                  "Training commands to compare, a subset of " + ", ".join(DEFENSES) +
                  " (each scripts/train_<name>.py; madry_awp: train_madry.py with AWP at the "
                  "release's AT-AWP gamma).")
flags.DEFINE_string("mnist_dataset", None, "--dataset of 'mnist' (default: the shared subset).")
flags.DEFINE_string("cifar10_dataset", None, "--dataset of 'cifar10' (default: the shared subset).")
flags.DEFINE_float("budget", 300.0, "Training seconds per defense (--time_budget).")
flags.DEFINE_enum("clock", "cpu", ["cpu", "wall"], "--time_clock of every run: the process's "
                  "CPU seconds (default; fair on a shared machine) or wall time.")
flags.DEFINE_integer("epochs", 10, "--epochs of every run: the length of the schedules that "
                     "count epochs (Dynamic's FOSC schedule, Fast AT's cyclic LR); training ends "
                     "at the budget or after these epochs, whichever comes first.")
flags.DEFINE_integer("track_every", 20, "Optimizer steps between PGD-20 checks.")
flags.DEFINE_integer("track_examples", 200, "Test images of each check.")
flags.DEFINE_list("levels", [], "PGD-20 accuracies (%) of the table (default: 50/80/100% of the "
                  "best Madry reached).")
flags.DEFINE_string("out_dir", "runs/time_to_robustness", "Run directories and the report.")
flags.DEFINE_bool("overwrite", False, "Pass --overwrite to the training commands.")
flags.DEFINE_integer("seed", 0, "Seed of every run.")
flags.DEFINE_multi_string("train_flag", [], "One more flag for every training command, as it "
                          "would be written there (repeatable), e.g. "
                          "--train_flag=--eps_warmup_epochs=1.")
FLAGS = flags.FLAGS


def check_flags():
    """Every argument checked before anything runs or is written."""
    for name, known in (("datasets", DATASETS), ("defenses", DEFENSES)):
        unknown = [v for v in FLAGS[name].value if v not in known]
        if unknown or not FLAGS[name].value:
            raise app.UsageError(f"--{name} must be a non-empty subset of {list(known)}. "
                                 f"Received: {name}={','.join(FLAGS[name].value)}")
    if not FLAGS.budget > 0:
        raise app.UsageError(f"--budget must be > 0 seconds. Received: budget={FLAGS.budget}")
    for name in ("epochs", "track_every", "track_examples"):
        if FLAGS[name].value < 1:
            raise app.UsageError(f"--{name} must be >= 1. Received: {name}={FLAGS[name].value}")
    try:
        levels = [float(v) for v in FLAGS.levels]
    except ValueError:
        levels = [-1.0]
    if any(not 0 < v <= 100 for v in levels):
        raise app.UsageError("--levels must be accuracies in (0, 100]. "
                             f"Received: levels={','.join(FLAGS.levels)}")
    check_train_flags()
    return levels


def flag_name(arg: str):
    """``--name=value``/``--name``/``--noname`` -> name (None when ``arg`` is not a flag)."""
    if not arg.startswith("--") or len(arg) < 3:
        return None
    name = arg[2:].split("=", 1)[0]
    return name if name.replace("_", "").isalnum() else None


def check_train_flags():
    """--train_flag may not set a flag the benchmark itself passes (benchmark_args, read from it,
    and --overwrite whether or not it is passed), so one run's settings are never two values of
    one flag."""
    owned = {"overwrite"}
    for dataset in FLAGS.datasets:
        for defense in FLAGS.defenses:
            owned.update(flag_name(a) for a in benchmark_args(dataset, defense))
    for arg in FLAGS.train_flag:
        name = flag_name(arg)
        if name is None:
            raise app.UsageError("--train_flag takes one training flag as written on its command "
                                 f"line (--name=value). Received: train_flag={arg}")
        if name in owned or (name.startswith("no") and name[2:] in owned):
            raise app.UsageError(f"--train_flag may not set --{name}: the benchmark sets it for "
                                 f"every run (its own flags: {', '.join(sorted(owned))}). "
                                 f"Received: train_flag={arg}")


def benchmark_args(dataset: str, defense: str) -> list:
    """The flags the benchmark passes to the training command of one pair (its run directory
    under --out_dir), before --train_flag's."""
    value, common = DATASETS[dataset]
    value = getattr(FLAGS, f"{dataset}_dataset", None) or value
    logdir = os.path.join(FLAGS.out_dir, dataset, defense)
    script, awp = DEFENSES[defense]
    if awp:
        from tfadv.recipes import awp as awp_recipe

        common = [*common, f"--awp_gamma={awp_recipe.RELEASE[script][0]:g}"]
    return [f"--dataset={value}", *common, f"--epochs={FLAGS.epochs}", "--lr_boundaries=",
            f"--time_budget={FLAGS.budget:g}", f"--time_clock={FLAGS.clock}",
            f"--track_every={FLAGS.track_every}",
            f"--track_examples={FLAGS.track_examples}", "--track_attacks=clean,pgd-20",
            "--val_limit=0", "--eval_attacks=clean", "--eval_limit=100", "--checkpoint_every=1",
            f"--seed={FLAGS.seed}", f"--logdir={logdir}", "--verbose=0",
            *(["--overwrite"] if FLAGS.overwrite else [])]


def command(dataset: str, defense: str) -> list:
    """The training command of one pair."""
    return [sys.executable, os.path.join(REPO, "scripts", f"train_{DEFENSES[defense][0]}.py"),
            *benchmark_args(dataset, defense), *FLAGS.train_flag]


def summarize(records_by_defense: dict, levels: list) -> tuple:
    """(levels used, rows): per defense the seconds to reach each level, final accuracies."""
    from tfadv.evaluation import tracking

    if not levels:
        madry = records_by_defense.get("madry") or []
        best = max((r["accuracy"][TRACKED] for r in madry), default=0.0)
        # Unrounded: 100% of the best is reached by the Madry run itself.
        levels = [best * f for f in (0.5, 0.8, 1.0)] if best > 0 else []
    rows = []
    for defense, records in records_by_defense.items():
        last = records[-1] if records else None
        rows.append({"defense": defense,
                     "to_level": {f"{lv:.2f}": tracking.time_to_reach(records, TRACKED, lv)
                                  for lv in levels},
                     "final_clean": last["accuracy"]["clean"] if last else None,
                     "final_pgd20": last["accuracy"][TRACKED] if last else None,
                     "best_pgd20": max((r["accuracy"][TRACKED] for r in records), default=None),
                     "steps": last["step"] if last else None,
                     "train_seconds": last["train_seconds"] if last else None})
    return levels, rows


def markdown(dataset: str, levels: list, rows: list) -> str:
    def num(v, fmt):
        return "not reached" if v is None else format(v, fmt)

    head = ["defense", *[f"s to PGD-20 >= {lv:.2f}%" for lv in levels], "final clean %",
            "final PGD-20 %", "best PGD-20 %", "steps", "training s"]
    lines = [f"### {dataset}", "", "| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for r in rows:
        cells = [r["defense"], *[num(r["to_level"][f"{lv:.2f}"], ".0f") for lv in levels],
                 num(r["final_clean"], ".1f"), num(r["final_pgd20"], ".1f"),
                 num(r["best_pgd20"], ".1f"), num(r["steps"], "d"), num(r["train_seconds"], ".0f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments. Received: {argv[1:]!r}.")
    levels = check_flags()
    from tfadv import atomic
    from tfadv.evaluation import plots

    report, data = [f"# Time to robustness: {FLAGS.budget:g} training seconds ({FLAGS.clock} "
                    "clock) per defense, "
                    f"PGD-20 on {FLAGS.track_examples} test images every {FLAGS.track_every} "
                    f"steps"], {}
    if FLAGS.train_flag:
        report.append("Every training command also had: " + " ".join(FLAGS.train_flag))
    for dataset in FLAGS.datasets:
        records = {}
        for defense in FLAGS.defenses:
            cmd = command(dataset, defense)
            print("$ " + " ".join(cmd[1:]), flush=True)
            proc = subprocess.run(cmd, cwd=os.getcwd(), check=False)
            if proc.returncode != 0:
                raise SystemExit(f"{defense} on {dataset} failed (exit {proc.returncode}); "
                                 "nothing of it is reported.")
            log = os.path.join(FLAGS.out_dir, dataset, defense, "robustness_over_time.json")
            records[defense] = atomic.read_json(log, missing="the tracker's log")["records"]
        used, rows = summarize(records, levels)
        plots.curves({d: ([r["train_seconds"] for r in recs],
                          [r["accuracy"][TRACKED] for r in recs]) for d, recs in records.items()},
                     os.path.join(FLAGS.out_dir, f"{dataset}_pgd20.png"),
                     title=f"{dataset}: PGD-20 accuracy against training time",
                     xlabel=f"training seconds ({FLAGS.clock} clock)", levels=used)
        report.append(markdown(dataset, used, rows))
        data[dataset] = {"levels": used, "rows": rows, "records": records}
        print(report[-1], flush=True)
    # One report per set of datasets: a run on other datasets leaves the others' reports alone (a
    # rerun with the same flags resumes the same runs and writes the same report again; other
    # flags are refused by the training commands unless --overwrite).
    stem = os.path.join(FLAGS.out_dir, "time_to_robustness_" + "_".join(FLAGS.datasets))
    atomic.write_text(stem + ".md", "\n\n".join(report) + "\n")
    atomic.write_json(stem + ".json",
                      {"budget": FLAGS.budget, "clock": FLAGS.clock, "track_every": FLAGS.track_every,
                       "track_examples": FLAGS.track_examples, "train_flags": FLAGS.train_flag,
                       "datasets": data})


if __name__ == "__main__":
    app.run(main)
