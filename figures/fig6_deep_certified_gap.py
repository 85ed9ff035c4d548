"""Figure 6 — certified gap of descent on deep (L = 3) fixed-support networks (C7).

Empirical CDF of (F_descent - F_lifted) / F(0) per run, split by whether the replication
condition holds (each first-layer support pattern carried by >= d units), and the bound
violations (asserted <= 1e-7) on the same axis.

Data: figures/data/claims/C7.json, made by `altheory verify --thorough --claims C7`.
"""

from __future__ import annotations

import numpy as np

from altheory.plotting.style import COLUMN, figure, save
from _common import HERE, load_claim

FLOOR = 1e-12


def main(out_dir=HERE, claims_dir=None):
    rep = load_claim("C7", claims_dir)
    fig, ax = figure(COLUMN, aspect=0.7)
    for flag, label, color in ((True, "replication holds", "#2ca02c"),
                               (False, "replication fails", "#d62728")):
        g = np.array([i["detail"]["certified_gap"] for i in rep["instances"]
                      if "certified_gap" in i["detail"] and bool(i["detail"].get("replication")) == flag],
                     dtype=np.float64)
        if g.size == 0:
            continue
        x = np.sort(np.maximum(g, FLOOR))
        ax.step(x, np.arange(1, x.size + 1) / x.size, where="post", color=color,
                label=f"{label} ({x.size} runs)")
    ax.axvline(1e-6, color="0.4", ls=":", lw=0.8, label="attained: gap $\\leq 10^{-6}$")
    ax.set_xscale("log")
    ax.set_xlabel("certified gap $(F_{desc} - F_{lifted})/F(0)$ (floor $10^{-12}$)")
    ax.set_ylabel("share of descent runs (ECDF)")
    ax.set_title("C7: deep fixed support, lifted lower bound")
    ax.legend(loc="lower right")
    return save(fig, out_dir / "fig6_deep_certified_gap")


if __name__ == "__main__":
    print(main())
