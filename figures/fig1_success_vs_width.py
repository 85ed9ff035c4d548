"""Figure 1 — local descent vs the global optimum: success rate versus width m/m* (C5).

Only instances whose activation patterns were enumerated exactly enter (there the convex
program of Pilanci & Ergen is the global optimum; sampled patterns give an upper bound, and
"success" against it means nothing). A run succeeds when L-BFGS from a random start on the true
two-layer ReLU network reaches normalised gap <= 1e-4 to that optimum.

Left: success rate versus the width ratio m/m*, with 95% Wilson intervals, over all runs and —
when the report classifies the end points — over the runs that converged (a certified end
point), with the share that did not converge beside it. Right: the rate per (m/m*, n), each cell
labelled with its successes and runs; cells with fewer than MIN_RUNS runs are greyed out rather
than coloured, because a rate over a handful of runs says little.

Data: figures/data/claims/C5.json, made by `altheory verify --thorough --claims C5`
(`altheory figures` recomputes it when missing).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from altheory.plotting.style import DOUBLE, figure, save
from _common import HERE, load_claim, wilson

MIN_RUNS = 10  # fewest runs for a cell of the phase diagram to be coloured


def _converged(detail: dict) -> bool | None:
    """Whether a run reached a certified end point, when the report says so (None: unknown)."""
    if "converged" in detail:
        return bool(detail["converged"])
    if "endpoint" in detail:
        return detail["endpoint"] != "not-converged"
    return None


def _exact(inst: dict) -> bool:
    kind = inst["detail"].get("kind")
    if kind is not None:
        return kind == "global"
    return inst["sizes"].get("patterns") == "exact"


def runs_of(rep: dict) -> list[dict]:
    """The descent runs of the report on exactly enumerated patterns: ratio, n, success, converged."""
    out = []
    for i in rep["instances"]:
        if i["sizes"].get("check") != "bound" or "success" not in i["detail"] or not _exact(i):
            continue
        if i["status"].startswith("solver-") or i["status"] == "error":
            continue
        out.append({"ratio": float(i["sizes"]["m/m*"]), "n": int(i["sizes"]["n"]),
                    "success": bool(i["detail"]["success"]), "converged": _converged(i["detail"])})
    return out


def _rate_line(ax, xs, groups, label, color, marker, offset):
    k = np.array([sum(g) for g in groups], dtype=float)
    n = np.array([len(g) for g in groups], dtype=float)
    keep = n > 0
    x = np.asarray(xs, dtype=float)[keep] * offset
    rate = k[keep] / n[keep]
    lo, hi = zip(*(wilson(int(a), int(b)) for a, b in zip(k[keep], n[keep])))
    ax.errorbar(x, rate, yerr=[rate - np.array(lo), np.array(hi) - rate], marker=marker,
                capsize=2, color=color, label=label)


def main(out_dir=HERE, claims_dir=None):
    rep = load_claim("C5", claims_dir)
    runs = runs_of(rep)
    xs = sorted({r["ratio"] for r in runs})
    ns = sorted({r["n"] for r in runs})
    fig, (a, b) = figure(DOUBLE, aspect=0.75, ncols=2)

    by = {x: [r for r in runs if r["ratio"] == x] for x in xs}
    _rate_line(a, xs, [[r["success"] for r in by[x]] for x in xs],
               f"all runs ({len(runs)})", "#1f77b4", "o", 1.0)
    known = [r for r in runs if r["converged"] is not None]
    if known:
        conv = [[r["success"] for r in by[x] if r["converged"]] for x in xs]
        _rate_line(a, xs, conv, f"converged runs ({sum(map(len, conv))})", "#2ca02c", "s", 1.04)
        nc = [np.mean([not r["converged"] for r in by[x] if r["converged"] is not None])
              if by[x] else np.nan for x in xs]
        a.plot(xs, nc, color="0.45", ls="--", marker="x", label="share not converged")
    for x in xs:
        a.annotate(f"{len(by[x])} runs", (x, 0.0), textcoords="offset points", xytext=(0, -1),
                   ha="center", va="top", fontsize=6, color="0.35")
    a.axvline(1.0, color="0.5", lw=0.6, ls=":")
    a.set_xscale("log", base=2)
    a.set_xticks(xs, [f"{x:g}" for x in xs])
    a.minorticks_off()
    a.set_xlabel("width ratio $m/m^*$ (log scale)")
    a.set_ylabel("share of runs reaching the optimum")
    a.set_ylim(-0.08, 1.03)
    a.set_title("C5: L-BFGS on ReLU nets vs the exact convex optimum\n"
                f"({len(runs)} runs on exactly enumerated patterns)")
    a.legend(loc="upper right")

    cell = defaultdict(list)
    for r in runs:
        cell[(r["n"], r["ratio"])].append(r["success"])
    R = np.full((len(ns), len(xs)), np.nan)
    for (n, x), v in cell.items():
        if len(v) >= MIN_RUNS:
            R[ns.index(n), xs.index(x)] = np.mean(v)
    b.imshow(np.where(np.isnan(R), 1.0, np.nan), origin="lower", aspect="auto", cmap="Greys",
             vmin=0, vmax=4)  # light grey under the sparse cells
    im = b.imshow(R, origin="lower", aspect="auto", vmin=0, vmax=1, cmap="viridis")
    for (n, x), v in cell.items():
        i, j = ns.index(n), xs.index(x)
        sparse = len(v) < MIN_RUNS
        rate = np.mean(v)
        b.text(j, i, f"{sum(v)}/{len(v)}" + ("\n(too few)" if sparse else ""), ha="center",
               va="center", fontsize=6.5,
               color="0.2" if sparse or rate > 0.7 else "white")
    b.set_xticks(range(len(xs)), [f"{x:g}" for x in xs])
    b.set_yticks(range(len(ns)), [str(n) for n in ns])
    b.set_xlabel("width ratio $m/m^*$")
    b.set_ylabel("samples $n$")
    b.set_title(f"success rate per cell: successes / runs\n(grey: fewer than {MIN_RUNS} runs)")
    b.grid(False)
    fig.colorbar(im, ax=b, label="success rate")
    return save(fig, out_dir / "fig1_success_vs_width")


if __name__ == "__main__":
    print(main())
