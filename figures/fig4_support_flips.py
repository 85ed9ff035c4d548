"""Figure 4 — support flips per round and per layer during the alternation (C9).

Left: share of support entries (sample x unit) that flip between consecutive support steps, per
round, for each alternation variant on Fashion-MNIST (median over seeds, interquartile band;
one hidden layer). Right: flips per round in each hidden layer of the three-layer networks of the
C9 check (thorough profile; exact and descent weight steps), showing where the support settles.

Data: figures/data/alternation_fashion-mnist.json (`altheory alternate --data fashion-mnist
--export`) and figures/data/claims/C9.json (`altheory verify --thorough --claims C9`).
"""

from __future__ import annotations

import numpy as np

from altheory.plotting.style import DOUBLE, figure, method_style, save
from _common import HERE, load_alternation, load_claim, median_band


def main(out_dir=HERE, name: str = "fashion-mnist", claims_dir=None):
    run = load_alternation(name)
    fig, (a, b) = figure(DOUBLE, aspect=0.75, ncols=2)
    entries = run["n_train"] * run["config"]["width"]
    seen = set()
    for tau in sorted({r["tau"] for r in run["alternation"]}, reverse=True):
        for m in sorted({r["method"] for r in run["alternation"]}):
            rs = [r for r in run["alternation"] if r["method"] == m and r["tau"] == tau]
            curves = [[sum(f.values()) / entries for f in r["flips"][1:]] for r in rs]
            med, lo, hi = median_band(curves)
            x = np.arange(1, med.size + 1)
            st = method_style(m)
            if tau == 0:
                st["linestyle"] = ":"
            a.plot(x, np.maximum(med, 1e-6), marker="o", label=f"{m}, " + (f"PHT $\\tau$={tau:g}" if tau else "ReLU"), **st)
            a.fill_between(x, np.maximum(lo, 1e-6), np.maximum(hi, 1e-6), color=st["color"], alpha=0.15, lw=0)
            seen.add(m)
    a.set_yscale("log")
    a.set_xlabel("round (support step)")
    a.set_ylabel("share of support entries flipped")
    a.set_title(f"Fashion-MNIST, {run['config']['width']} units, n={run['n_train']}")
    a.legend()
    try:
        rep = load_claim("C9", claims_dir)
    except FileNotFoundError:
        rep = {"instances": []}
    deep = [i for i in rep["instances"] if i["status"] == "reported"
            and len(i["sizes"].get("widths", [])) >= 2]
    colors = {"exact": "#d62728", "descent": "#ff7f0e"}
    for i in deep:
        per = i["detail"]["flips_per_layer"][1:]
        if not per:
            continue
        keys = sorted(per[0])
        for j, k in enumerate(keys):
            y = np.array([p[k] for p in per], dtype=float) / (i["sizes"]["n"] * i["sizes"]["widths"][j])
            b.plot(np.arange(1, y.size + 1), np.maximum(y, 1e-4), color=colors.get(i["detail"]["variant"], "0.4"),
                   ls="-" if j == 0 else "--", alpha=0.6, lw=0.8)
    for v, c in colors.items():
        b.plot([], [], color=c, label=f"{v} step")
    b.plot([], [], color="0.3", ls="-", label="hidden layer 1")
    b.plot([], [], color="0.3", ls="--", label="hidden layer 2")
    b.set_yscale("log")
    b.set_xlabel("round (support step)")
    b.set_ylabel("share flipped (zeros at $10^{-4}$)")
    b.set_title(f"C9: 3-layer teacher-student nets ({len(deep)} runs)")
    b.legend()
    from matplotlib.ticker import MaxNLocator

    for ax in (a, b):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return save(fig, out_dir / "fig4_support_flips")


if __name__ == "__main__":
    print(main())
