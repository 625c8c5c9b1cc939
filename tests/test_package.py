"""Packaging (docs/design.md, "Packaging"): tfadv is one installed package; the repository's models/
folder is tfadv.models, never a top-level ``models`` that a user's own folder could shadow; ``import
tfadv`` names the extra to add when TensorFlow is missing; ``tfadv.__version__`` is pyproject's."""

import importlib
import os
import subprocess
import sys
import sysconfig

import pytest

import tfadv
from tests import testing

ROOT = testing.REPO_ROOT

# Run from a folder whose own models/ package raises when imported: tfadv must never import it.
SHADOWED = """
import os, sys
import numpy as np
import tfadv
from tfadv import checkpoints, experiment

network = tfadv.models.build("digits_cnn", num_classes=10, input_shape=(8, 8, 1))
cfg = experiment.TrainConfig(
    dataset="digits", model="digits_cnn", eps=25.5, step_size=25.5, num_steps=1, epochs=1,
    batch_size=16, train_limit=32, val_limit=0, eval_limit=16, eval_attacks="clean",
    verbose=0, logdir=os.path.abspath("run")).validate()
experiment.train(cfg, defense="madry")
restored, config, _ = checkpoints.restore_network("run")
x = np.random.RandomState(0).rand(2, 8, 8, 1).astype("float32")
assert restored(x).shape == (2, 10) and config["model"] == "digits_cnn"
assert "models" not in sys.modules, sys.modules["models"]
print("tfadv.models from", os.path.dirname(tfadv.models.__file__))
"""


def test_a_users_own_models_folder_does_not_shadow_tfadv_models(tmp_path):
    os.makedirs(tmp_path / "models")
    (tmp_path / "models" / "__init__.py").write_text(
        'raise ImportError("the user\'s own models package was imported")\n')
    proc = testing.run_python(code=SHADOWED, cwd=str(tmp_path), timeout=600)
    folder = proc.stdout.strip().splitlines()[-1].rpartition(" ")[2]
    assert os.path.realpath(folder) == os.path.join(os.path.realpath(ROOT), "models")


def test_tfadv_models_is_the_repositorys_models_folder():
    models = importlib.import_module("tfadv.models")
    assert tfadv.models is models and models.__name__ == "tfadv.models"
    assert os.path.realpath(os.path.dirname(models.__file__)) == \
        os.path.realpath(os.path.join(ROOT, "models"))
    assert "digits_cnn" in models.names()


def test_import_tfadv_exposes_its_subpackages():
    names = dir(tfadv)
    for name in ("attacks", "cli", "data", "defenses", "evaluation", "models", "ranges"):
        assert name in names
        assert getattr(tfadv, name) is importlib.import_module(f"tfadv.{name}")
    with pytest.raises(AttributeError, match="Received: 'no_such_module'"):
        tfadv.no_such_module  # noqa: B018


def _pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def test_version_is_the_installed_distributions_and_pyprojects():
    from importlib import metadata

    project = _pyproject()["project"]
    try:
        installed = metadata.version("tfadv")
    except metadata.PackageNotFoundError:
        pytest.skip("tfadv is not installed (pip install -e .)")
    assert tfadv.__version__ == installed == project["version"]


def test_only_tfadv_is_packaged():
    config = _pyproject()
    assert config["tool"]["setuptools"]["packages"]["find"]["include"] == ["tfadv", "tfadv.*"]
    assert "pytest" not in config.get("tool", {})  # pytest reads setup.cfg's [tool:pytest]
    assert not os.path.exists(os.path.join(ROOT, "setup.py"))


def test_import_tfadv_without_tensorflow_says_which_extra_to_add():
    code = "import sys\nsys.modules['tensorflow'] = None  # as if not installed\nimport tfadv\n"
    proc = testing.run_python(code=code, check=False, timeout=120)
    assert proc.returncode != 0
    assert "ImportError" in proc.stderr
    assert 'pip install "tfadv[cpu]"' in proc.stderr and 'pip install "tfadv[gpu]"' in proc.stderr


@pytest.mark.slow
def test_a_wheel_install_has_the_commands_and_no_top_level_models(tmp_path):
    """``pip install .`` (not editable) into a fresh virtual environment that borrows this one's
    third-party packages: from outside the repository the commands run, ``tfadv.models`` imports
    from site-packages and no top-level ``models`` exists."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    with open(os.path.join(site, "borrowed.pth"), "w", encoding="utf-8") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")  # TensorFlow, Keras, ... (not tfadv)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    install = subprocess.run([python, "-m", "pip", "install", "--no-deps", "--quiet", ROOT],
                             capture_output=True, text=True, env=env, timeout=600)
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-3000:]
    sources = {n for n in os.listdir(os.path.join(ROOT, "models")) if n.endswith(".py")}
    assert sources <= set(os.listdir(os.path.join(site, "tfadv", "models")))
    assert not os.path.exists(os.path.join(site, "models"))

    def run(*args):
        return subprocess.run(args, capture_output=True, text=True, env=env, cwd=str(tmp_path),
                              timeout=300)

    for command, first_line in (("tfadv-train-madry", "Madry et al. PGD adversarial training"),
                                ("tfadv-eval", "Robustness evaluation of a SavedModel"),
                                ("tfadv-export", "Exports a training checkpoint")):
        proc = run(str(venv / "bin" / command), "--help")
        assert proc.stdout.startswith(first_line), proc.stdout[:500] + proc.stderr[-2000:]
    proc = run(python, "-c", "import importlib.util, tfadv, tfadv.models\n"
                             "assert importlib.util.find_spec('models') is None\n"
                             "print(tfadv.__version__, tfadv.models.__file__, tfadv.models.names())")
    assert proc.returncode == 0, proc.stderr[-3000:]
    version, path, names = proc.stdout.strip().splitlines()[-1].split(" ", 2)
    assert version == _pyproject()["project"]["version"]
    assert path.startswith(site) and "'digits_cnn'" in names
