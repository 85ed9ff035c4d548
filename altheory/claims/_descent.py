r"""Descent runs as evidence: run, classify, polish, judge, count (C3, C4, C6; C8 reuses the polish).

A "no spurious local minima" claim is tested only through end points certified as local minima
(docs/claims.md, "End points"). :func:`run_endpoint` turns one descent run into that evidence:

1. run the method (:func:`altheory.descent.descent.descend`); record why it stopped;
2. classify its end point (gradient norm and smallest Hessian eigenvalue,
   :func:`altheory.descent.endpoints.classify_endpoint`);
3. when it is not a certified local minimum, *polish* it on the same objective (L-BFGS, unit
   balancing, damped Newton: :func:`altheory.descent.descent.polish`) and classify again; the report says which
   point was certified (``certified_by``: ``"descent"`` or ``"polish"``);
4. judge the certified point against the exact optimum (:func:`~altheory.descent.endpoints.judge_endpoint`):
   its gap is asserted; the raw end point must not lie below the optimum either;
5. flag *suspect* runs: the raw end point was near-stationary (gradient <= 1000 tol_g) but not
   certified, with a gap above the asserted one — the polish decides whether it was a spurious
   local minimum (a FAIL) or a slow approach to the optimum.

:func:`method_rates` and :func:`require_groups` turn the instances into the per-method
certification rates and the minimum evidence per condition group (:class:`altheory.claims.Evidence`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

from altheory.descent.descent import balanced_representative, descend, polish as polish_endpoint
from altheory.descent.endpoints import classify_endpoint, judge_endpoint
from altheory.solvers.losses import normalised_gap

__all__ = ["run_endpoint", "method_rates", "require_groups", "NEAR_STATIONARY"]

NEAR_STATIONARY = 1e3  # a raw end point with gradient <= this x tol_g is "near-stationary"


def run_endpoint(obj, theta0, *, method: str, max_iter: int, F0: float, F_star: float,
                 star_status: str, tol_gap: float, seed: int, polish: bool = True,
                 tol_bound: float = 1e-7) -> tuple[str, float, dict[str, Any]]:
    """One descent run judged as evidence (module docstring, steps 1–5).

    Returns
    -------
    (status, gap, detail) : the instance status (``pass``/``fail``/``saddle``/``not-converged``/
        ``solver-<s>``), the normalised gap of the judged point, and a detail dict with the raw
        run (``stopped``, ``message``, ``iters``, ``raw_endpoint``, ``raw_grad_norm``,
        ``raw_gap``), the polish (when run), ``certified_by``, ``suspect`` and the judged
        point's ``endpoint``, ``grad_norm``, ``min_eig``, ``max_eig``, ``tol_g``, ``tol_h``.
    """
    run = descend(obj, theta0, method=method, max_iter=max_iter, tol_grad=1e-10 * F0, seed=seed)
    # classified at its balanced representative when that is the same point modulo the
    # rescaling symmetry (same F): see altheory.descent.descent.balanced_representative
    ep = classify_endpoint(obj, balanced_representative(obj, run.theta), F0=F0)
    raw_gap = normalised_gap(run.objective, F_star, F0) if math.isfinite(run.objective) else math.nan
    detail: dict[str, Any] = {
        "method": method, "stopped": run.stopped, "message": run.message, "iters": run.n_iter,
        "max_iter": max_iter, "seconds": run.seconds, "raw_endpoint": ep.kind,
        "raw_grad_norm": ep.grad_norm, "raw_gap": raw_gap}
    suspect = (ep.kind == "not-converged" and math.isfinite(ep.grad_norm)
               and ep.grad_norm <= NEAR_STATIONARY * ep.tol_g and raw_gap > tol_gap)
    F, certified_by = run.objective, ("descent" if ep.kind == "local-min" else None)
    if ep.kind != "local-min" and polish and np.all(np.isfinite(run.theta)):
        pol = polish_endpoint(obj, run.theta)
        ep2 = classify_endpoint(obj, pol.theta, F0=F0)
        detail["polish"] = {"method": pol.method, "stopped": pol.stopped, "iters": pol.n_iter,
                            "message": pol.message,
                            "endpoint": ep2.kind, "grad_norm": ep2.grad_norm,
                            "moved": float(np.linalg.norm(pol.theta - run.theta))}
        if ep2.kind == "local-min" or ep.kind == "not-converged":
            ep, F = ep2, pol.objective
            certified_by = "polish" if ep2.kind == "local-min" else None
    status, gap, why = judge_endpoint(ep, F, F_star, F0, star_status=star_status, tol_gap=tol_gap,
                                      tol_bound=tol_bound)
    if status != "fail" and math.isfinite(raw_gap) and raw_gap < -tol_bound and star_status == "optimal":
        status, gap, why = "fail", raw_gap, (f"the raw end point lies below the optimum by "
                                             f"{-raw_gap:.2e} x F(0) > {tol_bound:g}")
    if suspect:
        why += ("; SUSPECT: the run stopped near-stationary (gradient "
                f"{detail['raw_grad_norm']:.1e} <= {NEAR_STATIONARY:g} tol_g) with gap {raw_gap:.2e}")
    detail.update(endpoint=ep.kind, grad_norm=ep.grad_norm, min_eig=ep.min_eig, max_eig=ep.max_eig,
                  tol_g=ep.tol_g, tol_h=ep.tol_h, certified_by=certified_by, suspect=bool(suspect),
                  why=why)
    return status, gap, detail


def _certified(inst) -> bool:
    return inst.status in ("pass", "fail") and inst.detail.get("endpoint") == "local-min"


def method_rates(instances) -> dict[str, dict[str, int]]:
    """Per method: runs, end points certified raw, certified after the polish, suspect runs."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: {"runs": 0, "certified_raw": 0,
                                                          "certified_polished": 0, "suspect": 0})
    for inst in instances:
        m = inst.detail.get("method") if "raw_endpoint" in inst.detail else None
        if m is None:
            continue
        r = out[m]
        r["runs"] += 1
        r["certified_raw"] += inst.detail["raw_endpoint"] == "local-min"
        r["certified_polished"] += inst.detail.get("endpoint") == "local-min"
        r["suspect"] += bool(inst.detail.get("suspect"))
    return dict(out)


