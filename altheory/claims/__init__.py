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

__all__ = ["Profile", "Condition", "Instance", "ClaimReport", "Claim", "register", "registry",
           "get_claim", "Timer"]

Profile = Literal["quick", "thorough"]
COUNTED = ("pass", "fail")


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
        """Largest measured value over the counted instances (NaN when none)."""
        vals = [i.value for i in self.instances if i.status in COUNTED and i.value is not None]
        return max(vals) if vals else math.nan

    @property
    def solver_statuses(self) -> dict[str, int]:
        c: Counter = Counter()
        for inst in self.instances:
            for k, v in inst.detail.items():
                if k.endswith("solver_status") and isinstance(v, str):
                    c[v] += 1
        return dict(c)

    @property
    def verdict(self) -> str:
        """``FAIL`` (an asserted instance failed), ``PASS``, ``UNVERIFIED`` (nothing counted while
        asserted) or ``REPORTED`` (a claim that is measured, not asserted)."""
        if self.n_fail:
            return "FAIL"
        if self.asserted:
            return "PASS" if self.n_pass else "UNVERIFIED"
        return "REPORTED"

    def add(self, inst: Instance) -> Instance:
        self.instances.append(inst)
        return inst

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(verdict=self.verdict, pass_rate=_nan_to_none(self.pass_rate),
                 worst=_nan_to_none(self.worst), counts=dict(self.counts),
                 solver_statuses=self.solver_statuses)
        return d

    def write_json(self, path) -> None:
        from pathlib import Path

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, default=_json_default))
        tmp.replace(path)


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
    claims = registry()
    key = claim_id.strip().upper()
    if key not in claims:
        raise ValueError(f"unknown claim {claim_id!r}; registered claims are {list(claims)}.")
    return claims[key]


class Timer:
    """``with Timer() as t: ...``; ``t.seconds`` afterwards."""

    def __enter__(self):
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self._t0
        return False
