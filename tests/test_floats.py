"""The float-comparison rule (altheory.floats): the one slack every check of the package uses.

.. math:: a \\preceq b \\iff a \\le b + \\kappa\\,\\varepsilon\\,\\max(|a|, |b|, s)

Tested: true within the slack and false just beyond it (1 + kappa eps / 2 and 1 + 2 kappa eps
against 1), each side of leq / geq / close; the scale s used (and nothing else where it is 0);
kappa and the dtype's eps used; NaN never passes; infinities compare as infinities (they do not
make the slack infinite); bad kappa refused; the assertion messages say expected, got and the
slack; and the premise of the default kappa: a sum of up to 64 terms, summed in any order, is
within the slack of its exact value at the scale of the sum of the magnitudes.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from altheory.floats import KAPPA, assert_close, assert_leq, close, geq, leq, slack

EPS = float(np.finfo(np.float64).eps)
K = KAPPA * EPS          # the slack relative to a magnitude of 1


def test_leq_geq_close_true_within_the_slack_false_just_beyond():
    """1 + kappa eps / 2 is <= 1, 1 + 2 kappa eps is not (the slack at magnitude ~1 is kappa eps);
    geq is leq with the sides swapped, close is both; an order that holds needs no slack."""
    within, beyond = 1.0 + K / 2, 1.0 + 2 * K
    assert leq(within, 1.0) and not leq(beyond, 1.0)
    assert leq(1.0, beyond) and leq(1.0, within)                  # the order that holds
    assert geq(1.0, within) and not geq(1.0, beyond)
    assert geq(beyond, 1.0)
    assert close(within, 1.0) and close(1.0, within)
    assert not close(beyond, 1.0) and not close(1.0, beyond)
    # the same at another magnitude: relative to max(|a|, |b|)
    assert leq(1e6 * within, 1e6) and not leq(1e6 * beyond, 1e6)
    assert leq(-1e-6, -1e-6 * within) and not leq(-1e-6, -1e-6 * beyond)


def test_slack_is_kappa_eps_times_the_largest_magnitude():
    assert slack(1.0, -3.0) == K * 3.0
    assert slack([0.5, -2.0], 1.0) == K * 2.0                     # arrays: their largest entry
    assert slack(1.0, scale=10.0) == K * 10.0
    assert slack(1.0, kappa=2.0) == 2 * EPS
    assert slack(1.0, dtype=np.float32) == KAPPA * float(np.finfo(np.float32).eps)
    assert slack() == 0.0 and slack([]) == 0.0


def test_scale_is_the_magnitude_of_the_inputs():
    """Values near 0 through cancellation: without a scale they get (almost) no slack, with the
    inputs' magnitude as scale the rounding of that magnitude is allowed, not more."""
    assert not leq(3e-16, 0.0)                                    # no scale: exact near 0
    assert leq(3e-16, 0.0, scale=1.0)                             # a bound 3e-16 above, F ~ 1
    assert not leq(2 * K, 0.0, scale=1.0)                         # beyond the scale's rounding
    assert leq(2 * K, 0.0, scale=10.0)
    assert close(1e-15, -1e-15, scale=1.0) and not close(1e-15, -1e-15)
    assert_close(0.1 + 0.2 - 0.3, 0.0, scale=0.3)                 # 5.6e-17, the classic
    with pytest.raises(AssertionError):
        assert_close(0.1 + 0.2 - 0.3, 0.0)


def test_kappa_and_dtype_set_the_slack():
    a = 1.0 + 40 * EPS
    assert leq(a, 1.0) and not leq(a, 1.0, kappa=10.0)
    assert leq(a, 1.0, kappa=41.0) and not leq(a, 1.0, kappa=39.0)
    assert not leq(1.0 + EPS, 1.0, kappa=0.0) and leq(1.0, 1.0, kappa=0.0)   # exact
    f32 = 1.0 + 1e-6                                              # 8.4 eps of float32
    assert leq(f32, 1.0, dtype=np.float32) and not leq(f32, 1.0)


