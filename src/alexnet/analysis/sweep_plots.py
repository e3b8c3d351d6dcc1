"""A sweep's plots: learning curves per configuration, and differences to the paper's configuration."""

import statistics
from collections.abc import Sequence
from pathlib import Path

from alexnet.analysis.plotting import pyplot, save
from alexnet.analysis.sweep_stats import Group, claim_for, difference_ci


def plot_curves(path: Path, groups: Sequence[Group], metric: str, title: str, target: float | None = None) -> None:
    """Per-epoch mean of ``metric`` per configuration, with a band of ± one std over seeds."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for group in groups:
        curves = [[row[metric] for row in j.results.get("history", []) if metric in row] for j in group.finished]
        length = min((len(c) for c in curves), default=0)
        if length == 0:
            continue
        per_epoch = [[100 * c[e] for c in curves] for e in range(length)]
        means = [statistics.fmean(v) for v in per_epoch]
        stds = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in per_epoch]
        epochs = range(1, length + 1)
        (line,) = ax.plot(epochs, means, marker="o", markersize=3, label=f"{group.label} (n={len(curves)})")
        ax.fill_between(
            epochs,
            [m - s for m, s in zip(means, stds)],
            [m + s for m, s in zip(means, stds)],
            color=line.get_color(),
            alpha=0.15,
        )
    if target is not None:
        ax.axhline(100 * target, color="black", linestyle="--", linewidth=1, label=f"{100 * target:.0f}% (Fig. 1)")
    ax.set(xlabel="epoch", ylabel=f"{metric} (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, path)


def plot_differences(path: Path, groups: Sequence[Group], baseline: Group) -> None:
    """Δ test top-1 error vs the paper's configuration, with 95% CIs and the paper's claims."""
    plt = pyplot()
    others = [g for g in groups if g is not baseline]
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(others) + 1.8))
    for y, group in enumerate(others):
        ci = difference_ci(group.values("err1"), baseline.values("err1"))
        if ci:
            ax.errorbar(
                ci[0],
                y,
                xerr=[[ci[0] - ci[1]], [ci[2] - ci[0]]],
                fmt="o",
                color="tab:blue",
                capsize=4,
                label="this sweep, 95% CI" if y == 0 else None,
            )
        claim = claim_for(group, baseline)
        if claim:
            ax.plot(claim.top1, y, "x", color="tab:red", markersize=9, label="paper's claim")
    ax.axvline(0, color="black", linewidth=1)
    ax.set_yticks(range(len(others)), [g.label for g in others], fontsize=8)
    ax.invert_yaxis()  # top to bottom in the table's order
    ax.set(xlabel="Δ test top-1 error vs the paper's configuration (points)", title=f"vs {baseline.label}")
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(dict(zip(labels, handles)).values(), dict(zip(labels, handles)).keys(), fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    save(fig, path)
