r"""Float comparisons with a stated slack: the one rule the package and its tests use.

Two computed floats that are equal, or ordered, in exact arithmetic differ in floating point by
rounding that grows with the magnitudes that were added up to get them. The rule:

.. math:: a \preceq b \iff a \le b + \kappa\,\varepsilon\,\max(|a|, |b|, s),

with :math:`\varepsilon` the machine epsilon of the dtype compared (float64 unless said),
:math:`\kappa` a stated factor (default :data:`KAPPA` = 64: a few dozen roundings, the depth of
a short reduction) and :math:`s` an optional scale: the magnitude of the *inputs* of the
computation when the compared values may themselves be near zero through cancellation (a primal
and a dual objective that nearly cancel, a point at a cone's apex). Without a scale, values at
or near zero are compared with no slack.

Nothing else is accepted: a comparison with a larger slack states it as a tolerance of its own
(``rtol``/``atol``), named for the check it belongs to, never as "rounding".

Examples
--------
>>> leq(1.0 + 1e-16, 1.0)
True
>>> leq(1.0 + 1e-12, 1.0)
False
>>> leq(3e-16, 0.0, scale=1.0)      # a lower bound 3e-16 above 0 on an objective of size 1
True
"""

from __future__ import annotations

import numpy as np

__all__ = ["KAPPA", "slack", "leq", "geq", "close", "assert_leq", "assert_close"]

KAPPA = 64.0


def slack(*values, scale: float = 0.0, kappa: float = KAPPA, dtype=np.float64) -> float:
    r"""The rounding slack :math:`\kappa\,\varepsilon\,\max(|v_1|, …, |v_k|, s)`.

    ``values`` may be scalars or arrays (their largest finite magnitude counts: an infinite value
    compares as infinite, it does not make the slack infinite); ``scale`` is ``s``.
    """
    if kappa < 0 or not np.isfinite(kappa):
        raise ValueError(f"kappa must be a finite number >= 0; got kappa={kappa!r}.")
    mags = [abs(float(scale))]
    for v in values:
        a = np.abs(np.asarray(v, dtype=np.float64))
        a = a[np.isfinite(a)]
        if a.size:
            mags.append(float(np.max(a)))
    return float(kappa) * float(np.finfo(dtype).eps) * max(mags)


def leq(a, b, *, scale: float = 0.0, kappa: float = KAPPA, dtype=np.float64) -> bool:
    r""":math:`a \le b` up to the rounding slack of the module docstring (elementwise, all)."""
    a_ = np.asarray(a, dtype=np.float64)
    b_ = np.asarray(b, dtype=np.float64)
    if np.isnan(a_).any() or np.isnan(b_).any():
        return False
    s = slack(a_, b_, scale=scale, kappa=kappa, dtype=dtype)
    return bool(np.all(a_ <= b_ + s))


def geq(a, b, **kw) -> bool:
    r""":math:`a \ge b` up to the rounding slack (:func:`leq` with the sides swapped)."""
    return leq(b, a, **kw)


def close(a, b, **kw) -> bool:
    r""":math:`a = b` up to the rounding slack: :func:`leq` both ways."""
    return leq(a, b, **kw) and leq(b, a, **kw)


def assert_leq(a, b, *, scale: float = 0.0, kappa: float = KAPPA, dtype=np.float64,
               what: str = "") -> None:
    """``assert leq(a, b)`` with a message that says expected, got and the slack used."""
    if not leq(a, b, scale=scale, kappa=kappa, dtype=dtype):
        a_ = np.asarray(a, dtype=np.float64)
        b_ = np.asarray(b, dtype=np.float64)
        s = slack(a_, b_, scale=scale, kappa=kappa, dtype=dtype)
        d = a_ - b_
        excess = float(np.nanmax(d)) if d.size and not np.isnan(d).all() else float("nan")
        raise AssertionError(f"{what + ': ' if what else ''}expected a <= b up to the rounding "
                             f"slack {s:.3g} (kappa={kappa:g}, scale={scale:.3g}); got "
                             f"a - b = {excess:.3g} (a={a!r}, b={b!r})")


def assert_close(a, b, *, scale: float = 0.0, kappa: float = KAPPA, dtype=np.float64,
                 what: str = "") -> None:
    """``assert close(a, b)`` with the message of :func:`assert_leq`."""
    assert_leq(a, b, scale=scale, kappa=kappa, dtype=dtype, what=what)
    assert_leq(b, a, scale=scale, kappa=kappa, dtype=dtype, what=what)
