r"""The registry of claims (docs/claims.md C1–C9) and the report every check returns.

Each claim module in this package (``c1_linearization.py``, ``c2_linear_region.py``, …) defines
one check function and registers it with :func:`register`::

    @register("C1", "Linear given the support", asserted=True)
    def check(profile: Profile, seed: int) -> ClaimReport: ...

Modules named ``c<digit>…`` are discovered automatically (from an installed wheel too), so
``altheory verify`` runs every registered claim. A check *measures*; whether the claim held on an
instance is recorded per instance with one of the statuses below, and never tuned away.

Instance statuses
-----------------
``pass``           asserted and within tolerance.
``fail``           asserted and violated — a finding; the instance (seed, sizes) is replayable.
``reported``       measured but not asserted (rates, speeds, "not asserted" parts of a claim).
``not-converged``  a descent run that did not reach a certified end point (not a counterexample).
``saddle``         a descent end point with a clearly negative Hessian eigenvalue.
``solver-<s>``     the solver returned status ``s`` (anything but optimal): never counted.
``not-applicable`` the claim's conditions do not hold on this instance (e.g. margin 0).
``error``          the check raised; the traceback is in the instance's ``detail``.

Verdicts
--------
``FAIL``        an asserted instance failed (a finding).
``ERROR``       the check raised (its traceback is in the report); nothing it measured counts.
``UNVERIFIED``  an asserted claim with no counted instance, or below one of its stated minima
                of evidence (:class:`Evidence`): too few end points certified as local minima in
                a condition group, or too few counted instances of a solver check.
``PASS``        asserted, every counted instance passed, and every evidence minimum is met.
``REPORTED``    a claim that is measured, not asserted.
"""

from __future__ import annotations

import importlib
import json
import math
import pkgutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Literal

from altheory.certificates.conditions import Condition

__all__ = ["Profile", "Condition", "Instance", "Evidence", "EvidenceKind", "EVIDENCE_KINDS",
           "ClaimReport", "Claim", "register", "registry", "get_claim", "resolve_claim_ids",
           "error_report", "Timer"]

Profile = Literal["quick", "thorough"]
COUNTED = ("pass", "fail")
EvidenceKind = Literal["certified local minima", "solver instances counted"]
#: what an :class:`Evidence` counts: end points certified as local minima (descent-based claims)
#: or counted instances of one asserted solver check (:mod:`altheory.claims._solver`)
EVIDENCE_KINDS: tuple[str, ...] = ("certified local minima", "solver instances counted")


@dataclass
class Instance:
    """One instance a check ran: enough to replay it (seed, sizes) and what it measured."""

    seed: int
    sizes: dict[str, Any]
    status: str
    value: float | None = None  # the measured error or gap
    tol: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Evidence:
    r"""The minimum evidence of one group of a claim's instances: met iff ``counted >= required``.

    Below ``required`` the claim is UNVERIFIED, never PASS (docs/claims.md, "When a verdict
    means something"). What ``counted`` counts is the evidence's ``kind``:

    ``"certified local minima"``
        ``group`` is a condition group of a descent-based claim (e.g. ``loss=squared, lam>0``);
        ``counted`` is the number of its end points certified as local minima (raw or polished,
        :mod:`altheory.claims._descent`) whose gap was asserted; ``runs`` the descent runs.
    ``"solver instances counted"``
        ``group`` is one kind of asserted solver check (e.g. C3's ``fast-vs-cvxpy``);
        ``counted`` is the number of its instances whose solvers answered and whose comparison
        was asserted (pass or fail); ``runs`` the instances attempted
        (:mod:`altheory.claims._solver`).

    Examples
    --------
    >>> Evidence("fast-vs-cvxpy", 4, 3, 4, kind="solver instances counted").met
    False
    """

    group: str
    required: int
    counted: int
    runs: int = 0
    kind: str = "certified local minima"

    @property
    def met(self) -> bool:
        return self.counted >= self.required

    @property
    def certified(self) -> int:
        """The name ``counted`` had when only certified local minima were counted (kept for
        callers and for readers of older reports)."""
        return self.counted

    @certified.setter
    def certified(self, value: int) -> None:
        self.counted = value


