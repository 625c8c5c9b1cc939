"""tfadv/evaluation/plots.py: the public PNG plots used outside the evaluation package."""

import numpy as np

from tfadv.evaluation import plots


def test_epoch_distributions_writes_a_png(tmp_path):
    rng = np.random.default_rng(6)
    by_epoch = {e: rng.exponential(0.05 / (e + 1), size=200) for e in range(9)}
    path = plots.epoch_distributions(by_epoch, str(tmp_path / "fosc.png"), max_curves=4,
                                     title="FOSC of the training adversarial examples",
                                     xlabel="FOSC")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_lower_error_bars_writes_a_png(tmp_path):
    curves = {"PGD": ([1, 2, 3], [0.5, 0.9, 1.2], [0.1, 0.2, 0.1]),
              "L2L-DA": ([1, 2], [0.7, 1.4], [0.0, 0.3])}
    path = plots.lower_error_bars(curves, str(tmp_path / "losses.png"), title="t", xlabel="step t",
                                  ylabel="CE")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
