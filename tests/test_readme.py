"""The README's first two commands are what CI runs: keep them in step."""

import os
import re

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme_blocks():
    with open(os.path.join(REPO_ROOT, "README.md"), encoding="utf-8") as f:
        return re.findall(r"```bash\n(.*?)```", f.read(), flags=re.S)


def _ci_lines():
    with open(os.path.join(REPO_ROOT, ".ci", "run"), encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


def test_ci_installs_as_the_readme_says():
    install = _readme_blocks()[0].strip()
    steps = [s.strip() for s in install.split("&&")]
    assert steps[-1].startswith("python scripts/train_madry.py"), steps
    ci = _ci_lines()
    for step in steps[:-1]:  # venv, activate, pip install: all in CI, in order
        assert step in ci, f"CI does not run the README's install step {step!r}: {ci}"


def test_ci_runs_the_readme_test_command():
    test_command = _readme_blocks()[1].strip()
    assert _ci_lines()[-1] == test_command


def _python_blocks():
    with open(os.path.join(REPO_ROOT, "README.md"), encoding="utf-8") as f:
        return re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


@pytest.mark.slow
def test_the_python_quickstart_runs_as_written():
    from tests import testing

    (quickstart,) = _python_blocks()
    proc = testing.run_python(code=quickstart, timeout=600)
    table = [line for line in proc.stdout.splitlines() if line.startswith("| madry (quickstart)")]
    assert len(table) == 1, proc.stdout[-2000:]
    clean, autoattack, worst = (float(v) for v in table[0].strip("|").split("|")[1:])
    assert 0 <= worst == autoattack <= clean <= 100  # AutoAttack never beats the clean accuracy