@dataclass
class ClaimReport:
    """The verification report of one claim (docs/claims.md, "What a verification report holds")."""

    claim: str
    title: str
    asserted: bool
    metric: str  # what `value` measures, e.g. "relative error" or "normalised gap"
    conditions: list[Condition] = field(default_factory=list)
    instances: list[Instance] = field(default_factory=list)
    wall_time: float = 0.0
    notes: list[str] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    rates: dict[str, Any] = field(default_factory=dict)  # measured rates, e.g. per method
    error: str | None = None  # the traceback when the check raised

    @property
    def counts(self) -> Counter:
        return Counter(inst.status for inst in self.instances)

    @property
    def n_pass(self) -> int:
        return self.counts["pass"]

    @property
    def n_fail(self) -> int:
        return self.counts["fail"]

    @property
    def pass_rate(self) -> float:
        """Passes over counted (pass + fail) instances; NaN when none was counted."""
        counted = self.n_pass + self.n_fail
        return self.n_pass / counted if counted else math.nan

    @property
    def worst(self) -> float:
        """Largest measured value over the counted instances; NaN when none was measured, and
        NaN when a counted value is NaN (a NaN measurement is never hidden by a finite one:
        Python's ``max`` would keep or drop it depending on the order of the instances)."""
        vals = [i.value for i in self.instances if i.status in COUNTED and i.value is not None]
        if not vals or any(math.isnan(v) for v in vals):
            return math.nan
        return max(vals)

    @property
    def solver_statuses(self) -> dict[str, int]:
        c: Counter = Counter()
        for inst in self.instances:
            for k, v in inst.detail.items():
                if k.endswith("solver_status") and isinstance(v, str):
                    c[v] += 1
        return dict(c)

    @property
    def fallbacks(self) -> dict[str, int]:
        """Instances whose value rests on a solve that fell back from one solver to another,
        per path (``detail["fallback"]``, e.g. ``"altheory-pe->clarabel"``; never silent)."""
        c: Counter = Counter()
        for inst in self.instances:
            fb = inst.detail.get("fallback")
            if isinstance(fb, str) and fb:
                c[fb] += 1
        return dict(c)

    @property
    def evidence_met(self) -> bool:
        """Whether every stated minimum evidence (:class:`Evidence`) is met."""
        return all(e.met for e in self.evidence)

    @property
    def verdict(self) -> str:
        """``FAIL``, ``ERROR``, ``UNVERIFIED``, ``PASS`` or ``REPORTED`` (module docstring)."""
        if self.n_fail:
            return "FAIL"
        if self.error is not None or self.counts["error"]:
            return "ERROR"
        if self.asserted:
            return "PASS" if (self.n_pass and self.evidence_met) else "UNVERIFIED"
        return "REPORTED"

    def require(self, group: str, required: int, counted: int, runs: int = 0, *,
                kind: EvidenceKind = "certified local minima") -> Evidence:
        """State the minimum evidence of one group (see :class:`Evidence`) and record it.

        Raises
        ------
        ValueError
            ``required`` is not an int >= 1, ``counted`` or ``runs`` is negative, or ``kind``
            is not one of :data:`EVIDENCE_KINDS`.
        """
        if isinstance(required, bool) or not isinstance(required, int) or required < 1:
            raise ValueError(f"required must be an int >= 1 (a minimum of 0 verifies nothing); "
                             f"got {required!r} for group {group!r}.")
        if kind not in EVIDENCE_KINDS:
            raise ValueError(f"kind must be one of {EVIDENCE_KINDS}; got {kind!r} for group "
                             f"{group!r}.")
        if int(counted) < 0 or int(runs) < 0:
            raise ValueError(f"counted and runs must be >= 0; got counted={counted!r}, "
                             f"runs={runs!r} for group {group!r}.")
        ev = Evidence(group, required, int(counted), int(runs), kind)
        self.evidence.append(ev)
        return ev

    def add(self, inst: Instance) -> Instance:
        self.instances.append(inst)
        return inst

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for e, ev in zip(d["evidence"], self.evidence):
            # "certified": the name of "counted" in reports written before evidence had a kind
            e.update(met=ev.met, certified=ev.counted)
        d.update(verdict=self.verdict, evidence_met=self.evidence_met,
                 pass_rate=_nan_to_none(self.pass_rate),
                 worst=_nan_to_none(self.worst), counts=dict(self.counts),
                 solver_statuses=self.solver_statuses, fallbacks=self.fallbacks)
        return d

    def write_json(self, path) -> None:
        """The report as JSON (atomic: a unique temp file, then ``os.replace``)."""
        from altheory.io import write_text_atomic

        write_text_atomic(path, json.dumps(self.to_dict(), indent=2, default=_json_default))


def _nan_to_none(v: float):
    return None if (isinstance(v, float) and math.isnan(v)) else v