def test_arrays_compare_elementwise_with_one_slack():
    assert leq([1.0, 2.0], [1.0, 2.0 + 1e-15])
    assert not leq([1.0, 3.0], [1.0, 2.0])
    assert leq(np.zeros(3), [0.0, 1.0, 2.0]) and not geq(np.zeros(3), [0.0, 1.0, 2.0])
    # the slack is that of the largest magnitude compared: 1e-20 above 0 beside 1e3 is rounding
    assert leq([1e-20, 1e3], [0.0, 1e3]) and not leq([1e-20], [0.0])
    assert leq([], []) and close(np.empty((0, 3)), np.empty((0, 3)))


def test_nan_never_passes():
    nan = math.nan
    for a, b in ((nan, 1.0), (1.0, nan), (nan, nan), ([0.0, nan], [1.0, 1.0])):
        assert not leq(a, b) and not geq(a, b) and not close(a, b)
        assert not leq(a, b, scale=1e300) and not leq(a, b, kappa=1e300)
        with pytest.raises(AssertionError):
            assert_leq(a, b)
        with pytest.raises(AssertionError):
            assert_close(a, b)


def test_infinities_compare_as_infinities():
    """An infinite value does not make the slack infinite: inf <= 1 is false, -inf <= 1 true."""
    inf = math.inf
    assert not leq(inf, 1.0) and leq(1.0, inf) and leq(-inf, 1.0) and not leq(1.0, -inf)
    assert not close(inf, 1.0) and not close(-inf, 1.0) and close(inf, inf)
    assert not leq([inf, 0.0], [1.0, 0.0]) and leq([-inf, 1.0], [0.0, 1.0 - 1e-17])


@pytest.mark.parametrize("kappa", [-1.0, math.nan, math.inf])
def test_bad_kappa_is_refused(kappa):
    for call in (lambda: slack(1.0, kappa=kappa), lambda: leq(1.0, 1.0, kappa=kappa),
                 lambda: close(1.0, 1.0, kappa=kappa), lambda: assert_leq(1.0, 1.0, kappa=kappa)):
        with pytest.raises(ValueError, match=r"kappa must be a finite number >= 0; got kappa="):
            call()


def test_assertion_messages_say_expected_got_and_the_slack():
    with pytest.raises(AssertionError) as ei:
        assert_leq(1.0 + 1e-10, 1.0, scale=0.5, what="lower bound vs upper bound")
    msg = str(ei.value)
    assert msg.startswith("lower bound vs upper bound: expected a <= b up to the rounding slack ")
    assert f"{K * (1.0 + 1e-10):.3g}" in msg and "kappa=64" in msg and "scale=0.5" in msg
    assert "got a - b = 1e-10" in msg
    with pytest.raises(AssertionError, match=r"^expected a <= b .* got a - b = 0\.5"):
        assert_close(1.0, 1.5, kappa=1.0)                         # the failing side is reported
    with pytest.raises(AssertionError, match=r"got a - b = 0\.5"):
        assert_close(1.5, 1.0)
    assert_leq(1.0 + K / 2, 1.0) is None and assert_close(1.0, 1.0 + K / 2) is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False), min_size=1,
                max_size=64), st.randoms(use_true_random=False))
def test_a_sum_of_64_terms_in_any_order_is_within_the_default_slack(terms, rnd):
    """The premise of KAPPA = 64: float64 sums of n <= 64 terms (np.sum's pairwise order, a
    shuffled left-to-right order) are within the slack of the exact sum (Fraction) at the scale
    of sum |x_i| (each partial sum rounds once: error <= (n - 1) eps sum |x_i|)."""
    exact = float(sum(Fraction(t) for t in terms))
    scale = float(np.sum(np.abs(terms)))
    shuffled = list(terms)
    rnd.shuffle(shuffled)
    left = 0.0
    for t in shuffled:
        left += t
    for s in (float(np.sum(terms)), left, math.fsum(terms)):
        assert_close(s, exact, scale=scale, what=f"sum of {len(terms)} terms")