def rates_note(rates: dict[str, dict[str, int]]) -> str:
    """One line per method; a method that never certifies on its own is called out."""
    parts = []
    for m, r in sorted(rates.items()):
        parts.append(f"{m}: {r['certified_raw']}/{r['runs']} certified as run, "
                     f"{r['certified_polished']}/{r['runs']} after the polish"
                     + (f", {r['suspect']} suspect" if r["suspect"] else ""))
    never = [m for m, r in sorted(rates.items()) if r["runs"] and r["certified_raw"] == 0]
    line = "end points certified as local minima, per method: " + "; ".join(parts) + "."
    if never:
        line += (f" FINDING: {', '.join(never)} never reached a certified end point on its own "
                 "within its budget (only polished end points of these methods are evidence).")
    return line


def require_groups(report, group_of, required: int | dict[str, int], groups=None) -> None:
    """State the minimum evidence per condition group on ``report``.

    ``group_of(inst)`` names an instance's group (None: not descent evidence); ``groups`` lists
    the groups the plan contains (a planned group with no instance still needs its evidence).
    """
    runs: dict[str, int] = defaultdict(int)
    cert: dict[str, int] = defaultdict(int)
    for inst in report.instances:
        g = group_of(inst)
        if g is None:
            continue
        runs[g] += 1
        cert[g] += _certified(inst)
    names = sorted(set(runs) | set(groups or ()))
    for g in names:
        need = required if isinstance(required, int) else required.get(g, required.get("*", 1))
        report.require(g, need, cert[g], runs[g])
