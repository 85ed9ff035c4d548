r"""C8 — Globally optimal given the support (the title claim).

After the alternation (C9) stops at a consistent support :math:`S^*` with margin
:math:`\mu > 0`, the trained weights are a global optimum of the fixed-support problem of
:math:`S^*` wherever C3/C4/C6 give an exact optimum.

Check, per instance (teacher–student data with a ones column for the bias, a bias-free
two-layer PHT/ReLU network with scalar output, weight decay :math:`\lambda > 0`, seeded):

1. run :func:`altheory.alternation.alternation.alternate` with the ``"descent"`` weight step (L-BFGS on the
   fixed-support objective, warm-started, 30 iterations per round, then 300 to polish) until the
   support is stable (premise: no flip in the last round, objective change below ``1e-9 F(0)``)
   and its margin is positive; otherwise the instance is *not-applicable* (the premise of C8
   does not hold — reported with its count);
2. classify the end point on the fixed-support objective (:mod:`altheory.descent.endpoints`: gradient
   and smallest Hessian eigenvalue); when L-BFGS stalled before the gradient test (flat valleys
   of the bilinear problem), finish with damped Newton on the same objective (the support must stay
   the same) and classify again — the descent end point's own
   gap is kept in ``detail["descent"]``; a saddle or a non-converged point is reported as such;
3. solve the group lasso :math:`P_c` of :math:`S^*` with cvxpy (Clarabel, SCS fallback; a
   non-optimal status is ``solver-<status>``) and every single-layer problem exactly
   (:func:`altheory.alternation.alternation.c8_gaps`); the value is the largest normalised gap
   :math:`(F(W) - F^*)/F(0)` — asserted ``<= 1e-6`` for a certified local minimum.

Minimum evidence: per threshold group ``MIN_EVIDENCE`` certified end points, and the joint
optimum (a solver check) answered ``optimal`` on a minimum of the instances that reached step 3
(:mod:`altheory.claims._solver`: all of them below ten, one in ten may be lost from ten on; at
least one per threshold group planned). A joint solve that fell back from Clarabel to SCS is
recorded (``detail["fallback"]``).

Deeper networks (thorough profile, three layers): each single layer's gap is *reported* (block
coordinate descent makes no joint claim); the joint lower bound of C7 is reported by C7 itself.
"""

from __future__ import annotations

import numpy as np

from altheory.descent.descent import _in_single_thread
from altheory.claims import ClaimReport, Condition, Instance, register
from altheory.claims._solver import fallback_of, require_solver_checks

TOL = 1e-6
TOL_BELOW = 1e-7  # solver accuracy: how far below an exact optimum a point may seem to lie
LAM = 1e-3
# minimum number of certified end points (own or polished) per threshold group
MIN_EVIDENCE = {"quick": 1, "thorough": 2}
JOINT = "joint optimum"  # the solver check: cvxpy's group lasso of the final support


def _group(tau: float) -> str:
    return f"two layers, tau{'>0' if tau > 0 else '=0'}"


def _data(seed: int, n: int, d: int, tau: float, widths=(4,)):
    from altheory.data import teacher_student

    ts = teacher_student(n, d, widths=widths, tau=tau, seed=seed)
    return np.hstack([ts.X, np.ones((n, 1))]), ts.Y.reshape(-1)


@_in_single_thread
def _endpoint(model, X, Y, lam):
    import torch

    from altheory.alternation.alternation import _masks, mlp_parts
    from altheory.descent.descent import MLPObjective
    from altheory.descent.endpoints import classify_endpoint
    from altheory.nets.support import support

    parts = mlp_parts(model)
    S = support(model, torch.from_numpy(X))
    Ws = [lin.weight.detach().numpy().copy() for lin in parts.linears]
    obj = MLPObjective(X, Y, Ws, masks=_masks(S, parts), lam=lam)
    return classify_endpoint(obj, obj.theta0().numpy(), F0=obj.zero_objective())


