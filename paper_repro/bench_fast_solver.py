r"""Benchmark: the fast certified group-lasso solver against cvxpy (Clarabel, SCS) and pyscnn.

Problem (docs/claims.md C4, the two-layer fixed-support program :math:`P_c`):

.. math:: \min_U\ \tfrac1{2n}\|((XU^\top)\odot G)\mathbf 1 - y\|^2 + \lambda\sum_j\|u_j\|_2

Instances: ``X`` (n, d) standard normal; gate vectors ``V`` (d, p) standard normal and
``G = X V > 0`` (the gated-ReLU gates pyscnn also uses); ``y`` a planted two-layer ReLU network
with 5 units plus 0.1 Gaussian noise; ``lam = lam_frac * lam_max`` (``lam_frac = 0.1`` by
default; ``lam_max`` is the smallest λ with ``U = 0`` optimal). One run per solver and size,
all on the same instance.

Reported per solver: wall time, the objective recomputed in float64 by
:func:`altheory.solvers.fast.group_lasso_certificate`, the relative gap to the best objective any
solver found (``(F - F_best)/F_best``), and for altheory-fast its own certified
``rel_gap`` (duality gap / F). cvxpy is skipped above ``--cvxpy-max`` entries of the dense design
(n * p * d; the reason is printed); pyscnn (PyPI ``pyscnn``, R-FISTA at its default tolerance
1e-6, float64, no data unitisation) is optional: when it is not installed its rows say so.

Usage::

    OMP_WAIT_POLICY=PASSIVE python paper_repro/bench_fast_solver.py            # every size, CPU
    python paper_repro/bench_fast_solver.py --device cuda --sizes 100000x50x500 --solvers fast

Writes ``paper_repro/results/bench_fast_solver.json`` (``--out``) and prints a Markdown table.
Measured numbers and hardware are in ``paper_repro/FAST_SOLVER.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

SIZES = ["200x10x50", "1000x20x100", "2000x30x100", "20000x50x200", "100000x50x500"]
SOLVERS = ("fast", "fast32", "clarabel", "scs", "scnn")


def make_instance(n: int, d: int, p: int, seed: int = 0):
    """X (n, d), gate vectors V (d, p), G = X V > 0, y from a planted 5-unit ReLU network."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    V = rng.standard_normal((d, p))
    G = X @ V > 0
    W = rng.standard_normal((5, d)) / np.sqrt(d)
    y = np.maximum(X @ W.T, 0).sum(1) + 0.1 * rng.standard_normal(n)
    return X, V, G, y


def run_fast(X, G, y, lam, *, device, dtype):
    import torch

    from altheory.solvers.fast import solve_group_lasso

    tdtype = torch.float32 if dtype == "float32" else torch.float64
    if device == "cuda":  # warm-up: CUDA context and kernels, not counted
        solve_group_lasso(X[:64], G[:64], y[:64], lam, device=device, dtype=tdtype)
    r = solve_group_lasso(X, G, y, lam, device=device, dtype=tdtype)
    return r.U, r.solve_time, r.status, {"certified_rel_gap": r.rel_gap, "active": r.active,
                                         "iterations": r.iterations}


def run_cvxpy(X, G, y, lam, solver):
    from altheory.solvers.convex import group_lasso

    t0 = time.perf_counter()
    r = group_lasso(X, G, y, lam, loss="squared", solver=solver)
    dt = time.perf_counter() - t0
    # the fallback may have switched solver: report what produced the answer
    return (r.U if r.weights.get("U") is not None else None), dt, r.status, {
        "attempts": [(s, st, round(t, 3)) for s, st, t in r.attempts]}


