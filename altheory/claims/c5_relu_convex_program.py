r"""C5 — Two-layer ReLU with free support: the exact convex program (Pilanci & Ergen 2020).

.. math::

    \min_{v_i, w_i}\ \ell\Big(\sum_i D_i X (v_i - w_i)\Big) + \lambda\sum_i(\|v_i\| + \|w_i\|)
    \quad\text{s.t.}\ (2D_i - I)Xv_i \ge 0,\ (2D_i - I)Xw_i \ge 0

over all activation patterns :math:`D_i` equals the non-convex problem over width-:math:`m` ReLU
networks when :math:`m \ge m^*` (a theorem, :math:`\tau = 0`, :math:`\lambda > 0`). Checks per
instance (Gaussian ``X``, ``y``):

* *arrangement* (asserted): the enumerated patterns (:func:`altheory.solvers.arrangements.enumerate_patterns`)
  number Cover's count and contain every pattern drawn from 20 000 Gaussian directions;
* *certificate* and *cross-check* (asserted, squared loss): the certified working-set solver
  (:func:`altheory.solvers.pilanci_ergen.solve_pilanci_ergen`, the default wherever it
  certifies) proves a duality gap ``<= 1e-8`` relative; cvxpy/Clarabel solves the same program
  beside it, and its objective must agree: :math:`D \le F_{\text{cvxpy}} + s` (a dual bound
  above a feasible value would be a false certificate) and
  :math:`|F - F_{\text{cvxpy}}| \le \text{gap} + s`, :math:`s = 10^{-6}F(0)` (Clarabel's own
  accuracy); reported only when Clarabel is not optimal. Where the certified solver applies
  (squared loss, ``λ > 0``) but does not certify, the program falls back to cvxpy: both checks
  are then recorded as ``solver-<status>`` of the certified solver (never skipped) and the
  fallback is named on every instance resting on it (``detail["fallback"]``);
* *map* (asserted, always): the convex solution, pruned to linearly independent blocks
  (:func:`altheory.solvers.arrangements.prune_blocks`, so :math:`m^* \le n`), maps to a ReLU network of
  width :math:`m^*` (non-zero blocks, relative threshold 1e-7) with the same objective,
  :math:`|F_{\text{net}} - F_c| / F(0) \le 10^{-6}`;
* *bound* (asserted when the patterns are exact): the convex optimum never exceeds a descent
  result on the true ReLU network, :math:`(F^* - F_{\text{desc}})/F(0) \le 10^{-7}` (solver
  accuracy); the metric of these instances is that violation, the gap is in the detail;
* *success rate* (reported, never asserted): among L-BFGS runs from random starts whose end
  point is *certified* (:func:`certify_relu_endpoint`: polished and classified on the
  fixed-support problem of its own support, support kept, margin > 0), the share reaching
  normalised gap ``<= 1e-4``, by width ratio :math:`m/m^*`; the share of runs that could not be
  certified is reported beside it (they count as neither success nor failure). Each run's stop
  reason is recorded.

*Minimum evidence*: each solver check (``certificate``, ``cross-check``, ``map``) needs a
minimum of counted instances (:mod:`altheory.claims._solver`: every planned one below ten, one
in ten may be lost from ten on), else the claim is UNVERIFIED.

Sampled patterns (larger ``d``) give an *upper bound* only: labelled so; the bound check is then
not asserted (descent may legitimately go below it).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from altheory.solvers.arrangements import (Patterns, enumerate_patterns, program_to_network, prune_blocks, relu_objective,
                            relu_program, sample_patterns)
from altheory.certificates.conditions import relu_program_conditions
from altheory.descent.descent import MLPObjective, descend
from altheory.solvers.losses import normalised_gap, zero_loss
from altheory.claims import ClaimReport, Condition, Instance, register
from altheory.claims._solver import fallback_of, require_solver_checks

TITLE = "Two-layer ReLU: exact convex program"
TOL_MAP = 1e-6
TOL_BOUND = 1e-7
SUCCESS = 1e-4
TOL_REGION = 1e-6  # an end point within this of its own region's optimum is certified
TOL_CERT = 1e-8  # the certified solver's duality gap over all patterns, relative to |F*|
TOL_CROSS = 1e-6  # the certified solver against cvxpy/Clarabel, relative to F(0)


def _plan(profile: str):
    # (n, d, lam, loss, patterns: "exact" | int samples, width ratios, seeds per ratio, max_iter)
    if profile == "quick":
        # (28, 3): 758 patterns, the working-set path of the certified solver (the others
        # fit in one conic solve)
        return [(12, 2, 1e-2, "squared", "exact", (1.0, 2.0), 1, 400),
                (16, 5, 1e-2, "squared", 64, (1.0,), 1, 400),
                (28, 3, 1e-2, "squared", "exact", (1.0,), 1, 400)]
    elif profile == "thorough":
        out = []
        for n, d in [(12, 2), (20, 2), (16, 3), (24, 3)]:
            for lam in (1e-3, 1e-2, 1e-1):
                out.append((n, d, lam, "squared", "exact", (0.5, 1.0, 2.0, 4.0), 3, 2000))
            out.append((n, d, 1e-2, "logistic", "exact", (1.0, 2.0), 2, 2000))
        out.append((40, 8, 1e-2, "squared", 500, (1.0, 2.0), 2, 2000))
        return out
    else:
        raise ValueError(f"profile must be 'quick' or 'thorough'; got {profile!r}.")


def certify_relu_endpoint(X, y, theta, m: int, lam: float, loss: str, F0: float) -> dict:
    r"""Certify an end point of the (non-smooth) ReLU objective through its own support.

    With :math:`G = \mathbb 1[XW_1^\top > 0]` the end point's gates, the true objective equals
    the gated (fixed-support) objective on the region where no active unit's pre-activation
    changes sign. The end point is polished on the gated objective
    (:func:`altheory.descent.descent.polish`) and classified there
    (:func:`altheory.descent.endpoints.classify_endpoint`); it is *certified* when it is a local
    minimum of the gated problem, its own support is unchanged (consistent) and the margin
    :math:`\min |z_{ij}|` over active units is positive — then it is a local minimum of the
    true objective restricted to its active units. Units whose weights are zero (norm at most
    1e-7 of the largest unit) are exempt from the margin: the certificate says nothing about
    growing them back (docs/claims.md C5: that is what the width m >= m* is for).
    """
    from altheory.descent.descent import polish
    from altheory.descent.endpoints import classify_endpoint

    d = X.shape[1]
    th = np.asarray(theta, dtype=np.float64)
    if not np.all(np.isfinite(th)):
        return {"certified": False, "why": "non-finite end point"}
    W1 = th[: m * d].reshape(m, d)
    G = X @ W1.T > 0
    obj = MLPObjective(X, y, [np.zeros((m, d)), np.zeros(m)], masks=[G], loss=loss, lam=lam)
    pol = polish(obj, th)
    ep = classify_endpoint(obj, pol.theta, F0=F0)
    W1p, w2p = pol.theta[: m * d].reshape(m, d), pol.theta[m * d:]
    Z = X @ W1p.T
    size = np.linalg.norm(W1p, axis=1) * np.abs(w2p)
    active = size > 1e-7 * max(size.max(), 1e-300)
    same = bool(np.array_equal(Z[:, active] > 0, G[:, active]))
    margin = float(np.abs(Z[:, active]).min()) if active.any() else float("inf")
    F_true = relu_objective(X, y, W1p, w2p, lam, loss=loss)
    ok = ep.kind == "local-min" and same and margin > 0
    out = {"certified": bool(ok), "how": "local-min of its own support" if ok else None,
           "endpoint": ep.kind, "grad_norm": ep.grad_norm,
           "min_eig": ep.min_eig, "support_kept": same, "margin_active": margin,
           "active_units": int(active.sum()), "F_polished": F_true, "polish": pol.message}
    if ok:
        return out
    # at a kink (a pre-activation at 0) the gated polish leaves the region: test instead whether
    # the raw end point is optimal over the closed activation region of its own units — the
    # convex program of its own patterns (necessary for a local minimum; sufficient inside)
    W1r, w2r = th[: m * d].reshape(m, d), th[m * d:]
    F_raw = relu_objective(X, y, W1r, w2r, lam, loss=loss)
    pats = np.unique((X @ W1r.T >= 0)[:, np.abs(w2r) * np.linalg.norm(W1r, axis=1) > 0], axis=1)
    if pats.shape[1] == 0:
        out.update(why="no active unit")
        return out
    reg = relu_program(X, y, lam, Patterns(pats, False, "own"), loss=loss)
    out.update(region_status=reg.status, F_raw=F_raw,
               region_gap=normalised_gap(F_raw, reg.objective, F0) if reg.verified else None)
    if reg.verified and out["region_gap"] <= TOL_REGION:
        out.update(certified=True, how="optimal over its own activation region", F_polished=F_raw)
    else:
        out.update(why=f"gated end point is a {ep.kind}, support kept {same}, margin {margin:.1e}; "
                       f"region gap {out['region_gap']}")
    return out


@dataclass
class _Tally:
    """What the conditions, rates and notes are computed from, gathered over the instances."""

    success: dict[float, list[bool]] = field(default_factory=lambda: defaultdict(list))
    converged: dict[float, list[bool]] = field(default_factory=lambda: defaultdict(list))
    exact_flags: list[bool] = field(default_factory=list)
    m_stars: list[tuple[int, int]] = field(default_factory=list)


def _draw(s: int, n: int, d: int, loss: str):
    """Gaussian ``X`` (n, d) and ``y`` (signs for the logistic loss), from ``seed = s``."""
    rng = np.random.default_rng(s)
    X = rng.standard_normal((n, d))
    y = rng.standard_normal(n)
    if loss == "logistic":
        y = np.where(y > 0, 1.0, -1.0)
    return X, y


def _arrangement(X, s: int, sizes: dict) -> tuple[Patterns, Instance]:
    """The enumerated patterns, and the check that they number Cover's count and hold every
    pattern of 20 000 Gaussian directions."""
    P = enumerate_patterns(X)
    sampled = sample_patterns(X, 20_000, seed=s)
    known = set(map(bytes, P.G.T.astype(np.uint8)))
    missing = sum(bytes(c) not in known for c in sampled.G.T.astype(np.uint8))
    ok = P.exact and missing == 0
    return P, Instance(s, {**sizes, "check": "arrangement"}, "pass" if ok else "fail",
                       float(missing), 0.0,
                       {"P": P.P, "cover_count": P.expected, "exact": P.exact,
                        "sampled_patterns": sampled.P, "sampled_not_enumerated": missing})


def _certificate(res, s: int, sizes: dict, base: dict) -> Instance:
    """The certified solver's dual value over all patterns against its primal value."""
    # the certified solver's "optimal" is a proven bound, not a status: its dual value over
    # all patterns must lie below the primal value, within TOL_CERT of it
    cert_gap = (res.objective - res.solver_value) / max(abs(res.objective), 1e-300)
    ok = -TOL_CERT <= cert_gap <= TOL_CERT
    return Instance(s, {**sizes, "check": "certificate"}, "pass" if ok else "fail",
                    abs(cert_gap), TOL_CERT, {**base, "dual_value": res.solver_value})