@_in_single_thread
def _newton_polish(model, X, Y, lam, iters: int = 20) -> dict:
    """Damped Newton (eigenvalue-shifted Hessian, Armijo) on the fixed-support objective of the
    model's own support, in place; reports whether the support survived."""
    import torch

    from altheory.alternation.alternation import _masks, mlp_parts
    from altheory.descent.descent import MLPObjective
    from altheory.nets.support import support

    parts = mlp_parts(model)
    Xt = torch.from_numpy(X)
    S = support(model, Xt)
    obj = MLPObjective(X, Y, [l.weight.detach().numpy().copy() for l in parts.linears],
                       masks=_masks(S, parts), lam=lam)
    th = obj.theta0()
    tol = 1e-13 * obj.zero_objective()
    for _ in range(iters):
        f, g = obj.grad(th)
        g = torch.from_numpy(g)
        if float(g.norm()) <= tol:
            break
        H = torch.autograd.functional.hessian(lambda t: obj(t), th, vectorize=True)
        e, V = torch.linalg.eigh(H)
        shift = max(0.0, -float(e.min())) + 1e-12 * max(1.0, float(e.abs().max()))
        step = -(V @ ((V.T @ g) / (e + shift)))
        a = 1.0
        while a > 1e-10 and obj.value(th + a * step) > f + 1e-4 * a * float(g @ step):
            a *= 0.5
        if a <= 1e-10:
            break
        th = th + a * step
    Ws = obj.weights(th)
    with torch.no_grad():
        for lin, W in zip(parts.linears, Ws):
            lin.weight.copy_(W)
    kept = support(model, Xt) == S
    return {"support_kept": bool(kept), "grad_norm": float(np.linalg.norm(obj.grad(th)[1]))}


def _cases(profile: str) -> tuple[list[tuple[int, int, int, float]], int]:
    """``([(offset j, n, hidden width, tau), ...], max_rounds)`` of a profile."""
    if profile == "quick":
        # per threshold group, instances are tried in this order until one reaches the premise
        # (a stable consistent support) within the budget: the offsets that do at seed 0 first,
        # then the others (so other base seeds find evidence too); every instance tried is
        # recorded (not-applicable when the premise fails). The thorough profile runs all 32
        # and reports the premise rate.
        cases = ([(j, 60, 4, 0.1) for j in (3, 0, 1, 2, 4, 5, 6, 7)]
                 + [(j, 60, 4, 0.0) for j in (1, 0, 2, 3, 4, 5, 6, 7)])
        return cases, 25
    cases = [(j, n, h, tau) for j in range(8) for n, h in ((60, 4), (100, 6)) for tau in (0.1, 0.0)]
    return cases, 60


def _alternate_to_support(s: int, d: int, h: int, tau: float, X, Y, max_rounds: int):
    """Step 1: the ``"descent"`` alternation from the seeded network until the support is
    stable, then polished (300 L-BFGS iterations) when it is; ``(result, flips per round)``."""
    from altheory.alternation.alternation import alternate, mlp

    res = alternate(mlp(d + 1, (h,), 1, tau=tau, bias=False, seed=s), X, Y, lam=LAM,
                    weight_step="descent", descent_steps=30, max_rounds=max_rounds)
    flips = [sum(r.flips.values()) for r in res.rounds]
    if res.stopped == "support-stable":
        # polish: the same weight step run to convergence (300 L-BFGS iterations), so the
        # end point can be certified; the support must stay stable through it
        res = alternate(res.model, X, Y, lam=LAM, weight_step="descent",
                        descent_steps=1000, max_rounds=3)
        flips += [sum(r.flips.values()) for r in res.rounds[1:]]
    return res, flips


