"""Issue 16 §3 (+ §2's report line): an evaluation state is resumed only by the run it belongs to,
a corrupt one says "delete it", an unwritable --out_dir is refused before the evaluation, and
eval_robustness.py never replaces another run's reports without saying so."""

import json
import os
import shutil

import pytest

from tests import testing
from tfadv import attacks, evaluation

SCRIPT = "scripts/eval_robustness.py"
STATE = "eval_state.npz"


def _eval(out_dir, *switches, model, check=True, **overrides):
    """eval_robustness.py on ``model``: clean + FGSM on 40 digits, 2 batches; ``out_dir`` None: the
    default one; ``overrides`` replace flags (``limit=60``)."""
    flags = {"eps": 25.5, "attacks": "clean,fgsm", "limit": 40, "batch_size": 20, **overrides}
    if out_dir is not None:
        flags["out_dir"] = out_dir
    args = [f"--model_path={model}", *(f"--{k}={v}" for k, v in flags.items()), *switches]
    return testing.run_python(args, script=SCRIPT, check=check)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two digits CNNs of the same architecture, other weights, exported as tfadv SavedModels."""
    from tfadv.export import export_savedmodel

    root = tmp_path_factory.mktemp("models")
    paths = []
    for name, network in (("trained", testing.trained_digits_model()),
                          ("other", testing.tiny_cnn(seed=1))):
        paths.append(export_savedmodel(network, str(root / name), pixel_range="[0,1]",
                                       metadata={"dataset": "digits", "architecture": "tiny_cnn"}))
    return paths


@pytest.fixture(scope="module")
def finished(models, tmp_path_factory):
    """An --out_dir holding the finished --resume state (and reports) of the trained model."""
    out = tmp_path_factory.mktemp("finished")
    _eval(str(out), "--resume", model=models[0])
    assert os.path.exists(out / STATE)
    return out


def _refused_resume(finished, tmp_path, model, **overrides):
    """Resumes a copy of ``finished`` with ``overrides``; returns (stderr, state path) of the refusal."""
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    proc = _eval(str(out), "--resume", model=model, check=False, **overrides)
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "| Acc.(%)" not in proc.stdout  # no numbers printed from the old state
    state = str(out / STATE)
    assert f"Received: {state!r}." in proc.stderr, proc.stderr[-3000:]
    return proc.stderr, state


def test_resume_refuses_the_state_of_another_model(models, finished, tmp_path):
    err, _ = _refused_resume(finished, tmp_path, models[1])
    assert "different configuration (model: " in err, err[-3000:]


def test_resume_refuses_the_state_of_another_limit(models, finished, tmp_path):
    err, _ = _refused_resume(finished, tmp_path, models[0], limit=60)
    assert "limit: 40 in the file, 60 now" in err and "num_examples: 40 in the file, 60 now" in err


def test_resume_refuses_the_state_of_another_split(models, finished, tmp_path):
    err, _ = _refused_resume(finished, tmp_path, models[0], split="train")
    assert 'split: "test" in the file, "train" now' in err, err[-3000:]


def test_truncated_state_says_delete_it(models, finished, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    data = (out / STATE).read_bytes()
    (out / STATE).write_bytes(data[:len(data) // 2])
    proc = _eval(str(out), "--resume", model=models[0], check=False)
    assert proc.returncode != 0
    assert "Corrupt evaluation state file" in proc.stderr and "delete it" in proc.stderr
    assert f"Received: {str(out / STATE)!r}." in proc.stderr, proc.stderr[-3000:]


def _unwritable_dir(tmp_path):
    """A directory this process cannot write in: a read-only one, or, as root (whom permissions do
    not stop), a path below a regular file."""
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        (read_only / "probe").write_text("written")
    except OSError:
        return str(read_only)
    (tmp_path / "a_file").write_text("not a directory")
    return str(tmp_path / "a_file" / "reports")


def test_unwritable_out_dir_is_refused_before_the_evaluation(models, tmp_path):
    out = _unwritable_dir(tmp_path)
    proc = _eval(out, model=models[0], check=False)
    assert proc.returncode != 0
    assert "Evaluating" not in proc.stdout  # refused before the data and the attacks
    assert "Cannot write reports" in proc.stderr and f"Received: {out!r}." in proc.stderr, \
        proc.stderr[-3000:]


def test_default_out_dir_keeps_the_training_runs_reports(models, tmp_path):
    run = tmp_path / "run"  # a run directory: run_config.json, savedmodel/, the training's reports
    shutil.copytree(models[0], run / "savedmodel")
    (run / "run_config.json").write_text(json.dumps({"model": "tiny_cnn", "dataset": "digits",
                                                     "pixel_range": "[0,1]", "num_classes": 10}))
    training = {"robustness.md": "| Acc.(%) | clean |\n|---|---|\n| training | 99.00 |\n",
                "robustness.json": json.dumps({"accuracy": {"clean": 99.0}})}
    for name, text in training.items():
        (run / name).write_text(text)
    model = str(run / "savedmodel")

    def unchanged():
        return all((run / name).read_text() == text for name, text in training.items())

    proc = _eval(None, model=model)
    assert unchanged()
    written = sorted(run.glob("eval/*/robustness.json"))
    assert len(written) == 1 and f"Wrote {written[0].parent / 'robustness.md'}" in proc.stderr
    # An --out_dir holding another run's reports is refused, naming them, and left as it was ...
    proc = _eval(str(run), model=model, check=False)
    assert proc.returncode != 0 and unchanged()
    assert str(run / "robustness.json") in proc.stderr and "--overwrite" in proc.stderr
    assert f"Received: {str(run)!r}." in proc.stderr, proc.stderr[-3000:]
    # ... and replaced with --overwrite, saying so.
    proc = _eval(str(run), "--overwrite", model=model)
    assert f"Replacing {run / 'robustness.md'}" in proc.stderr and not unchanged()


def test_api_resume_refuses_the_state_of_a_model_with_other_weights(tmp_path):
    _, _, x, y = testing.digits_split(num_test=40)
    data = [(x[:20], y[:20]), (x[20:], y[20:])]
    specs = {"clean": attacks.get("noop")}
    state = str(tmp_path / "state.npz")
    evaluation.evaluate(testing.tiny_cnn(seed=0), data, specs, pixel_range="[0,1]", progress=None,
                        state_path=state)
    with pytest.raises(ValueError, match=r"different configuration \(model: .*Received: '.*state\.npz'"):
        evaluation.evaluate(testing.tiny_cnn(seed=1), data, specs, pixel_range="[0,1]",
                            progress=None, state_path=state)