def _cross_check(X, y, P, res, s: int, sizes: dict, base: dict, F0: float) -> Instance:
    """The certified solver against cvxpy/Clarabel on the same program: the dual bound never
    above Clarabel's value, the objectives apart by at most the certified gap (plus Clarabel's
    accuracy, ``TOL_CROSS F(0)``)."""
    ref = relu_program(X, y, sizes["lam"], P, loss=sizes["loss"], solver="clarabel")
    detail = {**base, "cvxpy_status": ref.status, "cvxpy_objective": ref.objective,
              "cvxpy_time": ref.solve_time, "dual_value": res.solver_value}
    if fallback_of(ref):  # the reference fell back from Clarabel to SCS
        detail["fallback"] = fallback_of(ref)
    if ref.status != "optimal":
        return Instance(s, {**sizes, "check": "cross-check"}, "reported", None, TOL_CROSS,
                        {**detail, "why": "Clarabel not optimal: nothing to compare"})
    slack = TOL_CROSS * F0
    gap = res.objective - res.solver_value
    viol = max(res.solver_value - ref.objective, abs(res.objective - ref.objective) - gap,
               0.0) / F0
    detail["rel_diff"] = (res.objective - ref.objective) / F0
    return Instance(s, {**sizes, "check": "cross-check"},
                    "pass" if viol * F0 <= slack else "fail", viol, TOL_CROSS, detail)


