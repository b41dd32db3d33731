"""The report's figures as PNG bytes.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot), so drawing leaves the
process-wide matplotlib backend and state as they were. Widths are for a full page (~1100 px).
"""

from __future__ import annotations

import gc
import io

import numpy as np
from matplotlib.figure import Figure

WIDE = (11.0, 3.4)
QCOLORS = ("#dd8452", "#c44e52", "#8172b3")


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    # A figure and its canvas refer to each other, so its pixel buffers (several MB) would wait
    # for the cycle collector; collected now, a report's fixed cost is one figure, not all of them.
    fig.clear()
    del fig
    gc.collect()
    return buf.getvalue()


def _quantiles(values: np.ndarray, qs: list[float]) -> np.ndarray:
    """np.quantile(values, qs), partitioning one copy: np.quantile's own copying holds ~14 bytes a value."""
    return np.quantile(values.copy(), qs, overwrite_input=True)


def axis_mode(values: np.ndarray) -> str:
    """'log' for positive, right-skewed values (max over median > 30); 'clip' when a few extreme
    values would squeeze the rest (range over the 1-99 % range > 5); else 'linear'."""
    if len(values) < 2:
        return "linear"
    lo, med, hi = _quantiles(values, [0.01, 0.5, 0.99])
    if values.min() > 0 and med > 0 and values.max() / med > 30:
        return "log"
    if hi > lo and (values.max() - values.min()) / (hi - lo) > 5:
        return "clip"
    return "linear"


def _counts(values: np.ndarray, edges: np.ndarray, lo: float | None = None, hi: float | None = None,
            block: int = 65536) -> np.ndarray:
    """np.histogram(np.clip(values, lo, hi), edges)[0], counted block by block: memory one block,
    where np.histogram sorts a whole copy for uneven edges and a clipped copy is one more."""
    counts = np.zeros(len(edges) - 1, np.int64)
    for i in range(0, len(values), block):
        part = values[i:i + block]
        counts += np.histogram(part if lo is None else np.clip(part, lo, hi), edges)[0]
    return counts


def histogram(values: np.ndarray, name: str, qs: dict[float, float]) -> tuple[bytes, str]:
    """Histogram of ``values`` (finite) with quantile lines named in a legend (labels never overlap).

    Returns (PNG, axis note for the caption). The bars are counted here in blocks and drawn as
    one weighted value per bin, the picture ``ax.hist(values, bins)`` draws.
    """
    mode = axis_mode(values)
    fig = Figure(figsize=WIDE, layout="constrained")
    ax = fig.add_subplot()
    note = ""
    lo = hi = None
    vmin, vmax = float(values.min()), float(values.max())
    if mode == "log":
        edges = np.geomspace(vmin, vmax, 61)
        ax.set_xscale("log")
        note = "log x axis (skewed, all values > 0)"
    elif mode == "clip":
        lo, hi = _quantiles(values, [0.01, 0.99])
        outside = int(np.count_nonzero(values < lo) + np.count_nonzero(values > hi))
        # The edges of np.histogram(clipped, 60): the clipped values span [lo, hi].
        edges = np.histogram_bin_edges(np.array([lo, hi]), 60)
        note = f"x axis clipped to the 1-99 % range; {outside:,} values outside are counted in the end bars"
    else:
        bins = min(60, max(10, len(values) // 20)) if vmax > vmin else 10
        edges = np.histogram_bin_edges(values, bins)
    counts = _counts(values, edges, lo, hi)
    ax.hist(edges[:-1], bins=edges, weights=counts, color="#4c72b0", alpha=0.9)
    for (q, x), c in zip(qs.items(), QCOLORS):
        ax.axvline(x, color=c, ls="--", lw=1.5, label=f"q{q:g} = {x:.4g}")
    ax.legend(loc="upper right", fontsize=8, framealpha=0.9)
    ax.set_xlabel(name)
    ax.set_ylabel("examples")
    return _png(fig), note


def heatmap(corr: np.ndarray, names: list[str]) -> bytes:
    k = len(names)
    fig = Figure(figsize=(1.1 * k + 2.5, 1.0 * k + 1.5), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(np.nan_to_num(corr, nan=0.0), vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(k), names, rotation=45, ha="right")
    ax.set_yticks(range(k), names)
    for i in range(k):
        for j in range(k):
            txt = "n/a" if np.isnan(corr[i, j]) else f"{corr[i, j]:.2f}"
            ax.text(j, i, txt, ha="center", va="center", fontsize=8,
                    color="white" if abs(np.nan_to_num(corr[i, j])) > 0.6 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _png(fig)


def embedding_map(xy: np.ndarray, labels: list[str], score: np.ndarray | None, score_name: str | None,
                  flagged: dict[str, np.ndarray]) -> bytes:
    """Two panels of the 2-D projection: coloured by class, and by ``score`` (NaN drawn grey).

    ``flagged``: marker name -> boolean mask over the points, drawn as rings on both panels.
    """
    panels = 2 if score is not None else 1
    fig = Figure(figsize=(11.0, 5.0), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    classes = sorted(set(labels), key=str)
    shown = classes[:10]
    cmap = [f"C{i}" for i in range(10)]
    lab = np.asarray(labels, dtype=object)
    ax = axes[0]
    for i, c in enumerate(shown):
        m = lab == c
        ax.scatter(xy[m, 0], xy[m, 1], s=6, color=cmap[i], label=str(c)[:20], alpha=0.7, linewidths=0)
    rest = ~np.isin(lab, shown)
    if rest.any():
        ax.scatter(xy[rest, 0], xy[rest, 1], s=6, color="#999999", label="other classes", alpha=0.5, linewidths=0)
    ax.set_title("by class", fontsize=10)
    if panels == 2:
        ax2 = axes[1]
        ok = np.isfinite(score)
        ax2.scatter(xy[~ok, 0], xy[~ok, 1], s=6, color="#cccccc", linewidths=0)
        sc = ax2.scatter(xy[ok, 0], xy[ok, 1], s=6, c=score[ok], cmap="viridis", linewidths=0)
        fig.colorbar(sc, ax=ax2, label=score_name)
        ax2.set_title(f"by {score_name}", fontsize=10)
    styles = (("#d62728", "o"), ("#000000", "s"))
    for ax in axes:
        for (name, m), (color, marker) in zip(flagged.items(), styles):
            ax.scatter(xy[m, 0], xy[m, 1], s=60, facecolors="none", edgecolors=color, marker=marker,
                       linewidths=1.5, label=name if ax is axes[0] else None)
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
    axes[0].legend(fontsize=7, markerscale=1.5, loc="best")
    return _png(fig)


def gio_curve(steps: dict[str, tuple[np.ndarray, np.ndarray]]) -> bytes:
    """Cumulative picks per class against the pick step (label -> (step, cumulative count))."""
    fig = Figure(figsize=WIDE, layout="constrained")
    ax = fig.add_subplot()
    for i, (name, (x, y)) in enumerate(steps.items()):
        ax.step(x, y, where="post", color=f"C{i % 10}", label=str(name)[:20])
    ax.set_xlabel("pick step (rank by gio_order)")
    ax.set_ylabel("picked so far")
    if steps:
        ax.legend(fontsize=8, loc="upper left")
    return _png(fig)


def bars(names: list[str], counts: list[int], xlabel: str, ylabel: str) -> bytes:
    fig = Figure(figsize=WIDE, layout="constrained")
    ax = fig.add_subplot()
    ax.bar([str(n)[:20] for n in names], counts, color="#55a868")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return _png(fig)
