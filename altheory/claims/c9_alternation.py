r"""C9 — Alternation.

Alternate a support step :math:`S \leftarrow S(W)` (a PHT forward pass) with a weight step on the
fixed-support problem of :math:`S`. THEOREM (C9): with the *support-preserving* weight step
(per-layer convex programs with the consistency constraints :math:`z \ge \tau + \varepsilon`
where :math:`s = 1`, :math:`z \le \tau` where :math:`s = 0`, on every held layer), the current
weights are feasible and the support cannot change, so the true PHT objective never increases.

Check, per instance (teacher–student data, a small PHT/ReLU MLP, seeded):

* *asserted* — the support-preserving run (:func:`altheory.alternation.alternation.alternate`,
  ``weight_step="support-preserving"``): the true objective after every per-layer solve is at
  most the one before, up to ``1e-9 * F(0)`` (the solver's accuracy). The value is the largest
  increase over :math:`F(0)` (0 when none). A cvxpy status other than optimal makes the instance
  ``solver-<status>``, never a pass.
* *asserted* — the theorem's invariant after every sub-step (:func:`invariant`): the support
  recomputed from the new weights equals the held one, and at :math:`\tau > 0` the kept entries
  keep the slack :math:`z \ge \tau + \varepsilon_l` (:math:`\varepsilon_l = \min(\varepsilon,
  \mu_{on}/2)`, relative shortfall ``<= 1e-3``); at least one :math:`\tau > 0` instance must
  have a binding consistency constraint (else UNVERIFIED), so the slack is exercised.
* *reported* — the ``"exact"`` (and, thorough, ``"descent"``) variants: rounds until the support
  stops changing (or cycles), flips per round and per layer, whether their true objective was
  monotone (it need not be).

The loss-versus-epochs and loss-versus-seconds comparison with SGD / Adam is ``altheory
alternate`` (figures 3 and 4), measured, never asserted.
"""

from __future__ import annotations

from altheory.claims import ClaimReport, Condition, Instance, register

TOL = 1e-9
TOL_SLACK = 1e-3  # relative shortfall of the kept margin below the slack (solver accuracy)


def _data(seed: int, n: int, d: int, tau: float):
    from altheory.data import teacher_student

    ts = teacher_student(n, d, widths=(4,), tau=tau, seed=seed)
    return ts.X, ts.Y.reshape(-1)


def invariant(res, tau: float, epsilon: float) -> dict:
    r"""The invariant of C9 after every support-preserving sub-step, from the alternation's log.

    * ``step_flips_total``: support entries that differ between the held support and the
      support recomputed after each sub-step (must be 0);
    * ``slack_violation`` (tau > 0 only): the largest relative shortfall of the kept entries'
      margin after a step below the slack the theorem needs,
      ``epsilon_l = min(epsilon, mu_on_before / 2)`` (:math:`z \ge \tau + \varepsilon`);
    * ``binding_steps``: sub-steps where some consistency constraint binds at the solution.
    """
    import math

    flips = sum(f for r in res.rounds[1:] for f in r.step_flips)
    worst = 0.0
    for r in res.rounds[1:]:
        for m in r.step_margins:
            if tau > 0 and math.isfinite(m["on_before"]):
                need = min(epsilon, 0.5 * m["on_before"])
                if need > 0:
                    worst = max(worst, (need - m["on_after"]) / need)
    binding = sum(1 for r in res.rounds[1:] for a in r.step_active if a > 0)
    return {"step_flips_total": int(flips), "slack_violation": float(worst),
            "binding_steps": int(binding)}


def _increase(res) -> float:
    seq = [res.rounds[0].objective]
    for r in res.rounds[1:]:
        seq.extend(r.step_objectives)
    inc = max((b - a for a, b in zip(seq, seq[1:])), default=0.0)
    return max(inc, 0.0) / res.config["F0"]


def _cases(profile: str):
    """``([(offset j, n, widths, tau, rounds), ...], reported weight steps)`` of a profile."""
    if profile == "quick":
        return [(0, 40, (6,), 0.1, 4), (1, 40, (6,), 0.0, 4)], ("exact",)
    cases = [(j, n, w, tau, 8) for j in range(4) for n, w in ((60, (8,)), (50, (6, 5)))
             for tau in (0.1, 0.0)]
    return cases, ("exact", "descent")


def _support_preserving_verdict(bad: list, inc: float, inv: dict) -> tuple[str, str | None]:
    """``(status, why)`` of a support-preserving run: a solver status other than optimal, a
    true objective that increased, or a broken invariant (flips, missing slack), else pass."""
    if bad:
        return f"solver-{bad[0]}", None
    if inc > TOL:
        return "fail", f"the true objective increased by {inc:.2e} x F(0)"
    if inv["step_flips_total"]:
        return "fail", (f"{inv['step_flips_total']} support entries changed "
                        "under support-preserving steps (invariant broken)")
    if inv["slack_violation"] > TOL_SLACK:
        return "fail", (
            f"kept entries end {inv['slack_violation']:.2e} (relative) below tau + epsilon: the "
            "slack that keeps PHT's jump at tau from flipping them was not imposed")
    return "pass", None