def _json_default(o):
    import numpy as np

    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.bool_,)):
        return bool(o)
    return str(o)


@dataclass
class Claim:
    id: str
    title: str
    asserted: bool
    check: Callable[..., ClaimReport]
    module: str

    def run(self, profile: Profile = "quick", seed: int = 0) -> ClaimReport:
        if profile not in ("quick", "thorough"):
            raise ValueError(f"profile must be 'quick' or 'thorough'; got {profile!r}.")
        import warnings

        t0 = time.perf_counter()
        with warnings.catch_warnings():
            # torch's note that padding='same' with an even kernel copies the input: a cost
            # remark about the random architectures, not a result
            warnings.filterwarnings("ignore", message="Using padding='same'")
            report = self.check(profile=profile, seed=seed)
        report.wall_time = time.perf_counter() - t0
        return report


_REGISTRY: dict[str, Claim] = {}


def register(claim_id: str, title: str, *, asserted: bool = True):
    """Decorator registering a check ``check(profile, seed) -> ClaimReport`` under ``claim_id``."""
    def deco(fn):
        if claim_id in _REGISTRY and _REGISTRY[claim_id].module != fn.__module__:
            raise ValueError(f"claim {claim_id} registered twice: {_REGISTRY[claim_id].module} and "
                             f"{fn.__module__}.")
        _REGISTRY[claim_id] = Claim(claim_id, title, asserted, fn, fn.__module__)
        return fn
    return deco


def _discover() -> None:
    for info in pkgutil.iter_modules(__path__):
        if info.name[:1] == "c" and info.name[1:2].isdigit():
            importlib.import_module(f"{__name__}.{info.name}")


def registry() -> dict[str, Claim]:
    """All registered claims, sorted by id (C1, C2, …)."""
    _discover()
    return dict(sorted(_REGISTRY.items(), key=lambda kv: int(kv[0][1:])))


def get_claim(claim_id: str) -> Claim:
    """The registered claim ``claim_id`` (case-insensitive, e.g. ``"c4"``).

    Raises
    ------
    TypeError
        ``claim_id`` is not a string.
    ValueError
        Unknown id (the message lists the registered ones and the closest match).
    """
    if not isinstance(claim_id, str):
        raise TypeError(f"claim id must be a string like 'C4'; got {type(claim_id).__name__}.")
    claims = registry()
    key = claim_id.strip().upper()
    if key not in claims:
        import difflib

        close = difflib.get_close_matches(key, list(claims), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown claim {claim_id!r}; registered claims are {list(claims)}.{hint}")
    return claims[key]


def resolve_claim_ids(ids) -> list[str]:
    """Validate a claim selection before any work: a comma-separated string or a list of ids.

    Returns the registered ids (upper case, first occurrence order, duplicates dropped).

    Raises
    ------
    TypeError
        Not a string or an iterable of strings.
    ValueError
        The selection is empty (``''``, ``','``, ``[]``), or names an unknown claim.

    Examples
    --------
    >>> resolve_claim_ids("c4, C1,c4")
    ['C4', 'C1']
    """
    if isinstance(ids, str):
        parts = ids.split(",")
    elif ids is None:
        raise TypeError("ids must be a comma-separated string or a list of claim ids; got None. "
                        "Pass None to run_claims to run every claim.")
    else:
        parts = list(ids)
    if any(not isinstance(p, str) for p in parts):
        raise TypeError(f"claim ids must be strings like 'C4'; got {parts!r}.")
    parts = [p.strip() for p in parts if p.strip()]
    if not parts:
        raise ValueError(f"expected at least one claim id (e.g. 'C1,C4'); got {ids!r}, which "
                         f"selects nothing. Registered claims: {list(registry())}.")
    out: list[str] = []
    for p in parts:
        cid = get_claim(p).id
        if cid not in out:
            out.append(cid)
    return out


def error_report(claim: "Claim", exc: BaseException, seed: int) -> ClaimReport:
    """The report of a check that raised: verdict ``ERROR``, the traceback kept in the JSON."""
    import traceback

    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    report = ClaimReport(claim.id, claim.title, claim.asserted, metric="—", error=tb)
    report.add(Instance(int(seed), {}, "error", None, None,
                        {"exception": f"{type(exc).__name__}: {exc}", "traceback": tb}))
    report.notes.append(f"the check raised {type(exc).__name__}: {exc} (traceback in the JSON)")
    return report


class Timer:
    """``with Timer() as t: ...``; ``t.seconds`` afterwards."""

    def __enter__(self):
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self._t0
        return False
