"""Issue 16 sec. 2: run directories lose nothing and relabel nothing.

A finished digits run (trained once per module) is copied for each test; every refused command
must leave its files byte for byte as they were, and a run directory, its checkpoint index and its
SavedModel must agree on the final weights.
"""

import hashlib
import io
import json
import os
import re
import shutil

import numpy as np
import pytest

from tests import testing
from tfadv import checkpoints, experiment, export, loading

EXPORT_SCRIPT = os.path.join(testing.REPO_ROOT, "scripts", "export_savedmodel.py")


def _cfg(logdir, **kw):
    base = dict(dataset="digits", model="digits_cnn", eps=25.5, step_size=25.5, num_steps=1, epochs=2,
                batch_size=16, train_limit=32, val_limit=0, eval_limit=16, eval_attacks="clean",
                verbose=0, logdir=str(logdir))
    return experiment.TrainConfig(**{**base, **kw}).validate()


def _train(cfg, **kw):
    out = io.StringIO()
    experiment.train(cfg, stream=out, **{"defense": "madry", **kw})
    return out.getvalue()


def _files(directory):
    """{relative path: sha256} of every file under ``directory``."""
    out = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
    return out


def _logits_agree(run_dir):
    """The weights the run directory evaluates give the logits of its SavedModel."""
    network, info = loading.load_for_evaluation(run_dir)
    saved = export.load_savedmodel(os.path.join(run_dir, "savedmodel"))
    x = testing.digits_split(num_train=16)[0]
    return np.allclose(network(x, training=False), saved(x), atol=1e-5)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("finished") / "run"
    _train(_cfg(logdir))
    return logdir


@pytest.fixture
def run_dir(finished, tmp_path):
    """A private copy of the finished run, and the fingerprint of its files."""
    logdir = tmp_path / "run"
    shutil.copytree(finished, logdir)
    return str(logdir), _files(logdir)


def test_export_refuses_an_out_directory_that_is_not_a_savedmodel(run_dir):
    logdir, before = run_dir
    proc = testing.run_python([f"--checkpoint={logdir}", f"--out={logdir}"], script=EXPORT_SCRIPT,
                              check=False)
    assert proc.returncode != 0
    assert f"Received: --out={logdir!r}." in proc.stderr + proc.stdout, proc.stderr[-2000:]
    assert _files(logdir) == before


def test_export_replaces_a_savedmodel_only_with_overwrite(run_dir):
    logdir, before = run_dir
    target = os.path.join(logdir, "savedmodel")
    refused = testing.run_python([f"--checkpoint={logdir}", f"--out={target}"], script=EXPORT_SCRIPT,
                                 check=False)
    assert refused.returncode != 0 and "--overwrite" in refused.stderr + refused.stdout
    assert _files(logdir) == before
    testing.run_python([f"--checkpoint={logdir}", f"--out={target}", "--overwrite"],
                       script=EXPORT_SCRIPT)
    with open(os.path.join(target, export.METADATA_FILE)) as f:
        assert os.path.basename(json.load(f)["checkpoint"]) == "ckpt-0002.weights.h5"


def test_noresume_into_a_run_directory_is_refused(run_dir):
    logdir, before = run_dir
    expected = rf"--noresume.*--overwrite.*Received: --logdir={re.escape(repr(logdir))}\."
    with pytest.raises(ValueError, match=expected):
        _train(_cfg(logdir, epochs=1, resume=False))
    assert _files(logdir) == before


def test_overwrite_moves_the_old_run_aside_and_says_so(run_dir):
    logdir, before = run_dir
    out = _train(_cfg(logdir, epochs=1, resume=False, overwrite=True))
    moved = [p for p in os.listdir(os.path.dirname(logdir)) if p.startswith("run.replaced-")]
    assert len(moved) == 1 and _files(os.path.join(os.path.dirname(logdir), moved[0])) == before
    assert f"to {os.path.join(os.path.dirname(logdir), moved[0])}" in out
    assert os.path.basename(checkpoints.resolve(logdir)[0]) == "ckpt-0001.weights.h5"
    assert _logits_agree(logdir)


def test_rotation_keeps_the_checkpoint_the_index_names(tmp_path):
    network = testing.tiny_cnn()
    directory = str(tmp_path / checkpoints.CHECKPOINT_DIR)
    for epoch in (3, 4, 5):  # an older run's files
        checkpoints.save(directory, network, epoch)
    checkpoints.AtomicCheckpoint(str(tmp_path), network, keep=3).on_epoch_end(0)
    assert os.path.basename(checkpoints.resolve(str(tmp_path))[0]) == "ckpt-0001.weights.h5"


