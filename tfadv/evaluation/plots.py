"""PNG plots of the analyses, written atomically.

Each plot is its own ``matplotlib.figure.Figure`` saved with ``Figure.savefig``: no pyplot state and
no backend switch, so it works headless and leaves a notebook's backend as it was. matplotlib is
imported on first use, so the rest of tfadv does not need it.
"""

from __future__ import annotations

import os
from typing import Dict, Optional, Sequence

import numpy as np

from tfadv import atomic


def _axes():
    """A new 6x4-inch figure and its one axes (not registered with pyplot)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    return fig, fig.subplots()


def _save(fig, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    return path


def _finish(fig, ax, path: str, *, title: str, xlabel: str, ylabel: str) -> str:
    """Title, axis labels, grid and legend of a line plot, then the PNG."""
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)


def histogram(values: Dict[str, Sequence[float]], path: str, *, title: str, xlabel: str,
              bins: int = 40, log10: bool = False) -> str:
    """Overlaid histograms, one per label. ``log10``: histogram of log10(value) over the positive
    values; the number of values that are zero (or negative) is given in the legend."""
    fig, ax = _axes()
    for label, vals in values.items():
        v = np.asarray(vals, np.float64).ravel()
        v = v[np.isfinite(v)]
        legend = f"{label} (n={v.size})"
        if log10:
            zero = int(np.sum(v <= 0))
            v = np.log10(v[v > 0])
            if zero:
                legend = f"{label} (n={v.size + zero}, {zero} zero)"
        if v.size:
            ax.hist(v, bins=bins, alpha=0.5, label=legend)
        else:
            ax.plot([], [], label=legend)
    ax.set_title(title)
    ax.set_xlabel(f"log10({xlabel})" if log10 else xlabel)
    ax.set_ylabel("examples")
    ax.legend(fontsize="small")
    return _save(fig, path)


def lines(xs: Sequence[float], ys: Dict[str, Sequence[float]], path: str, *, title: str, xlabel: str,
          ylabel: str = "accuracy (%)", log_x: bool = False, percent: bool = True,
          reference: Optional[Dict[str, float]] = None) -> str:
    """One line per label over ``xs``; ``reference``: horizontal lines (e.g. clean accuracy)."""
    fig, ax = _axes()
    scale = 100.0 if percent else 1.0
    for label, vals in ys.items():
        ax.plot(list(xs), [scale * float(v) for v in vals], marker="o", label=label)
    for label, value in (reference or {}).items():
        ax.axhline(scale * float(value), linestyle="--", color="gray", label=label)
    if log_x:
        ax.set_xscale("log")
    return _finish(fig, ax, path, title=title, xlabel=xlabel, ylabel=ylabel)


def curves(series: Dict[str, Sequence[Sequence[float]]], path: str, *, title: str, xlabel: str,
           ylabel: str = "accuracy (%)", levels: Sequence[float] = ()) -> str:
    """One line per label, each over its own x: ``series[label] = (xs, ys)`` (e.g. accuracy
    against training seconds, one curve per defense); ``levels``: dotted horizontal lines."""
    fig, ax = _axes()
    for label, (xs, ys) in series.items():
        ax.plot(list(xs), list(ys), marker=".", label=label)
    for level in levels:
        ax.axhline(float(level), linestyle=":", color="gray")
    return _finish(fig, ax, path, title=title, xlabel=xlabel, ylabel=ylabel)


def epoch_distributions(values_by_epoch: Dict[int, Sequence[float]], path: str, *, title: str,
                        xlabel: str, max_curves: int = 6, bins: int = 40) -> str:
    """The distribution of a per-example value (share of examples per bin, %) at a few epochs:
    one curve per epoch for at most ``max_curves`` epochs, evenly spaced, always including the
    first and the last (the FOSC paper's Figures 3/5). ``values_by_epoch``: 0-based epoch ->
    values; the bins span min(0, smallest value) to the 99th percentile of all the values."""
    epochs = sorted(values_by_epoch)
    if len(epochs) > max_curves:
        picks = np.unique(np.round(np.linspace(0, len(epochs) - 1, max_curves)).astype(int))
        epochs = [epochs[i] for i in picks]
    finite = [np.asarray(values_by_epoch[e], np.float64) for e in epochs]
    finite = [v[np.isfinite(v)] for v in finite]
    pooled = np.concatenate([v for v in finite if v.size] or [np.zeros(1)])
    high = float(np.quantile(pooled, 0.99)) if pooled.size else 1.0
    low = min(0.0, float(pooled.min()))
    edges = np.linspace(low, high if high > low else low + 1.0, bins + 1)
    fig, ax = _axes()
    for epoch, v in zip(epochs, finite):
        counts, _ = np.histogram(np.clip(v, edges[0], edges[-1]), bins=edges)
        share = 100.0 * counts / max(v.size, 1)
        ax.plot(0.5 * (edges[1:] + edges[:-1]), share, label=f"epoch {epoch + 1} (n={v.size})")
    return _finish(fig, ax, path, title=title, xlabel=xlabel, ylabel="examples (%)")


def lower_error_bars(curves: Dict[str, Sequence[Sequence[float]]], path: str, *, title: str,
                     xlabel: str, ylabel: str) -> str:
    """One line per label, ``curves[label] = (xs, ys, lower)``, with a one-sided error bar of
    ``lower`` below every point (e.g. L2L-DA's Figure 2: mean max loss, mean std below); x ticks at
    every x of any curve."""
    fig, ax = _axes()
    for label, (xs, ys, lower) in curves.items():
        ax.errorbar(xs, ys, yerr=[lower, [0.0] * len(xs)], marker="o", capsize=3, label=label)
    ax.set_xticks(sorted({x for xs, _, _ in curves.values() for x in xs}))
    return _finish(fig, ax, path, title=title, xlabel=xlabel, ylabel=ylabel)
