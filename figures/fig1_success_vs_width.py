"""Figure 1 — local descent vs the global optimum: success rate versus width m/m* (C5).

Left: share of L-BFGS runs on the true two-layer ReLU network (random starts) that reach the
exact convex optimum of Pilanci & Ergen (normalised gap <= 1e-4), versus the width ratio m/m*,
with 95% Wilson intervals. Right: phase diagram of the same rate over (m/m*, n).

Data: figures/data/claims/C5.json, made by `altheory verify --thorough --claims C5`
(`altheory figures` recomputes it when missing).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from altheory.plotting.style import DOUBLE, figure, save
from _common import HERE, load_claim, wilson


def main(out_dir=HERE, claims_dir=None):
    rep = load_claim("C5", claims_dir)
    runs = [i for i in rep["instances"] if i["sizes"].get("check") == "bound"
            and "success" in i["detail"]]
    by_ratio = defaultdict(list)
    grid = defaultdict(list)
    for i in runs:
        r = float(i["sizes"]["m/m*"])
        by_ratio[r].append(bool(i["detail"]["success"]))
        grid[(r, int(i["sizes"]["n"]))].append(bool(i["detail"]["success"]))
    fig, (a, b) = figure(DOUBLE, aspect=0.75, ncols=2)
    xs = sorted(by_ratio)
    rate = [np.mean(by_ratio[x]) for x in xs]
    lo_hi = [wilson(sum(by_ratio[x]), len(by_ratio[x])) for x in xs]
    a.errorbar(xs, rate, yerr=[[r - l for r, (l, _) in zip(rate, lo_hi)],
                               [h - r for r, (_, h) in zip(rate, lo_hi)]],
               marker="o", capsize=2, color="#1f77b4")
    a.axvline(1.0, color="0.5", lw=0.6, ls=":")
    a.set_xscale("log", base=2)
    a.set_xlabel("width ratio $m/m^*$ (log scale)")
    a.set_ylabel("share of runs reaching the optimum")
    a.set_ylim(-0.03, 1.03)
    a.set_title(f"C5: L-BFGS on ReLU nets, {len(runs)} runs")
    ns = sorted({n for _, n in grid})
    R = np.full((len(ns), len(xs)), np.nan)
    for (r, n), v in grid.items():
        R[ns.index(n), xs.index(r)] = np.mean(v)
    im = b.imshow(R, origin="lower", aspect="auto", vmin=0, vmax=1, cmap="viridis")
    b.set_xticks(range(len(xs)), [f"{x:g}" for x in xs])
    b.set_yticks(range(len(ns)), [str(n) for n in ns])
    b.set_xlabel("width ratio $m/m^*$")
    b.set_ylabel("samples $n$")
    b.set_title("phase diagram: success rate")
    b.grid(False)
    fig.colorbar(im, ax=b, label="success rate")
    return save(fig, out_dir / "fig1_success_vs_width")


if __name__ == "__main__":
    print(main())
