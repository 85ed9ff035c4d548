"""Figure 2 — histograms of the measured gaps per claim (log scale).

One panel per claim report found among C3, C4, C5, C6, C7, C8: the histogram of each counted
instance's measured value (the claim's metric: a normalised gap, an error or a bound
violation), on a log10 axis in bins one decade wide, stacked by the kind of check that produced
it (``sizes.check`` of the instance, e.g. the balanced map and descent of C4). Values that are
exactly zero have no logarithm: they are counted in the leftmost bin, marked "0", and the
legend says how many there are. Each distinct tolerance is a vertical line of its own style, labelled
with the checks it applies to.

Data: figures/data/claims/C*.json, made by `altheory verify --thorough`
(`altheory figures` recomputes missing ones).
"""

from __future__ import annotations

import math
import textwrap
from collections import defaultdict

import numpy as np
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

from altheory.plotting.style import DOUBLE, figure, save
from _common import HERE, load_claim

CLAIMS = ("C3", "C4", "C5", "C6", "C7", "C8")
ZERO_BIN = -19  # the decade bin (left edge) that holds exact zeros
LO, HI = -19, 1  # bin edges (decades) of the histogram
CHECK_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#17becf"]
TOL_STYLES = [(0, (4, 2)), (0, (1, 1.5)), (0, (5, 1.5, 1, 1.5)), (0, (8, 2))]


def counted(rep: dict) -> dict[str, list[tuple[float, float | None]]]:
    """(value, tolerance) of every counted instance (pass/fail), grouped by its check (an
    instance that names no check is grouped under the claim's metric)."""
    out: dict[str, list] = defaultdict(list)
    for i in rep["instances"]:
        v = i.get("value")
        if i["status"] not in ("pass", "fail") or v is None or not math.isfinite(v):
            continue
        out[str(i["sizes"].get("check", rep.get("metric", "value")))].append((abs(float(v)), i.get("tol")))
    return dict(out)


def _decade(v: float) -> float:
    return ZERO_BIN + 0.5 if v == 0 else min(max(math.log10(v), LO + 1e-9), HI - 1e-9)


def panel(ax, rep: dict) -> None:
    groups = counted(rep)
    names = sorted(groups)
    bins = np.arange(LO, HI + 1, 1.0)
    data = [[_decade(v) for v, _ in groups[k]] for k in names]
    colors = [CHECK_COLORS[j % len(CHECK_COLORS)] for j in range(len(names))]
    total = sum(map(len, data))
    if total:
        ax.hist(data, bins=bins, stacked=True, color=colors, edgecolor="white", lw=0.3,
                label=[f"{k} ({len(d)})" for k, d in zip(names, data)] if len(names) > 1 else None)
    tols: dict[float, list[str]] = defaultdict(list)
    for k in names:
        for t in sorted({t for _, t in groups[k] if t}):
            tols[t].append(k)
    for j, (t, ks) in enumerate(sorted(tols.items())):
        which = "" if len(names) == 1 else " (" + ", ".join(ks) + ")"
        ax.axvline(math.log10(t), color="#d62728", lw=0.9, ls=TOL_STYLES[j % len(TOL_STYLES)],
                   label=f"tolerance {t:.0e}{which}")
    zeros = sum(v == 0 for k in names for v, _ in groups[k])
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}" if y >= 1 else ""))
    ax.yaxis.set_minor_formatter(NullFormatter())
    top = max((np.histogram(np.concatenate(data), bins=bins)[0].max() if total else 1), 1)
    ax.set_ylim(0.7, top * 10 ** (0.25 + 0.3 * (len(names) + len(tols))))  # headroom: legend
    ticks = [ZERO_BIN + 0.5, -15, -10, -5, 0]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.set_xticklabels(["0"] + [f"$10^{{{t}}}$" for t in ticks[1:]])
    ax.set_xlim(LO, HI)
    ax.set_xlabel(rep["metric"], fontsize=6.5)
    ax.set_ylabel("instances")
    title = "\n".join(textwrap.wrap(f"{rep['claim']} — {rep['title']}", 38)[:2])
    ax.set_title(f"{title}\n{rep['verdict']}, {total} counted instances", fontsize=7)
    if zeros:  # an entry without a handle: the note belongs with the legend, off the bars
        ax.plot([], [], " ", label=f'bin "0": {zeros} exact zeros')
    leg = ax.legend(loc="upper right", fontsize=5.8, handlelength=2.2, borderaxespad=0.2,
                    frameon=True, framealpha=0.95)
    leg.get_frame().set_edgecolor("none")


def main(out_dir=HERE, claims_dir=None):
    reps = []
    for c in CLAIMS:
        try:
            reps.append(load_claim(c, claims_dir))
        except FileNotFoundError:
            continue
    fig, axes = figure(DOUBLE, aspect=1.0, ncols=3, nrows=2)
    axes = axes.ravel()
    for ax, rep in zip(axes, reps):
        panel(ax, rep)
    for ax in axes[len(reps):]:
        ax.set_visible(False)
    return save(fig, out_dir / "fig2_gap_histograms")


if __name__ == "__main__":
    print(main())
