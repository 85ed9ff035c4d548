"""Claim C2: inside the margin the support is constant and f acts linearly; crossings are detected."""

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

from altheory.claims import get_claim
from altheory.claims.c2_linear_region import check_instance
from altheory.testing import networks_and_inputs


@given(networks_and_inputs(max_n=1), st.integers(0, 2**31 - 1))
def test_c2_inside_margin_linear_and_crossing_detected(case, seed):
    delta = np.random.default_rng(seed).standard_normal(int(np.prod(case.x.shape[1:])))
    r = check_instance(case.model, case.x, 0, delta)
    assert r["inside"] in ("pass", "not-applicable"), r
    assert r["crossing"] in ("pass", "not-applicable"), r
    if r["inside"] == "not-applicable":
        assert r["margin"] == 0.0
    if r["crossing"] == "pass":
        assert r["crossing_flips"] >= 1


def test_c2_check_reports_counted_instances():
    report = get_claim("C2").run("quick", seed=100)
    assert report.verdict == "PASS"
    assert report.n_pass >= 0.7 * len(report.instances)


def test_c2_detects_a_wrong_linear_map():
    """The check can fail: a support from another weight gives a different map."""
    from torch import nn

    from altheory import PHT

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), PHT(), nn.Linear(8, 1)).double()
    x = torch.randn(1, 3, dtype=torch.float64)
    delta = np.array([1.0, -2.0, 0.5])
    r = check_instance(net, x, 0, delta)
    assert r["inside"] == "pass" and r["crossing"] == "pass"
    # a step past the first crossing is not linear any more
    t = 2 * r["crossing_t"]
    with torch.no_grad():
        f0, f1 = net(x), net(x + t * torch.from_numpy(delta))
    from altheory import linearize, support

    A, _ = linearize(net, support(net, x), 0)
    assert not np.allclose((f1 - f0).numpy().ravel(), t * A @ delta, rtol=1e-6)