def _support_preserving_instance(s: int, sizes: dict, X, Y, eps: float) -> Instance:
    """The asserted run: the support-preserving alternation, monotone and invariant-keeping."""
    from altheory.alternation.alternation import alternate, mlp

    widths, tau, rounds = tuple(sizes["widths"]), sizes["tau"], sizes["rounds"]
    res = alternate(mlp(sizes["d"], widths, 1, tau=tau, seed=s), X, Y, weight_step="support-preserving",
                    max_rounds=rounds, epsilon=eps, lam=0.0)
    statuses = [st for r in res.rounds[1:] for st in r.statuses]
    bad = [st for st in statuses if st != "optimal"]
    inc = _increase(res)
    inv = invariant(res, tau, eps)
    detail = {"objectives": [r.objective for r in res.rounds],
              "flips": [sum(r.flips.values()) for r in res.rounds],
              "stopped": res.stopped, "solver_status": bad[0] if bad else "optimal",
              "variant": "support-preserving", **inv}
    status, why = _support_preserving_verdict(bad, inc, inv)
    if why is not None:
        detail["why"] = why
    return Instance(s, sizes, status, inc, TOL, detail)


def _reported_instance(s: int, sizes: dict, X, Y, step: str) -> Instance:
    """A reported run of another weight step (lam = 1e-3, three times the rounds): rounds to a
    stable support or a cycle, flips, monotonicity."""
    from altheory.alternation.alternation import alternate, mlp

    widths, tau, rounds = tuple(sizes["widths"]), sizes["tau"], sizes["rounds"]
    r2 = alternate(mlp(sizes["d"], widths, 1, tau=tau, seed=s), X, Y, weight_step=step,
                   max_rounds=3 * rounds, lam=1e-3, descent_steps=30,
                   stop_on_cycle=(step == "exact"))
    flips = [sum(r.flips.values()) for r in r2.rounds]
    return Instance(s, {**sizes, "lam": 1e-3, "rounds": 3 * rounds}, "reported",
                    _increase(r2), None,
                    {"variant": step, "stopped": r2.stopped,
                     "rounds_run": r2.n_rounds, "flips": flips,
                     "flips_per_layer": [r.flips for r in r2.rounds],
                     "monotone": r2.is_monotone(),
                     "objectives": [r.objective for r in r2.rounds]})


def _conclude(report: ClaimReport) -> None:
    """The solver condition, the binding-constraint evidence at tau > 0 and the note on the
    reported variants."""
    sp = [i for i in report.instances if i.detail.get("variant") == "support-preserving"]
    report.conditions.append(Condition(
        "support-preserving step optimal", all(not i.status.startswith("solver-") for i in sp),
        {i.detail["solver_status"]: sum(1 for k in sp if k.detail["solver_status"] == i.detail["solver_status"]) for i in sp},
        "cvxpy status of every per-layer program (Clarabel, SCS fallback)"))
    slack_bound = sum(1 for i in sp if i.sizes["tau"] > 0 and i.status == "pass"
                      and i.detail.get("binding_steps", 0) > 0)
    report.require("tau>0, consistency constraints binding", 1, slack_bound,
                   sum(1 for i in sp if i.sizes["tau"] > 0))
    rep = [i for i in report.instances if i.status == "reported"]
    stable = sum(1 for i in rep if i.detail["stopped"] == "support-stable")
    cyc = sum(1 for i in rep if i.detail["stopped"].startswith("cycle"))
    report.notes.append(f"reported variants: {stable}/{len(rep)} reached a stable support, {cyc} "
                        f"cycled, {sum(1 for i in rep if not i.detail['monotone'])} had a "
                        "non-monotone true objective (allowed: only the support-preserving step "
                        "is claimed monotone).")


@register("C9", "Alternation (support-preserving is monotone)", asserted=True)
def check(profile: str = "quick", seed: int = 0) -> ClaimReport:
    from threadpoolctl import threadpool_limits

    report = ClaimReport("C9", "Alternation (support-preserving is monotone)", True,
                         "largest increase of the true objective / F(0)")
    cases, reported_steps = _cases(profile)
    eps = 1e-3
    with threadpool_limits(1):
        for j, n, widths, tau, rounds in cases:
            s = seed + j
            d = 3
            X, Y = _data(s, n, d, tau)
            sizes = {"n": n, "d": d, "widths": list(widths), "tau": tau, "rounds": rounds,
                     "epsilon": eps, "loss": "squared", "lam": 0.0}
            report.add(_support_preserving_instance(s, sizes, X, Y, eps))
            for step in reported_steps:
                report.add(_reported_instance(s, sizes, X, Y, step))
    _conclude(report)
    return report