def _map(X, y, P, res, s: int, sizes: dict, base: dict, F0: float) -> tuple[int, Instance]:
    """``(m*, instance)``: the pruned convex solution mapped to a width-m* ReLU network, and
    the relative difference of its objective to the convex one."""
    Vp, Wp = prune_blocks(X, P.G, res.weights["V"], res.weights["W"])
    W1, w2 = program_to_network(Vp, Wp)
    m_star = int(w2.size)
    err = abs(relu_objective(X, y, W1, w2, sizes["lam"], loss=sizes["loss"]) - res.objective) / F0
    return m_star, Instance(s, {**sizes, "check": "map"}, "pass" if err <= TOL_MAP else "fail", err,
                            TOL_MAP, {**base, "m_star": m_star})


def _descent_run(X, y, obj, m: int, q: int, s: int, max_iter: int, exact: bool, res,
                 sizes: dict, F0: float) -> tuple[float, dict]:
    """One L-BFGS run of width ``m`` from seeded start ``q``: its bound violation and what it
    did (certified through its own support when the patterns are exact)."""
    lam, loss = sizes["lam"], sizes["loss"]
    run = descend(obj, obj.init(1000 * s + 17 * m + q), method="lbfgs",
                  max_iter=max_iter, tol_grad=1e-10 * F0, seed=q)
    gap = normalised_gap(run.objective, res.objective, F0)
    cert = (certify_relu_endpoint(X, y, run.theta, m, lam, loss, F0) if exact
            else {"certified": False, "why": "sampled patterns: not certified (reported only)"})
    gap_c = normalised_gap(cert["F_polished"], res.objective, F0) if "F_polished" in cert else gap
    viol = max(0.0, -gap, -gap_c)
    detail = {"gap": gap, "grad_norm": run.grad_norm,
              "iters": run.n_iter, "max_iter": max_iter, "stopped": run.stopped,
              "message": run.message, "certified": cert["certified"],
              "certificate": cert}
    if cert["certified"]:
        # only certified end points count as a success or a failure (figure 1)
        detail["gap_certified"] = gap_c
        detail["success"] = bool(gap_c <= SUCCESS)
    return viol, detail


