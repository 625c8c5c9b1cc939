"""tfadv.interop.aa_comparison: torchattacks' pass counting, the targets and the table (issue 20).
Skipped without the crosscheck extra."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tfadv.interop import aa_comparison  # noqa: E402
from tests.testing import run_script  # noqa: E402


def test_counting_module_counts_forward_and_input_gradient_passes_per_example():
    net = aa_comparison.counting_module(torch.nn.Sequential(torch.nn.Flatten(),
                                                            torch.nn.Linear(12, 3)))
    with torch.no_grad():
        net(torch.zeros(5, 3, 2, 2))
    x = torch.zeros(4, 3, 2, 2, requires_grad=True)
    logits = net(x)
    for k in range(3):  # a jacobian row by row: three backward passes through the input
        torch.autograd.grad(logits[:, k].sum(), x, retain_graph=True)
    assert net.passes == {"forward": 9, "backward": 12}


def _rows(aa, fast, ta):
    rows = {}
    for label, (seconds, forward, backward, acc) in zip(aa_comparison.EVALUATIONS, (aa, fast, ta)):
        rows[label] = {"seconds": seconds, "forward": forward, "backward": backward,
                       "robust_acc": acc, "fooled_only_by": {}}
    labels = aa_comparison.EVALUATIONS
    for label in labels:
        rows[label]["fooled_only_by"] = {other: 0 for other in labels if other != label}
    return rows


def test_targets_are_the_issues_inequalities():
    met = aa_comparison.targets(_rows((100.0, 1000, 500, 40.0), (30.0, 200, 100, 40.3),
                                      (120.0, 900, 400, 40.0)))
    assert all(met.values())
    missed = aa_comparison.targets(_rows((100.0, 1000, 500, 40.0), (40.0, 200, 101, 40.31),
                                         (90.0, 900, 400, 40.0)))
    assert not any(missed.values())
    text = aa_comparison.table("digits", 10, _rows((100.0, 1000, 500, 40.0),
                                                   (25.0, 200, 100, 40.0), (50.0, 9, 9, 40.0)))
    assert "| digits | 10 | tfadv autoattack-fast | 25.0 | 200 | 100 | 40.00 | 4.00x | 5.00x |" in text


def test_bench_evaluation_compare_refuses_unknown_models():
    proc = run_script("bench_evaluation.py", "--compare=imagenet", check=False)
    assert proc.returncode != 0 and "Received: --compare=imagenet" in proc.stderr
    # a trained model for a model that is not compared, or without a path: refused first
    for value in ("cifar=runs/x", "digits="):
        proc = run_script("bench_evaluation.py", "--compare=digits",
                          f"--compare_model_path={value}", check=False)
        assert proc.returncode != 0 and f"Received: --compare_model_path={value}" in proc.stderr
    assert np.all([name in proc.stderr for name in aa_comparison.MODELS])
    # an eps for a model that is not compared, not a number, or outside (0, 255]
    for value in ("cifar=8", "digits=big", "digits=0", "digits=300"):
        proc = run_script("bench_evaluation.py", "--compare=digits", f"--compare_eps={value}",
                          check=False)
        assert proc.returncode != 0 and f"Received: --compare_eps={value}" in proc.stderr