def run_scnn(X, V, y, lam, *, device):
    try:
        from scnn.metrics import Metrics
        from scnn.models import ConvexGatedReLU
        from scnn.optimize import optimize_model
        from scnn.regularizers import NeuronGL1
        from scnn.solvers import RFISTA
    except ImportError as e:
        return None, float("nan"), f"not-installed ({e.name})", {}
    model = ConvexGatedReLU(V)
    solver = RFISTA(model)  # defaults: max_iters=10000, tol=1e-6
    t0 = time.perf_counter()
    model, _ = optimize_model(model, solver, Metrics(), X, y, regularizer=NeuronGL1(lam),
                              unitize_data=False, return_convex=True,
                              device=device, dtype="float64")
    dt = time.perf_counter() - t0
    Us = np.asarray(model.parameters[0], dtype=np.float64).reshape(-1, X.shape[1])
    # pyscnn rescales and reorders the gate vectors it is given: map its groups back to ours by
    # their activation pattern (the problem only depends on the patterns)
    Gs = X @ np.asarray(model.G) + np.asarray(model.G_bias) > 0
    where = {G_col.tobytes(): j for j, G_col in enumerate((X @ V > 0).T)}
    U = np.zeros((V.shape[1], X.shape[1]))
    for k, col in enumerate(Gs.T):
        j = where.get(col.tobytes())
        if j is None:
            return None, dt, "gates-changed", {"note": "a pyscnn gate pattern is not in G"}
        U[j] += Us[k]
    return U, dt, "done", {"tol": solver.tol, "max_iters": solver.max_iters}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default=",".join(SIZES), help="comma-separated n x d x p")
    p.add_argument("--solvers", default=",".join(SOLVERS), help=f"subset of {SOLVERS}")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--lam-frac", type=float, default=0.1, help="lam = lam_frac * lam_max")
    p.add_argument("--cvxpy-max", type=float, default=2e7,
                   help="skip cvxpy when n*p*d (entries of its dense design) exceeds this")
    p.add_argument("--scnn-max", type=float, default=2.5e8,
                   help="skip pyscnn when n*p*d exceeds this (R-FISTA runs up to 10000 "
                        "iterations; above it a run takes many minutes on 2 cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="paper_repro/results/bench_fast_solver.json")
    args = p.parse_args(argv)

    import torch

    from altheory.solvers.fast import group_lasso_certificate, lambda_max

    solvers = [s.strip() for s in args.solvers.split(",") if s.strip()]
    for s in solvers:
        if s not in SOLVERS:
            raise SystemExit(f"unknown solver {s!r}; choose from {SOLVERS}")
    env = {"python": sys.version.split()[0], "torch": torch.__version__,
           "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
           "machine": platform.machine(), "device": args.device,
           "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
           "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY")}
    print(json.dumps(env))
    rows = []
    # warm-up on a tiny instance: imports, cvxpy's first compile, CUDA context (not timed)
    Xw, Vw, Gw, yw = make_instance(50, 3, 5, 1)
    lw = 0.1 * lambda_max(Xw, Gw, yw)
    for s in solvers:
        if s in ("fast", "fast32"):
            run_fast(Xw, Gw, yw, lw, device=args.device,
                     dtype="float32" if s == "fast32" else "float64")
        elif s == "scnn":
            run_scnn(Xw, Vw, yw, lw, device=args.device)
        else:
            run_cvxpy(Xw, Gw, yw, lw, s)
    for size in args.sizes.split(","):
        n, d, pp = (int(v) for v in size.lower().split("x"))
        X, V, G, y = make_instance(n, d, pp, args.seed)
        lam = args.lam_frac * lambda_max(X, G, y)
        found = []
        for s in solvers:
            row = {"n": n, "d": d, "p": pp, "lam": lam, "solver": s, "device": args.device}
            if s in ("clarabel", "scs") and n * pp * d > args.cvxpy_max:
                row.update(status="skipped", note=f"n*p*d = {n * pp * d:.1e} > --cvxpy-max "
                           f"{args.cvxpy_max:.0e} (dense design of {8 * n * pp * d / 1e9:.1f} GB)")
                print(f"{size} {s}: skipped, {row['note']}", flush=True)
                rows.append(row)
                continue
            if s == "scnn" and n * pp * d > args.scnn_max:
                row.update(status="skipped", note=f"n*p*d = {n * pp * d:.1e} > --scnn-max "
                           f"{args.scnn_max:.0e}")
                print(f"{size} {s}: skipped, {row['note']}", flush=True)
                rows.append(row)
                continue
            if s in ("fast", "fast32"):
                U, dt, status, extra = run_fast(X, G, y, lam, device=args.device,
                                                dtype="float32" if s == "fast32" else "float64")
            elif s == "scnn":
                U, dt, status, extra = run_scnn(X, V, y, lam, device=args.device)
            else:
                U, dt, status, extra = run_cvxpy(X, G, y, lam, s)
            row.update(time=dt, status=status, **extra)
            if U is not None:
                cert = group_lasso_certificate(X, G, y, U, lam)
                row.update(objective=cert["objective"], dual_bound=cert["dual_objective"])
                found.append(cert["objective"])
            print(f"{size} {s}: {status} in {dt:.3f}s objective {row.get('objective')}", flush=True)
            rows.append(row)
        best = min(found) if found else float("nan")
        for row in rows:
            if (row["n"], row["d"], row["p"]) == (n, d, pp) and "objective" in row:
                row["best_objective"] = best
                row["rel_gap_to_best"] = (row["objective"] - best) / abs(best)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"env": env, "lam_frac": args.lam_frac, "rows": rows}, indent=1,
                              default=str))
    tmp.replace(out)
    print(table(rows))
    print(f"written {out}")
    return 0


def table(rows) -> str:
    lines = ["| n x d x p | solver | device | status | time (s) | rel. gap to best "
             "| certified rel. gap |", "|---|---|---|---|---:|---:|---:|"]
    for r in rows:
        t = f"{r['time']:.3f}" if "time" in r and r["time"] == r["time"] else "—"
        g = f"{r['rel_gap_to_best']:.1e}" if "rel_gap_to_best" in r else "—"
        c = f"{r['certified_rel_gap']:.1e}" if "certified_rel_gap" in r else "—"
        st = r["status"] if r["status"] != "skipped" else f"skipped: {r.get('note', '')}"
        lines.append(f"| {r['n']}x{r['d']}x{r['p']} | {r['solver']} | {r['device']} | {st} | {t} "
                     f"| {g} | {c} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