def _classify_and_solve(res, X, Y, detail: dict):
    """Steps 2-3: classify the end point and solve its support exactly; when the descent end
    point is not a local minimum, Newton-polish it and do both again. ``(endpoint, gaps)``, or
    ``None`` when the support changed under the polish (``detail`` records every step)."""
    from altheory.alternation.alternation import c8_gaps

    ep = _endpoint(res.model, X, Y, LAM)
    gaps = c8_gaps(res.model, X, Y, loss="squared", lam=LAM)
    detail["descent"] = {"endpoint": ep.kind, "grad_norm": ep.grad_norm,
                         "min_eig": ep.min_eig, "joint_gap": gaps["joint_gap"],
                         "joint_status": gaps["joint_status"]}
    detail["certified_point"] = "alternation" if ep.kind == "local-min" else None
    if ep.kind == "local-min" and gaps["joint_status"] == "optimal":
        # the alternation's own end point is certified: its gap is the asserted one
        own = max([gaps["joint_gap"]] + [g for g in gaps["layer_gaps"].values() if g is not None])
        detail["descent"]["asserted_gap"] = own
    if ep.kind != "local-min":
        # L-BFGS stalls in the flat valleys of the bilinear problem before the gradient
        # test: finish with damped Newton on the same fixed-support objective (small p*d)
        pol = _newton_polish(res.model, X, Y, LAM)
        detail["polished"] = pol
        if not pol["support_kept"]:
            return None
        ep = _endpoint(res.model, X, Y, LAM)
        gaps = c8_gaps(res.model, X, Y, loss="squared", lam=LAM)
        detail["certified_point"] = "newton-polish" if ep.kind == "local-min" else None
    return ep, gaps


def _verdict(ep, gaps: dict, detail: dict) -> tuple[str, float | None]:
    """``(status, value)`` of a classified end point: the largest normalised gap, two-sided (no
    point lies below an exact optimum of its support); asserted only at a local minimum."""
    if gaps["joint_status"] != "optimal":
        return f"solver-{gaps['joint_status']}", None
    value = max([gaps["joint_gap"]] + [g for g in gaps["layer_gaps"].values() if g is not None])
    below = min([gaps["joint_gap"]] + [g for g in gaps["layer_gaps"].values() if g is not None])
    if below < -TOL_BELOW:
        # two-sided: no weights lie below an exact optimum of their own support
        detail["why"] = (f"the trained weights lie {-below:.2e} x F(0) below an exact "
                         "optimum of their support: the optimum is wrong")
        return "fail", below
    if ep.kind == "local-min":
        return ("pass" if value <= TOL else "fail"), value
    return ep.kind, value  # "saddle" or "not-converged": not a counterexample


def _two_layer_instance(s: int, n: int, d: int, h: int, tau: float, max_rounds: int) -> Instance:
    """One two-layer instance of seed ``s``: alternate, certify, compare with the exact optimum
    of the final support (not-applicable when the premise of C8 fails)."""
    X, Y = _data(s, n, d, tau)
    sizes = {"n": n, "d": d + 1, "p": h, "tau": tau, "lam": LAM, "loss": "squared",
             "layers": 2}
    res, flips = _alternate_to_support(s, d, h, tau, X, Y, max_rounds)
    margin = res.rounds[-1].margin
    detail = {"stopped": res.stopped, "rounds": len(flips) - 1, "margin": margin,
              "flips": flips}
    if res.stopped != "support-stable" or not margin > 0:
        return Instance(s, sizes, "not-applicable", None, TOL,
                        {**detail, "why": "alternation did not stop at a consistent "
                         "support with margin > 0 within the budget"})
    solved = _classify_and_solve(res, X, Y, detail)
    if solved is None:
        return Instance(s, sizes, "not-applicable", None, TOL,
                        {**detail, "why": "the support changed under the polish"})
    ep, gaps = solved
    detail.update(endpoint=ep.kind, grad_norm=ep.grad_norm, min_eig=ep.min_eig,
                  tol_g=ep.tol_g, tol_h=ep.tol_h, joint_gap=gaps["joint_gap"],
                  layer_gaps=gaps["layer_gaps"], solver_status=gaps["joint_status"],
                  layer_status=gaps["layer_status"], F=gaps["F"], F0=gaps["F0"])
    if fallback_of(gaps.get("joint_attempts") or []):
        detail["fallback"] = fallback_of(gaps["joint_attempts"])
    status, value = _verdict(ep, gaps, detail)
    detail["group"] = _group(tau)
    return Instance(s, sizes, status, value, TOL, detail)