def _bound(report: ClaimReport, tally: _Tally, X, y, F0: float, P, res, m_star: int, s: int,
           sizes: dict, base: dict, *, ratios, n_seeds: int, max_iter: int) -> None:
    """The descent runs on the true ReLU network, per width ratio m/m* and seed: the convex
    optimum must not exceed their (certified) end points; success tallied by ratio."""
    d = X.shape[1]
    for ratio in ratios:
        m = max(1, int(round(ratio * m_star)))
        obj = MLPObjective(X, y, [np.zeros((m, d)), np.zeros(m)], masks=None, tau=0.0,
                           loss=sizes["loss"], lam=sizes["lam"])
        for q in range(n_seeds):
            viol, det = _descent_run(X, y, obj, m, q, s, max_iter, P.exact, res, sizes, F0)
            detail = {**base, "m_star": m_star, **det}
            if P.exact:
                tally.converged[ratio].append(detail["certified"])
                if detail["certified"]:
                    tally.success[ratio].append(detail["success"])
                status = "pass" if viol <= TOL_BOUND else "fail"
            else:
                status = "reported"
            report.add(Instance(s, {**sizes, "check": "bound", "m": m, "m/m*": ratio, "init": q},
                                status, viol, TOL_BOUND, detail))


def _certified_solver_applies(row: tuple) -> bool:
    """Whether :func:`relu_program` (``solver="auto"``) takes the certified Pilanci–Ergen solver
    on a plan row: squared loss, ``lam > 0``."""
    return row[3] == "squared" and row[2] > 0


def solver_checks_planned(plan) -> dict[str, int]:
    """Solver check kind -> instances the plan schedules: the certificate and its cross-check
    on every row the certified solver applies to, the map to a network on every row."""
    n_cert = sum(1 for row in plan if _certified_solver_applies(row))
    return {"certificate": n_cert, "cross-check": n_cert, "map": len(plan)}


def _not_certified(res, s: int, sizes: dict, base: dict) -> list[Instance]:
    """The certificate and cross-check of a row where the certified solver applies but did not
    certify (it fell back to cvxpy, or its status is not optimal): ``solver-<status>`` of the
    certified solver, never counted, never skipped."""
    tried = [a for a in res.attempts if a[0] == "altheory-pe"]
    status = (res.status if res.solver == "altheory-pe" else
              tried[0][1] if tried else "not-run")
    detail = {**base, "certified_solver_status": status,
              "why": f"the certified solver did not certify (status {status!r}); the program was "
                     f"solved by {res.solver} (status {res.status!r})"}
    return [Instance(s, {**sizes, "check": check}, f"solver-{status}", None, tol, detail)
            for check, tol in (("certificate", TOL_CERT), ("cross-check", TOL_CROSS))]


