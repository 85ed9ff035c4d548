"""Figure 3 — alternation vs tuned SGD / momentum / Adam: objective versus epochs and seconds (C9).

Training objective (squared loss on one-hot targets + weight decay) of a 2-layer PHT MLP on a
Fashion-MNIST slice, median over seeds with the interquartile band, for the alternation (exact
per-layer solves; L-BFGS descent steps) and each baseline at its best step size of the sweep
(full batch dashed, mini-batch solid). Top row: the PHT network (tau > 0); bottom row: the ReLU
network (tau = 0). Left: versus data passes (epochs, log scale); right: versus wall-clock
seconds of optimisation on a shared 2-core CPU (evaluation excluded). The initial point of a
baseline (0 epochs, 0 s) is drawn at 0.5 epochs / 1 ms; the alternation's first point already
includes its first support step. Step sizes in the legend are the best of the sweep
(summary["sweep"] in the data file holds every step size's median final objective).

Data: figures/data/alternation_fashion-mnist.json, made by
`altheory alternate --data fashion-mnist --export`.
"""

from __future__ import annotations

import numpy as np

from altheory.plotting.style import DOUBLE, figure, method_style, save
from _common import HERE, load_alternation, median_band


def groups(run: dict, tau: float) -> dict[str, list[dict]]:
    g: dict[str, list[dict]] = {}
    for a in run["alternation"]:
        if a["tau"] == tau:
            g.setdefault(a["method"], []).append(a)
    for c in run["baselines"]:
        if c["tau"] == tau:
            g.setdefault(f"{c['method']}-{c['batch']}", []).append(c)
    return g


def main(out_dir=HERE, name: str = "fashion-mnist"):
    run = load_alternation(name)
    taus = sorted({a["tau"] for a in run["alternation"]}, reverse=True)
    fig, axes = figure(DOUBLE, aspect=0.34 * len(taus), ncols=2, nrows=len(taus), squeeze=False)
    best = run["summary"]["best_lr"]
    for row, tau in enumerate(taus):
        target = run["summary"]["taus"][str(tau)]["target_objective"]
        for name_m, rs in sorted(groups(run, tau).items()):
            st = method_style(name_m)
            lr = best.get(f"{name_m}|{tau}")
            label = name_m + (f" (lr {lr:g})" if lr is not None else "")
            for col, key in enumerate(("epochs", "seconds")):
                ax = axes[row][col]
                x, _, _ = median_band([r[key] for r in rs])
                med, lo, hi = median_band([r["objective"] for r in rs])
                xx = np.maximum(x, 1e-3 if key == "seconds" else 0.5)
                ax.plot(xx, med, label=label, **st)
                ax.fill_between(xx, lo, hi, color=st["color"], alpha=0.15, lw=0)
        for col, key in enumerate(("epochs (data passes)", "seconds (2-core CPU)")):
            ax = axes[row][col]
            ax.axhline(target, color="0.3", lw=0.6, ls=":", label="target" if col == 0 else None)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(key + ", log scale")
            ax.set_ylabel("training objective")
            net = f"PHT $\\tau$={tau:g}" if tau > 0 else "ReLU ($\\tau$=0)"
            ax.set_title(f"{net}, n={run['n_train']}, d={run['d']}, "
                         f"{run['config']['width']} units, {run['config']['seeds']} seeds")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=5)
    return save(fig, out_dir / "fig3_alternation_vs_baselines")


if __name__ == "__main__":
    print(main())