def _deeper_instances(report: ClaimReport, seed: int, d: int, max_rounds: int) -> None:
    """Thorough profile: three-layer networks, each single layer's gap reported."""
    from altheory.alternation.alternation import alternate, c8_gaps, mlp

    for j in range(3):
        s = seed + 100 + j
        X, Y = _data(s, 60, d, 0.1, widths=(4, 4))
        res = alternate(mlp(d + 1, (8, 6), 1, tau=0.1, bias=False, seed=s), X, Y, lam=LAM,
                        weight_step="descent", descent_steps=50, max_rounds=max_rounds)
        gaps = c8_gaps(res.model, X, Y, loss="squared", lam=LAM)
        vals = [g for g in gaps["layer_gaps"].values() if g is not None]
        report.add(Instance(s, {"n": 60, "d": d + 1, "widths": [8, 6], "tau": 0.1,
                                "lam": LAM, "layers": 3}, "reported",
                            max(vals) if vals else None, None,
                            {"stopped": res.stopped, "layer_gaps": gaps["layer_gaps"],
                             "layer_status": gaps["layer_status"], "margin": gaps["margin"],
                             "note": "per-layer gaps only; the joint bound is C7's"}))


def require_joint_solves(report: ClaimReport, cases: list) -> None:
    """The solver evidence of C8: the joint optimum of the final support answered ``optimal``
    on the two-layer instances that reached it (step 3; not-applicable ones did not), at least
    one per threshold group planned (:func:`altheory.claims._solver.require_solver_checks`)."""
    require_solver_checks(
        report, {JOINT: len({_group(c[3]) for c in cases})},
        kind_of=lambda i: JOINT if (i.sizes.get("layers") == 2
                                    and "solver_status" in i.detail) else None,
        counted=lambda i: i.detail.get("solver_status") == "optimal")


def _conclude(report: ClaimReport, profile: str, cases: list) -> None:
    """The premise and lam conditions, the minimum evidence per threshold group, the
    certification rates and the notes."""
    from altheory.claims._descent import require_groups

    two = [i for i in report.instances if i.sizes.get("layers") == 2]
    na = sum(1 for i in two if i.status == "not-applicable")
    report.conditions.append(Condition("stable consistent support with margin > 0",
                                       na < len(two), {"met": len(two) - na, "of": len(two)},
                                       "the premise of C8; instances without it are not-applicable"))
    report.conditions.append(Condition("lam > 0", LAM > 0, LAM, "weight decay (C4 group lasso)"))
    require_groups(report, lambda i: i.detail.get("group") if i.sizes.get("layers") == 2 else None,
                   MIN_EVIDENCE[profile], groups={_group(c[3]) for c in cases})
    require_joint_solves(report, cases)
    own = sum(1 for i in two if i.detail.get("certified_point") == "alternation")
    pol = sum(1 for i in two if i.detail.get("certified_point") == "newton-polish")
    report.rates = {"alternation": {"runs": len(two), "premise_met": len(two) - na,
                                    "certified_own_end_point": own, "certified_after_polish": pol}}
    report.notes.append(f"certified end points: {own} the alternation's own, {pol} after a Newton "
                        f"polish (of {len(two) - na} runs that met the premise, {len(two)} run).")
    report.notes.append("Joint optimum by cvxpy group lasso (Clarabel/SCS), independent of the "
                        "L-BFGS weight step; end points classified with rtol_g=1e-7, rtol_h=1e-6 "
                        "of F(0) (altheory.descent.endpoints).")


@register("C8", "Globally optimal given the support", asserted=True)
def check(profile: str = "quick", seed: int = 0) -> ClaimReport:
    from threadpoolctl import threadpool_limits

    report = ClaimReport("C8", "Globally optimal given the support", True,
                         "normalised gap (F - F*)/F(0) on the final support")
    cases, max_rounds = _cases(profile)
    d = 3
    with threadpool_limits(1):
        found: set[str] = set()
        for j, n, h, tau in cases:
            if profile == "quick" and _group(tau) in found:
                continue
            inst = report.add(_two_layer_instance(seed + j, n, d, h, tau, max_rounds))
            if inst.status in ("pass", "fail"):
                found.add(_group(tau))
        if profile != "quick":  # deeper: per-layer gaps, reported
            _deeper_instances(report, seed, d, max_rounds)
    _conclude(report, profile, cases)
    return report