def _instance(report: ClaimReport, tally: _Tally, s: int, row: tuple) -> None:
    """Every check of one plan row (seed ``s``): arrangement, certificate, map, bound."""
    n, d, lam, loss, pats, ratios, n_seeds, max_iter = row
    X, y = _draw(s, n, d, loss)
    F0 = zero_loss(y, loss)
    sizes = {"n": n, "d": d, "lam": lam, "loss": loss, "patterns": pats}
    if pats == "exact":
        P, inst = _arrangement(X, s, sizes)
        report.add(inst)
    else:
        P = sample_patterns(X, int(pats), seed=s)
    tally.exact_flags.append(P.exact)
    res = relu_program(X, y, lam, P, loss=loss)
    base = {"solver_status": res.status, "solver": res.solver, "solve_time": res.solve_time,
            "F_star": res.objective, "kind": res.kind, "P": P.P}
    if fallback_of(res):
        base["fallback"] = fallback_of(res)
    certified = _certified_solver_applies(row)
    if certified and not (res.verified and res.solver == "altheory-pe"):
        for inst in _not_certified(res, s, sizes, base):
            report.add(inst)
    if not res.verified:
        report.add(Instance(s, {**sizes, "check": "map"}, f"solver-{res.status}", None, TOL_MAP, base))
        return
    if certified and res.solver == "altheory-pe":
        report.add(_certificate(res, s, sizes, base))
        report.add(_cross_check(X, y, P, res, s, sizes, base, F0))
    m_star, inst = _map(X, y, P, res, s, sizes, base, F0)
    tally.m_stars.append((m_star, n))
    report.add(inst)
    _bound(report, tally, X, y, F0, P, res, m_star, s, sizes, base, ratios=ratios, n_seeds=n_seeds,
           max_iter=max_iter)


def _conclude(report: ClaimReport, profile: str, tally: _Tally) -> None:
    """The conditions (patterns exact, m* <= n + 1, m vs m*), the rates by width ratio and the
    notes."""
    success, converged, exact_flags = tally.success, tally.converged, tally.exact_flags
    lam_all = sorted({pl[2] for pl in _plan(profile)})
    report.conditions = relu_program_conditions(
        tau=0.0, lam=min(lam_all), m=0, m_star=None, n=0, exact_patterns=all(exact_flags),
        n_patterns=len(exact_flags))
    report.conditions = [c for c in report.conditions
                         if c.name not in ("m >= m*", "patterns enumerated exactly", "m* <= n + 1")]
    report.conditions.append(Condition(
        "m* <= n + 1", all(m <= n + 1 for m, n in tally.m_stars) if tally.m_stars else None,
        [{"m*": m, "n": n} for m, n in tally.m_stars], "after pruning to independent blocks"))
    n_exact = sum(exact_flags)
    report.conditions.append(Condition(
        "patterns enumerated exactly", True if n_exact == len(exact_flags) else
        (False if n_exact == 0 else None), f"{n_exact}/{len(exact_flags)} instances",
        "exact arrangement: global optimum; sampled: upper bound only"))
    report.conditions.append(Condition("m vs m*", None, {str(r): f"{sum(v)}/{len(v)}"
                                                         for r, v in sorted(success.items())},
                                       "measured, not asserted: success rate among certified "
                                       "end points by m/m*"))
    report.rates = {"by_ratio": {f"{r:g}": {"runs": len(converged[r]), "certified": sum(converged[r]),
                                            "success": sum(success[r])} for r in sorted(converged)}}
    require_solver_checks(report, solver_checks_planned(_plan(profile)))
    rates = ", ".join(f"m/m*={r:g}: {sum(success[r])}/{len(success[r])} of certified "
                      f"({len(converged[r]) - sum(converged[r])}/{len(converged[r])} not certified)"
                      for r in sorted(converged))
    report.notes.append(f"L-BFGS success (gap <= {SUCCESS:g}) among end points certified through "
                        f"their own support, on exact instances by width ratio: {rates or 'none'} "
                        "(reported, not asserted; non-certified runs count as neither).")
    if not all(exact_flags):
        report.notes.append("instances with sampled patterns give an UPPER BOUND (labelled "
                            "kind=upper-bound); their descent comparisons are reported only.")


@register("C5", TITLE, asserted=True)
def check(profile: str = "quick", seed: int = 0) -> ClaimReport:
    report = ClaimReport("C5", TITLE, asserted=True, metric="error (certificate, cross-check, map, bound violation)")
    tally = _Tally()
    for j, row in enumerate(_plan(profile)):
        _instance(report, tally, seed + j, row)
    _conclude(report, profile, tally)
    return report
