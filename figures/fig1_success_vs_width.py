"""Figure 1 — local descent vs the global optimum: success rate versus width m/m* (C5).

Only instances whose activation patterns were enumerated exactly enter (there the convex
program of Pilanci & Ergen is the global optimum; sampled patterns give an upper bound, and
"success" against it means nothing). A run succeeds when L-BFGS from a random start on the true
two-layer ReLU network reaches normalised gap <= 1e-4 to that optimum.

Left: success rate versus the width ratio m/m*, with 95% Wilson intervals. When the report
certifies end points (C5 polishes each run's end point on the fixed-support problem of its own
support and classifies it), the rate is over the certified runs only, and the share of runs
that could not be certified — neither a success nor a failure — is drawn beside it; an older
report without certification gives the rate over all runs. Right: the rate per (m/m*, n), each
cell labelled with its successes and counted runs (and all runs when they differ); cells with
fewer than MIN_RUNS counted runs are left grey rather than coloured, because a rate over a
handful of runs says little (the left panel pools them over n).

Data: figures/data/claims/C5.json, made by `altheory verify --thorough --claims C5`
(`altheory figures` recomputes it when missing).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from altheory.plotting.style import DOUBLE, figure, save
from _common import HERE, load_claim, wilson

MIN_RUNS = 10  # fewer counted runs than this: the cell's rate is not coloured


def _certified(detail: dict) -> bool | None:
    """Whether the run's end point was certified (None: the report predates certification)."""
    if "certified" in detail:
        return bool(detail["certified"])
    if "converged" in detail:
        return bool(detail["converged"])
    return None


def _exact(inst: dict) -> bool:
    kind = inst["detail"].get("kind")
    if kind is not None:
        return kind == "global"
    return inst["sizes"].get("patterns") == "exact"


def runs_of(rep: dict) -> list[dict]:
    """The descent runs of the report on exactly enumerated patterns.

    Each: ``ratio``, ``n``, ``certified`` (True/False, or None for a report without end-point
    certification) and ``success`` (None when the run was not certified: it counts as neither).
    """
    out = []
    for i in rep["instances"]:
        if i["sizes"].get("check") != "bound" or not _exact(i):
            continue
        if i["status"].startswith("solver-") or i["status"] == "error":
            continue
        cert = _certified(i["detail"])
        if cert is None and "success" not in i["detail"]:
            continue
        success = bool(i["detail"]["success"]) if (cert is not False and "success" in i["detail"]) else None
        out.append({"ratio": float(i["sizes"]["m/m*"]), "n": int(i["sizes"]["n"]),
                    "certified": cert, "success": success})
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
    certifies = any(r["certified"] is not None for r in runs)
    counted = [r for r in runs if r["success"] is not None]
    _rate_line(a, xs, [[r["success"] for r in by[x] if r["success"] is not None] for x in xs],
               (f"success among certified runs ({len(counted)})" if certifies
                else f"all runs ({len(runs)})"), "#1f77b4", "o", 1.0)
    if certifies:
        nc = [np.mean([not r["certified"] for r in by[x]]) if by[x] else np.nan for x in xs]
        a.plot(xs, nc, color="0.45", ls="--", marker="x", label="share of runs not certified")
    a.axvline(1.0, color="0.5", lw=0.6, ls=":")
    a.set_xscale("log", base=2)
    a.set_xticks(xs, [f"{x:g}\n({len(by[x])} runs)" for x in xs])
    a.minorticks_off()
    a.set_xlabel("width ratio $m/m^*$ (log scale)")
    a.set_ylabel("share reaching the optimum")
    a.set_ylim(-0.03, 1.03)
    a.set_title("C5: L-BFGS on ReLU nets vs the exact convex optimum\n"
                f"({len(runs)} runs on exactly enumerated patterns)")
    a.legend(loc="lower right")

    cell = defaultdict(list)
    total = defaultdict(int)
    for r in runs:
        total[(r["n"], r["ratio"])] += 1
        if r["success"] is not None:
            cell[(r["n"], r["ratio"])].append(r["success"])
    R = np.full((len(ns), len(xs)), np.nan)
    for (n, x), v in cell.items():
        if len(v) >= MIN_RUNS:
            R[ns.index(n), xs.index(x)] = np.mean(v)
    b.imshow(np.where(np.isnan(R), 1.0, np.nan), origin="lower", aspect="auto", cmap="Greys",
             vmin=0, vmax=6)  # light grey under the cells whose rate is not shown
    im = b.imshow(R, origin="lower", aspect="auto", vmin=0, vmax=1, cmap="viridis")
    for (n, x), N in total.items():
        i, j = ns.index(n), xs.index(x)
        v = cell.get((n, x), [])
        shown = len(v) >= MIN_RUNS
        of = f"\nof {N} runs" if len(v) != N else ""
        b.text(j, i, f"{sum(v)}/{len(v)}" + of, ha="center", va="center", fontsize=6.5,
               color="white" if shown and np.mean(v) <= 0.7 else "0.15")
    b.set_xticks(range(len(xs)), [f"{x:g}" for x in xs])
    b.set_yticks(range(len(ns)), [str(n) for n in ns])
    b.set_xlabel("width ratio $m/m^*$")
    b.set_ylabel("samples $n$")
    b.set_title(("success rate per cell: successes / certified runs" if certifies else
                 "success rate per cell: successes / runs") + f"\n(grey: fewer than {MIN_RUNS} counted, rate not coloured)")
    b.grid(False)
    fig.colorbar(im, ax=b, label="success rate")
    return save(fig, out_dir / "fig1_success_vs_width")


if __name__ == "__main__":
    print(main())
