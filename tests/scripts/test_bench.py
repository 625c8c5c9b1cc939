"""Tiny smoke runs of scripts/bench_attacks.py and scripts/bench_training.py (issue 8).

The peers (cleverhans, ART, torchattacks) belong to the ``bench`` extra; whichever of them the
test interpreter lacks must come out as a "not installed" row, never as an error.
"""

import importlib.util
import json

import pytest

from tests.testing import run_script

PEERS = {"cleverhans.tf2": "cleverhans", "art": "art", "torchattacks": "torchattacks"}


def run_bench(name, *args):
    return run_script(name, *args).stdout


def installed(module):
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def test_bench_attacks_tiny(tmp_path):
    out = tmp_path / "bench_attacks.json"
    frameworks = ["tfadv", "cleverhans.tf2", "art"]
    stdout = run_bench("bench_attacks.py", "--model=digits_cnn", "--batch_size=2",
                        "--image_size=8", "--num_steps=2", "--repeats=1", "--warmup=1",
                        "--frameworks=" + ",".join(frameworks),
                        f"--json_out={out}")
    assert "| framework | attack | img/s | x own limit | x cleverhans.tf2 | status |" in stdout
    assert "tfadv PGD-2 / TF limit =" in stdout
    with open(out) as f:
        rows = json.load(f)["rows"]
    by = {(r["framework"], r["kind"]): r for r in rows}
    for kind in ("pgd", "fgsm"):
        row = by[("tfadv", kind)]
        assert row["status"] == "ok" and row["img_per_s"] > 0 and row["vs_own_limit"] > 0
    assert by[("TF limit", "limit")]["img_per_s"] > 0
    for fw in ("cleverhans.tf2", "art"):
        if installed(PEERS[fw]):
            assert by[(fw, "pgd")]["status"] == "ok"
        else:
            (row,) = [r for r in rows if r["framework"] == fw]
            assert row["status"].startswith("not installed") and row["img_per_s"] is None
            assert f"| {fw} | - | - | - | - | not installed" in stdout


@pytest.mark.slow
def test_bench_attacks_torch_twin_matches_keras(tmp_path):
    if not installed("torch"):
        stdout = run_bench("bench_attacks.py", "--batch_size=2", "--image_size=16",
                            "--num_steps=1", "--repeats=1", "--warmup=0",
                            "--frameworks=torchattacks")
        assert "| torchattacks | - | - | - | - | not installed" in stdout
        return
    out = tmp_path / "torch.json"
    stdout = run_bench("bench_attacks.py", "--batch_size=2", "--image_size=16", "--num_steps=1",
                        "--repeats=1", "--warmup=0", "--frameworks=torchattacks",
                        f"--json_out={out}")
    with open(out) as f:
        data = json.load(f)
    if not installed("torchattacks"):
        assert data["rows"][0]["status"].startswith("not installed")
        return
    (note,) = [n for n in data["notes"] if n.startswith("PyTorch twin")]
    assert float(note.rsplit(" ", 1)[1]) < 1e-3  # same network, same weights
    assert {r["kind"] for r in data["rows"] if r["status"] == "ok"} == {"limit", "pgd", "fgsm"}


def test_bench_training_tiny(tmp_path):
    out = tmp_path / "bench_training.json"
    stdout = run_bench("bench_training.py", "--model=digits_cnn", "--batch_size=4",
                        "--image_size=8", "--steps=1", "--repeats=1", "--warmup=1",
                        "--defenses=clean,bat_rmc_la", f"--json_out={out}")
    assert "| defense | s/step | x clean step | ideal (passes) |" in stdout
    with open(out) as f:
        data = json.load(f)
    rows = {r["defense"]: r for r in data["rows"]}
    assert rows["clean"]["ratio"] == 1.0 and rows["clean"]["peak_mib"] > 0
    # On a CPU each row's peak comes from a process of its own (issue 20, item 6), and the extra
    # column is that peak minus the clean row's, so the clean row's extra is exactly 0.
    assert data["memory"] == "process"
    assert "| peak RSS (MiB) | extra over clean (MiB) |" in stdout
    assert rows["clean"]["extra_mib"] == 0.0
    assert rows["bat_rmc_la"]["extra_mib"] == pytest.approx(
        rows["bat_rmc_la"]["peak_mib"] - rows["clean"]["peak_mib"])
    bat = rows["bat_rmc_la"]
    assert bat["status"] == "ok" and bat["ratio"] > 0 and bat["ideal"] > 2.0
    assert bat["passes"] == "2 fb + 1 f" and bat["target"] == 2.6


