"""Figure 2 — histograms of the measured gaps per claim (log scale).

One panel per claim report found among C3, C4, C5, C6, C7, C8: the histogram of log10 of each
instance's measured value (the claim's metric: a normalised gap or a bound violation; exact
zeros are drawn at the left edge, 1e-18), with the claim's tolerance as a dashed line.

Data: figures/data/claims/C*.json, made by `altheory verify --thorough`
(`altheory figures` recomputes missing ones).
"""

from __future__ import annotations

import numpy as np

from altheory.plotting.style import DOUBLE, figure, save
from _common import HERE, finite, load_claim

CLAIMS = ("C3", "C4", "C5", "C6", "C7", "C8")
FLOOR = 1e-18


def main(out_dir=HERE, claims_dir=None):
    reps = []
    for c in CLAIMS:
        try:
            reps.append(load_claim(c, claims_dir))
        except FileNotFoundError:
            continue
    fig, axes = figure(DOUBLE, aspect=0.85, ncols=3, nrows=2)
    axes = axes.ravel()
    for ax, rep in zip(axes, reps):
        vals = finite(i["value"] for i in rep["instances"] if i["status"] in ("pass", "fail"))
        tols = finite(i["tol"] for i in rep["instances"] if i["status"] in ("pass", "fail"))
        v = np.log10(np.maximum(np.abs(vals), FLOOR)) if vals.size else vals
        ax.hist(v, bins=np.arange(-18.5, 1.5, 1.0), color="#1f77b4", edgecolor="white", lw=0.3)
        for t in np.unique(tols[tols > 0]):
            ax.axvline(np.log10(t), color="#d62728", ls="--", lw=0.8, label=f"tol {t:.0e}")
        ax.set_yscale("log")
        ax.set_xlabel(f"log$_{{10}}$ {rep['metric']}", fontsize=6.5)
        ax.set_ylabel("instances")
        title = rep["title"] if len(rep["title"]) <= 34 else rep["title"][:33] + "…"
        ax.set_title(f"{rep['claim']}: {title}\n{rep['verdict']}, {vals.size} counted instances",
                     fontsize=6.5)
        ax.legend(loc="upper left")
    for ax in axes[len(reps):]:
        ax.set_visible(False)
    return save(fig, out_dir / "fig2_gap_histograms")


if __name__ == "__main__":
    print(main())
