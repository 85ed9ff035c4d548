"""Figure 4 — support flips per round and per layer during the alternation (C9).

Left: share of support entries (sample x unit) that flip between consecutive support steps, per
round, for each alternation variant on Fashion-MNIST (median over seeds, interquartile band;
one hidden layer). Right: the same share in each hidden layer of the three-layer networks of
the C9 check (thorough profile), aggregated per weight step (exact, descent) and layer: median
and interquartile band over the runs. A run that stopped on a stable support continues with
zero flips, one that stopped on a cycle repeats it; the legend says how the runs ended, which
is the message of the panel: the exact step mostly ends in a 2-cycle between supports, the
descent step keeps flipping until the round budget.

Data: figures/data/alternation_fashion-mnist.json (`altheory alternate --data fashion-mnist
--export`) and figures/data/claims/C9.json (`altheory verify --thorough --claims C9`).
"""

from __future__ import annotations

import numpy as np

from collections import Counter

from altheory.plotting.style import DOUBLE, figure, method_style, save
from _common import HERE, load_alternation, load_claim, median_band

FLOOR = 1e-4   # where a round without flips is drawn on the log axis
MIN_LIVE = 3   # fewest runs with data at a round for its median to be drawn


def _ending(stopped: str) -> str:
    """How a run ended, in words: a cycle, a stable support, the round budget, a solver stop."""
    if stopped.startswith("cycle"):
        return "cycling"
    return {"support-stable": "stable", "max-rounds": "round budget reached"}.get(
        stopped, stopped)


def flip_curve(inst: dict, layer: int, n_rounds: int) -> list[float]:
    """Share of the layer's support entries flipped per round, continued to ``n_rounds``.

    After a run stops, what it would do next is known in two cases: a stable support flips
    nothing (zeros), and a cycle of period p repeats its last p rounds. Any other stop (the
    round budget, a solver status) leaves the rest unknown (NaN, left out of the median).
    """
    per = inst["detail"]["flips_per_layer"][1:]
    keys = sorted(per[0], key=int) if per else []
    size = inst["sizes"]["n"] * inst["sizes"]["widths"][layer]
    y = [p[keys[layer]] / size for p in per] if per else []
    stopped = inst["detail"]["stopped"]
    while len(y) < n_rounds:
        if stopped == "support-stable":
            y.append(0.0)
        elif stopped.startswith("cycle-") and stopped[6:].isdigit() and len(y) >= int(stopped[6:]):
            y.append(y[-int(stopped[6:])])
        else:
            y.append(float("nan"))
    return y


def main(out_dir=HERE, name: str = "fashion-mnist", claims_dir=None):
    run = load_alternation(name)
    fig, (a, b) = figure(DOUBLE, aspect=0.8, ncols=2)
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
    n_rounds = max((len(i["detail"]["flips_per_layer"]) - 1 for i in deep), default=0)
    for variant in sorted({i["detail"]["variant"] for i in deep}):
        runs = [i for i in deep if i["detail"]["variant"] == variant]
        ends = Counter(_ending(i["detail"]["stopped"]) for i in runs)
        for j in range(max(len(i["sizes"]["widths"]) for i in runs)):
            curves = [flip_curve(i, j, n_rounds) for i in runs if j < len(i["sizes"]["widths"])]
            A = np.array(curves, dtype=float)
            x = np.arange(1, A.shape[1] + 1)
            live = (~np.isnan(A)).sum(0)
            keep = live >= MIN_LIVE
            with np.errstate(all="ignore"):
                med = np.nanmedian(A[:, keep], 0)
                lo, hi = np.nanpercentile(A[:, keep], 25, 0), np.nanpercentile(A[:, keep], 75, 0)
            ls = "-" if j == 0 else "--"
            b.plot(x[keep], np.maximum(med, FLOOR), color=colors.get(variant, "0.4"), ls=ls,
                   marker="o" if j == 0 else "s", ms=2)
            b.fill_between(x[keep], np.maximum(lo, FLOOR), np.maximum(hi, FLOOR),
                           color=colors.get(variant, "0.4"), alpha=0.12 if j == 0 else 0.08, lw=0)
        how = ", ".join(f"{v} {k}" for k, v in sorted(ends.items(), key=lambda kv: -kv[1]))
        b.plot([], [], color=colors.get(variant, "0.4"), lw=2,
               label=f"{variant} step: {len(runs)} runs ({how})")
    b.plot([], [], color="0.3", ls="-", marker="o", ms=2, label="hidden layer 1 (median, IQR)")
    b.plot([], [], color="0.3", ls="--", marker="s", ms=2, label="hidden layer 2 (median, IQR)")
    b.set_yscale("log")
    b.set_xlabel("round (support step)")
    b.set_ylabel("share of support entries flipped")
    b.set_title(f"C9: 3-layer teacher-student nets ({len(deep)} runs)")
    b.set_ylim(FLOOR / 10 ** 2.6, 1.0)  # room below the zero line for the legend, off the curves
    b.axhspan(FLOOR / 10 ** 2.6, FLOOR / 1.6, color="white", zorder=0)
    b.legend(loc="lower left", fontsize=5.8, borderaxespad=0.3)
    from matplotlib.ticker import FixedLocator, NullLocator

    b.yaxis.set_major_locator(FixedLocator([FLOOR, 1e-3, 1e-2, 1e-1, 1.0]))
    b.yaxis.set_minor_locator(NullLocator())
    b.set_yticklabels(["0", "$10^{-3}$", "$10^{-2}$", "$10^{-1}$", "1"])
    from matplotlib.ticker import MaxNLocator

    for ax in (a, b):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return save(fig, out_dir / "fig4_support_flips")


if __name__ == "__main__":
    print(main())