def test_bench_training_variants_tiny(tmp_path):
    out = tmp_path / "bench_training.json"
    stdout = run_bench("bench_training.py", "--model=digits_cnn", "--batch_size=4",
                        "--image_size=8", "--steps=1", "--repeats=1", "--warmup=1",
                        "--variants=fp32,bf16,fp32+xla", "--defenses=clean,madry_pgd7",
                        f"--json_out={out}")
    assert ("| defense | variant | s/step | x clean step | x fp32 (same defense) | "
            "ideal (passes) |") in stdout
    with open(out) as f:
        rows = {(r["variant"], r["defense"]): r for r in json.load(f)["rows"]}
    assert set(rows) == {(v, d) for v in ("fp32", "bf16", "fp32+xla")
                         for d in ("clean", "madry_pgd7")}
    for (variant, defense), row in rows.items():
        assert row["status"] == "ok", row
        assert f"| {defense} | {variant} | " in stdout
        assert row["vs_fp32"] > 0 and row["ratio"] > 0
    for defense in ("clean", "madry_pgd7"):
        assert rows[("fp32", defense)]["vs_fp32"] == 1.0
        assert rows[("bf16", defense)]["precision"] == "bf16"
        assert rows[("fp32+xla", defense)]["xla"] is True
    for variant in ("fp32", "bf16", "fp32+xla"):
        assert rows[(variant, "clean")]["ratio"] == 1.0  # the variant's own clean step
    madry = rows[("bf16", "madry_pgd7")]
    assert madry["vs_fp32"] == pytest.approx(
        madry["s_per_step"] / rows[("fp32", "madry_pgd7")]["s_per_step"])


def test_bench_training_unknown_variant_errors():
    proc = run_script("bench_training.py", "--variants=fp32,fp64", check=False, timeout=300)
    assert proc.returncode != 0
    assert "Unknown variants ['fp64']" in proc.stderr and "Received: variants=fp32,fp64" in \
        proc.stderr


def test_bench_training_memory_row_is_one_process_own_peak():
    """``--memory_row`` builds and steps only that row and prints its own peak RSS; a bad row
    name and ``--memory=gpu`` without a GPU are refused before anything runs."""
    proc = run_script("bench_training.py", "--model=digits_cnn", "--batch_size=4",
                      "--image_size=8", "--steps=1", "--warmup=1", "--memory_row=fp32/madry_pgd7")
    (line,) = [l for l in proc.stdout.splitlines() if l.startswith("MEMORY_ROW ")]
    row = json.loads(line[len("MEMORY_ROW "):])
    assert row["variant"] == "fp32" and row["defense"] == "madry_pgd7" and row["status"] == "ok"
    assert 100 < row["peak_mib"] < 64 * 1024
    bad = run_script("bench_training.py", "--memory_row=fp32/nope", check=False, timeout=300)
    assert bad.returncode != 0 and "Received: memory_row=fp32/nope" in bad.stderr
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        gpu = run_script("bench_training.py", "--memory=gpu", "--defenses=clean", check=False,
                         timeout=300)
        assert gpu.returncode != 0 and "--memory=gpu needs a GPU" in gpu.stderr


@pytest.mark.slow
def test_bench_training_every_defense_is_a_row(tmp_path):
    out = tmp_path / "bench_training.json"
    run_bench("bench_training.py", "--model=digits_cnn", "--batch_size=4", "--image_size=8",
               "--steps=1", "--repeats=1", "--warmup=1", f"--json_out={out}")
    with open(out) as f:
        rows = {r["defense"]: r for r in json.load(f)["rows"]}
    for name in ("clean", "madry_pgd7", "bat_rmc_la", "trades_k10", "dynamic", "l2lda"):
        assert rows[name]["status"] == "ok" and rows[name]["ratio"] > 0, rows[name]


def test_bench_evaluation_tiny_prints_ratios_and_equal_masks(tmp_path):
    out = tmp_path / "bench_evaluation.json"
    stdout = run_bench("bench_evaluation.py", "--devices=1,2", "--num_examples=3",
                       "--batch_size=3", "--n_iter=1", "--n_queries=2", "--repeats=1",
                       f"--json_out={out}")
    assert "| devices | images/s | vs 1 device(s) | same mask as 1 |" in stdout
    with open(out) as f:
        rows = json.load(f)["rows"]
    assert [r["devices"] for r in rows] == [1, 2] and rows[0]["ratio"] == 1.0
    assert all(r["same_mask"] and r["images_per_s"] > 0 and len(r["seconds"]) == 1 for r in rows)


def test_bench_evaluation_refuses_bad_device_counts():
    proc = run_script("bench_evaluation.py", "--devices=0,2", check=False)
    assert proc.returncode != 0 and "Received: ['0', '2']" in proc.stderr


