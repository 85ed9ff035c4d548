r"""Benchmark: Clarabel vs SCS on the two-layer fixed-support program (group lasso, C4).

.. math:: \min_U \tfrac1{2n}\|((XU^\top)\odot G)\mathbf 1 - y\|^2 + \lambda\sum_j\|u_j\|_2

at (n, d, p) = (200, 10, 50), (1000, 20, 100), (2000, 30, 100); Gaussian ``X``, gates from random
hyperplanes, ``y`` from a planted gated network plus noise, :math:`\lambda = 0.05\lambda_{\max}`
(:math:`\lambda_{\max} = \max_j \|(D_jX)^\top y\|/n`, the smallest value with ``U = 0`` optimal).
Each solver runs alone (no fallback), with the package's tolerances (Clarabel 1e-8, SCS 1e-7);
the wall time includes cvxpy's canonicalisation (after one untimed warm-up solve per solver). The status is printed: a non-optimal one is not
a result. Not a timed test: run it by hand,

    python paper_repro/bench_solvers.py [--sizes small] [--out paper_repro/results/bench_solvers.json]

Measured (2-core shared CPU machine, one run each): see the JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from altheory.solvers.convex import group_lasso_problem
from altheory.solvers.problems import TwoLayerFixedSupport

SIZES = {"small": [(200, 10, 50)],
         "all": [(200, 10, 50), (1000, 20, 100), (2000, 30, 100)]}


def make(n: int, d: int, p: int, seed: int = 0) -> TwoLayerFixedSupport:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    G = X @ rng.standard_normal((p, d)).T > 0
    U0 = rng.standard_normal((p, d)) * (rng.random((p, 1)) < 0.2)
    y = ((X @ U0.T) * G).sum(1) + 0.1 * rng.standard_normal(n)
    lam_max = max(np.linalg.norm((G[:, j:j + 1] * X).T @ y) / n for j in range(p))
    return TwoLayerFixedSupport(X, G, y, "squared", 0.05 * lam_max)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", choices=sorted(SIZES), default="all")
    ap.add_argument("--out", default="paper_repro/results/bench_solvers.json")
    args = ap.parse_args(argv)
    rows = []
    for solver in ("clarabel", "scs"):  # warm-up: imports and first-call costs are not timed
        group_lasso_problem(make(20, 2, 3), solver=solver, fallback=False)
    print(f"{'n':>5} {'d':>3} {'p':>4} | {'clarabel s':>10} {'status':>10} {'objective':>18} | "
          f"{'scs s':>8} {'status':>18} {'objective':>18} | {'rel diff':>9}")
    for n, d, p in SIZES[args.sizes]:
        P = make(n, d, p)
        res = {}
        for solver in ("clarabel", "scs"):
            t0 = time.perf_counter()
            r = group_lasso_problem(P, solver=solver, fallback=False)
            res[solver] = {"seconds": time.perf_counter() - t0, "status": r.status,
                           "objective": r.objective, "solver_value": r.solver_value}
        a, b = res["clarabel"], res["scs"]
        rel = abs(a["objective"] - b["objective"]) / abs(a["objective"]) \
            if np.isfinite(a["objective"]) and np.isfinite(b["objective"]) else float("nan")
        print(f"{n:>5} {d:>3} {p:>4} | {a['seconds']:>10.2f} {a['status']:>10} {a['objective']:>18.12g} | "
              f"{b['seconds']:>8.2f} {b['status']:>18} {b['objective']:>18.12g} | {rel:>9.1e}", flush=True)
        rows.append({"n": n, "d": d, "p": p, "lam": P.lam, **{f"{s}_{k}": v for s in res for k, v in res[s].items()},
                     "rel_diff": rel})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.platform(), "processor": platform.processor(),
                               "rows": rows}, indent=2))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
