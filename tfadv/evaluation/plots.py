"""PNG plots of the analyses (matplotlib, Agg backend), written atomically.

matplotlib is imported on first use, so the rest of tfadv does not need it.
"""

from __future__ import annotations

import os
from typing import Dict, Optional, Sequence

import numpy as np

from tfadv import atomic


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str) -> str:
    plt = _pyplot()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        with atomic.atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def histogram(values: Dict[str, Sequence[float]], path: str, *, title: str, xlabel: str,
              bins: int = 40, log10: bool = False) -> str:
    """Overlaid histograms, one per label. ``log10``: histogram of log10(value) over the positive
    values; the number of values that are zero (or negative) is given in the legend."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
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
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    scale = 100.0 if percent else 1.0
    for label, vals in ys.items():
        ax.plot(list(xs), [scale * float(v) for v in vals], marker="o", label=label)
    for label, value in (reference or {}).items():
        ax.axhline(scale * float(value), linestyle="--", color="gray", label=label)
    if log_x:
        ax.set_xscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)