def test_bench_time_to_robustness_refuses_bad_flags_before_running(tmp_path):
    out = tmp_path / "ttr"
    for args, message in ((["--defenses=madry,awesome"], "Received: defenses=madry,awesome"),
                          (["--levels=50,120"], "Received: levels=50,120"),
                          (["--budget=0"], "Received: budget=0"),
                          # a flag the benchmark sets for every run, or not a flag at all
                          (["--train_flag=--epochs=3"], "Received: train_flag=--epochs=3"),
                          (["--datasets=mnist", "--train_flag=--eps=8"],
                           "Received: train_flag=--eps=8"),
                          (["--train_flag=--nooverwrite"], "Received: train_flag=--nooverwrite"),
                          # madry_awp's gamma is the benchmark's (the release's AT-AWP value)
                          (["--defenses=madry,madry_awp", "--train_flag=--awp_gamma=0.005"],
                           "Received: train_flag=--awp_gamma=0.005"),
                          (["--train_flag=eps_warmup_epochs=1"],
                           "Received: train_flag=eps_warmup_epochs=1")):
        proc = run_script("bench_time_to_robustness.py", f"--out_dir={out}", *args, check=False,
                          timeout=300)
        assert proc.returncode != 0 and message in proc.stderr, proc.stderr[-500:]
    assert not out.exists()  # nothing written


def data_rows(out):
    with open(out / "time_to_robustness_digits.json") as f:
        return json.load(f)["datasets"]["digits"]["rows"]


@pytest.mark.slow
def test_bench_time_to_robustness_digits_tiny(tmp_path):
    """Two defenses on digits under a tiny budget: a curve per defense from 0 s, the table, the
    PNG, and the levels derived from the Madry run."""
    out = tmp_path / "ttr"
    stdout = run_bench("bench_time_to_robustness.py", "--datasets=digits",
                       "--defenses=natural,madry,madry_awp", "--budget=6", "--epochs=2",
                       "--track_every=15", "--track_examples=40", f"--out_dir={out}",
                       "--train_flag=--eps_warmup_epochs=0.5")
    assert "| defense | s to PGD-20 >=" in stdout
    gammas = {}
    for defense in ("natural", "madry", "madry_awp"):  # --train_flag reached every command
        with open(out / "digits" / defense / "run_metadata.json") as f:
            run_flags = json.load(f)["flags"]
        assert run_flags["eps_warmup_epochs"] == 0.5
        gammas[defense] = run_flags.get("awp_gamma")
    assert not gammas["madry"] and gammas["madry_awp"] == 0.01  # AWP only where named
    with open(out / "time_to_robustness_digits.json") as f:
        data = json.load(f)["datasets"]["digits"]
    assert set(data["records"]) == {"natural", "madry", "madry_awp"}
    for records in data["records"].values():
        assert records[0]["step"] == 0 and records[0]["train_seconds"] < 1.0
        seconds = [r["train_seconds"] for r in records]
        assert seconds == sorted(seconds)
    best = max(r["accuracy"]["PGD-20"] for r in data["records"]["madry"])
    if best > 0:
        assert data["levels"] == pytest.approx([best * f for f in (0.5, 0.8, 1.0)])
        madry = [r for r in data_rows(out) if r["defense"] == "madry"][0]
        assert madry["to_level"][f"{best:.2f}"] is not None  # the Madry run reaches its own best
    assert (out / "digits_pgd20.png").stat().st_size > 1000
    assert (out / "time_to_robustness_digits.md").exists()


def test_bench_attack_precision_tiny(tmp_path):
    """Attacks on a bf16 copy: the fp32 row is the reference (change 0, no disagreement), every
    row's accuracy is the fp32 model's on the attack's output, and a bad precision is refused."""
    from tests import testing

    path = tmp_path / "digits.keras"
    testing.trained_digits_model(epochs=2).save(path)
    out = tmp_path / "precision.json"
    stdout = run_bench("bench_attack_precision.py", f"--model_path={path}", "--dataset=digits",
                       "--num_examples=40", "--batch_size=20", "--eps=25.5",
                       "--attacks=fgsm,pgd-5", "--precisions=bf16", f"--json_out={out}")
    assert "| attack | precision | s | x fp32 |" in stdout
    with open(out) as f:
        rows = {(r["attack"], r["precision"]): r for r in json.load(f)["rows"]}
    assert set(rows) == {(a, p) for a in ("FGSM", "PGD-5") for p in ("fp32", "bf16")}
    for (attack, precision), row in rows.items():
        assert 0.0 <= row["robust_accuracy"] <= 100.0
        base = rows[(attack, "fp32")]
        assert row["delta_pp"] == pytest.approx(row["robust_accuracy"] - base["robust_accuracy"])
        # fooled only in one of the two: the accuracy change counted example by example
        assert row["only_fp32_fooled"] - row["only_this_fooled"] == round(
            row["delta_pp"] * 40 / 100)
        if precision == "fp32":
            assert row["vs_fp32"] == 1.0 and row["only_fp32_fooled"] == row["only_this_fooled"] == 0
    bad = run_script("bench_attack_precision.py", f"--model_path={path}", "--precisions=fp8",
                     check=False, timeout=300)
    assert bad.returncode != 0 and "Received: precisions=fp8" in bad.stderr
