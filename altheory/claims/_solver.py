r"""Solver checks as evidence: a minimum of counted instances per check kind, every fallback named.

An asserted solver check (C3/C4: the fast certified solver against cvxpy; C4: the balanced map
of cvxpy's optimum; C5: the Pilanci–Ergen certificate, its cvxpy cross-check and the map to a
network; C8: the joint optimum of the final support) counts an instance only when its solvers
answered ``optimal``. A solver that breaks turns its instances into ``solver-<status>`` (or
falls back to another solver): the claim must then not PASS on its other checks alone.

Minimum (docs/claims.md, "When a verdict means something"). For each check kind,

.. math:: \text{required} = a - \lfloor a / 10 \rfloor,\qquad
          a = \max(\text{planned}, \text{attempted}),

at least 1: *planned* is what the profile's plan schedules for that kind (so a check that a
code path silently skips still needs its evidence), *attempted* the instances recorded. Below
ten instances every one must be counted: the quick profile's instances are small and
well-conditioned, each on its own solver path (loss; one conic solve or the working set), and
the certified solvers are given tolerances they reach there, so a lost instance is a broken
path, not bad luck. From ten on, one in ten may go uncounted: the thorough profile holds larger,
worse-conditioned problems on which a certified solver may honestly stop at its iteration budget
(``max_iter`` is "not certified", never a wrong answer) or Clarabel may end ``optimal_inaccurate``;
a broken solver loses far more than one in ten. The rule is a theorem of nothing: it bounds how
much of the evidence may vanish silently.

Fallbacks. A solve that fell back from one solver to another (the certified Pilanci–Ergen
solver to Clarabel, Clarabel to SCS, the fast per-layer solver to cvxpy) is recorded on every
instance whose value rests on it, ``detail["fallback"] = "altheory-pe->clarabel"`` (the solvers
tried, in order), counted by :attr:`altheory.claims.ClaimReport.fallbacks` and named in the
notes line of :func:`require_solver_checks`.
"""

from __future__ import annotations

from typing import Any, Callable

from altheory.claims import COUNTED

__all__ = ["SOLVER_EVIDENCE", "MISS_ONE_IN", "solver_minimum", "fallback_of",
           "require_solver_checks"]

SOLVER_EVIDENCE = "solver instances counted"
MISS_ONE_IN = 10  # from this many attempted instances on, one in MISS_ONE_IN may go uncounted


def solver_minimum(attempted: int) -> int:
    r"""The minimum of counted instances of a solver check: :math:`a - \lfloor a/10 \rfloor`, >= 1.

    Examples
    --------
    >>> [solver_minimum(a) for a in (0, 1, 4, 9, 10, 54)]
    [1, 1, 4, 9, 9, 49]
    """
    if isinstance(attempted, bool) or not isinstance(attempted, int) or attempted < 0:
        raise ValueError(f"attempted must be an int >= 0; got {attempted!r}.")
    return max(1, attempted - attempted // MISS_ONE_IN)


def fallback_of(result_or_attempts: Any) -> str | None:
    """The fallback path of a solve, ``"first->second[->third]"``, or None when one solver answered.

    ``result_or_attempts`` is a solver result with ``attempts`` (a list of ``(solver, status,
    seconds)``, as :class:`altheory.solvers.convex.ConvexResult` holds), such a list itself, or a
    list of solver names; a result without ``attempts`` (the fast solvers' own results) tried
    one solver.

    Examples
    --------
    >>> fallback_of([("altheory-pe", "max_iter", 0.1), ("clarabel", "optimal", 0.2)])
    'altheory-pe->clarabel'
    >>> fallback_of(["clarabel"]) is None
    True
    """
    if isinstance(result_or_attempts, (list, tuple)):
        attempts = result_or_attempts
    else:
        attempts = getattr(result_or_attempts, "attempts", None) or []
    names = [a if isinstance(a, str) else a[0] for a in attempts]
    return "->".join(names) if len(names) > 1 else None


def _check_kind(inst) -> str | None:
    return inst.sizes.get("check")


def _counted(inst) -> bool:
    return inst.status in COUNTED


def require_solver_checks(report, planned: dict[str, int], *,
                          kind_of: Callable[[Any], str | None] = _check_kind,
                          counted: Callable[[Any], bool] = _counted) -> None:
    """State the minimum of counted instances of each solver check kind on ``report``; note it.

    Parameters
    ----------
    report : ClaimReport
    planned : dict
        Check kind -> instances of that kind the profile's plan schedules (a kind planned but
        never recorded still needs its evidence).
    kind_of : callable, instance -> check kind or None
        Default: ``inst.sizes["check"]``.
    counted : callable, instance -> bool
        Whether an instance of a solver check counts. Default: its status is ``pass`` or
        ``fail`` (the solvers answered and the comparison was asserted).

    The notes line lists, per kind, counted / attempted and the minimum, and the fallbacks of
    the report (:attr:`altheory.claims.ClaimReport.fallbacks`), or says there was none.
    """
    parts = []
    for kind in sorted(planned):
        insts = [i for i in report.instances if kind_of(i) == kind]
        attempted = max(int(planned[kind]), len(insts))
        n = sum(bool(counted(i)) for i in insts)
        ev = report.require(kind, solver_minimum(attempted), n, attempted, kind=SOLVER_EVIDENCE)
        parts.append(f"{kind} {n}/{attempted} (>= {ev.required})")
    fb = report.fallbacks
    fallbacks = ("; ".join(f"{path} on {k} instance{'s' if k > 1 else ''}"
                           for path, k in sorted(fb.items())) if fb else "none")
    report.notes.append("solver checks, instances counted / attempted (minimum): "
                        + ", ".join(parts) + f"; solver fallbacks: {fallbacks}.")