def test_an_index_naming_a_missing_checkpoint_is_an_error(run_dir):
    logdir, _ = run_dir
    os.remove(os.path.join(logdir, "checkpoints", "ckpt-0002.weights.h5"))
    index = os.path.join(logdir, "checkpoints", checkpoints.CHECKPOINT_INDEX)
    expected = rf"'ckpt-0002.weights.h5'.*missing.*Received: {re.escape(repr(index))}\."
    with pytest.raises(ValueError, match=expected):
        loading.load_for_evaluation(logdir)


@pytest.mark.parametrize("config,defense,expected", [
    ({}, dict(defense="trades", defense_kwargs={"beta": 6.0}), "defense 'madry' != 'trades'"),
    (dict(eps=12.75), {}, "eps 25.5 != 12.75"),
])
def test_a_different_run_into_a_run_directory_is_refused(run_dir, config, defense, expected):
    logdir, before = run_dir
    with pytest.raises(ValueError, match=rf"differs: {expected}.*new --logdir, or --overwrite"):
        _train(_cfg(logdir, **config), **defense)
    assert _files(logdir) == before


@pytest.mark.parametrize("bad", [dict(model="digits_cn"), dict(step_size=0.0),
                                 dict(eval_attacks="pgd-x")])
def test_a_bad_argument_writes_nothing(run_dir, bad):
    logdir, before = run_dir
    with pytest.raises(ValueError, match="Received"):
        _train(_cfg(logdir, **bad))
    assert _files(logdir) == before
    assert _logits_agree(logdir)  # the run directory still evaluates


def test_a_non_run_directory_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"holds no tfadv run.*notes.txt.*Received: --logdir="):
        _train(_cfg(tmp_path))
    assert os.listdir(tmp_path) == ["notes.txt"]


def test_the_final_weights_are_checkpointed_whatever_checkpoint_every(tmp_path):
    logdir = str(tmp_path / "run")
    _train(_cfg(logdir, epochs=3, checkpoint_every=2))
    assert os.path.basename(checkpoints.resolve(logdir)[0]) == "ckpt-0003.weights.h5"
    assert _logits_agree(logdir)


def _lose_final_checkpoint(logdir):
    """The state of a run killed after its last epoch's backup, before its checkpoint and export
    (or of a run whose epochs are no multiple of its checkpoint_every, before the fix)."""
    directory = os.path.join(logdir, "checkpoints")
    os.remove(os.path.join(directory, "ckpt-0002.weights.h5"))
    with open(os.path.join(directory, checkpoints.CHECKPOINT_INDEX), "w") as f:
        json.dump({"latest": "ckpt-0001.weights.h5", "epoch": 1}, f)


def test_a_run_directory_without_its_final_checkpoint_is_not_evaluated(run_dir):
    logdir, _ = run_dir
    _lose_final_checkpoint(logdir)
    with pytest.raises(ValueError, match=r"trained to epoch 2.*latest checkpoint is epoch 1.*Received"):
        loading.load_for_evaluation(logdir)


def test_a_kill_before_the_final_checkpoint_is_repaired_on_the_next_start(run_dir):
    logdir, _ = run_dir
    _lose_final_checkpoint(logdir)
    shutil.rmtree(os.path.join(logdir, "savedmodel"))
    _train(_cfg(logdir))
    assert os.path.basename(checkpoints.resolve(logdir)[0]) == "ckpt-0002.weights.h5"
    assert _logits_agree(logdir)


def test_stale_temporaries_are_removed_on_the_next_start(run_dir):
    logdir, _ = run_dir
    stale = [os.path.join(logdir, "checkpoints", ".tmp-k1ll3d-ckpt-0003.weights.h5"),
             os.path.join(logdir, ".tmp-k1ll3d-run_metadata.json")]
    for path in stale:
        open(path, "w").close()
    os.makedirs(os.path.join(logdir, ".savedmodel.tmp-k1ll3d", "variables"))
    out = _train(_cfg(logdir))
    assert "Removed 3 temporary file(s)" in out
    assert not any(os.path.exists(p) for p in stale)
    assert not os.path.exists(os.path.join(logdir, ".savedmodel.tmp-k1ll3d"))
