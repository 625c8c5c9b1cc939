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


def test_plots_leave_the_matplotlib_backend_alone(tmp_path):
    """A notebook's (or any caller's) backend stays as it was: every plot is a Figure of its own,
    drawn and saved without pyplot or a backend switch."""
    import matplotlib

    before = matplotlib.get_backend()
    matplotlib.use("svg")  # a caller's non-Agg backend, available headless
    try:
        files = [
            plots.histogram({"a": [0.1, 0.2, 0.2]}, str(tmp_path / "h.png"), title="t", xlabel="x"),
            plots.lines([1, 2], {"a": [0.5, 0.25]}, str(tmp_path / "l.png"), title="t", xlabel="k"),
            plots.epoch_distributions({0: [0.1, 0.3], 1: [0.05]}, str(tmp_path / "e.png"),
                                      title="t", xlabel="FOSC"),
            plots.lower_error_bars({"a": ([1, 2], [0.5, 0.9], [0.1, 0.2])}, str(tmp_path / "b.png"),
                                   title="t", xlabel="t", ylabel="CE"),
        ]
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)
    for path in files:  # still PNGs, whatever the backend
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_curves_draws_one_line_per_label_over_its_own_x(tmp_path):
    from tfadv.evaluation import plots

    path = plots.curves({"madry": ([0.0, 5.0, 9.0], [2.0, 40.0, 55.0]),
                         "bat": ([0.0, 2.0], [3.0, 30.0])}, str(tmp_path / "c.png"),
                        title="t", xlabel="training seconds", levels=[27.5, 44.0])
    data = (tmp_path / "c.png").read_bytes()
    assert path == str(tmp_path / "c.png") and data[:8] == b"\x89PNG\r\n\x1a\n"
