"""Claim C1, fast path: the adjoint (transpose) actions that compose A_S from weights and masks.

Each layer's action ``R -> R M`` (transposed convolution, average/max pooling adjoints) is
compared with the dense matrix ``M`` built column by column in ``_reference``; the composed
``A_S, c_S`` of ``Linearization.compose(method="adjoint")`` with the gated network on basis
vectors (``linearize_reference``), with the sparse-matrix composition, and with autograd.
float64, relative error <= 1e-10 (absolute 1e-12 for single layers of O(1) entries).
"""

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from torch import nn

from altheory import PHT, linearize, support
from altheory.floats import assert_close
from altheory.nets._reference import (adjoint_reference, linearize_reference, maxpool_operator_reference,
                                      module_operator_reference)
from altheory.nets.operators import (Linearization, conv_adjoint, conv_adjoint_transpose, maxpool_adjoint,
                                     pool_adjoint)
from altheory.testing import networks_and_inputs

TOL = 1e-10


def _assert_adjoint(got, M, R, what):
    """``got`` = R M (one row of R at a time) up to the rounding of the products' terms."""
    R = np.asarray(R)
    assert_close(np.asarray(got).reshape(R.shape[0], -1), adjoint_reference(M, R.reshape(R.shape[0], -1)),
                 scale=float((np.abs(R.reshape(R.shape[0], -1)) @ np.abs(M)).max(initial=0.0)), what=what)


def rel(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


def _rows(n, shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n, *shape), generator=g, dtype=torch.float64)


# -- one layer at a time ---------------------------------------------------------------------

@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 4), st.integers(1, 3), st.integers(0, 2),
       st.integers(1, 2), st.sampled_from([1, 2]), st.integers(3, 8), st.integers(0, 2), st.booleans())
def test_c1_conv_adjoint_is_rows_times_the_conv_matrix(cin_g, cout_g, k, s, p, dil, groups, hw, dw, same):
    """Any stride (trailing rows a strided conv drops: output_padding), padding incl. asymmetric
    'same' (even kernels), dilation, groups."""
    conv = nn.Conv2d(cin_g * groups, cout_g * groups, k, stride=1 if same else s,
                     padding="same" if same else p, dilation=dil, groups=groups).double()
    shape = (cin_g * groups, hw, hw + dw)
    assume(same or hw + 2 * p >= dil * (k - 1) + 1)
    with torch.no_grad():
        out_shape = tuple(conv(torch.zeros(1, *shape, dtype=torch.float64)).shape[1:])
    M, _ = module_operator_reference(conv, shape)
    R = _rows(3, out_shape)
    for adjoint in (conv_adjoint, conv_adjoint_transpose):
        got = adjoint(conv, R, shape)
        assert got.shape == (3, *shape)
        _assert_adjoint(got.numpy(), M, R.numpy(), f"{adjoint.__name__}")


@pytest.mark.parametrize("k, s, p, d, hw", [
    (3, 2, 0, 1, 6),   # output_padding 1: the last input row is never read
    (3, 2, 1, 1, 8),   # output_padding 1 with padding
    (1, 3, 0, 1, 8),   # output_padding 1, 1x1 strided shortcut
    (2, 1, "same", 1, 5),  # asymmetric 'same': 0 before, 1 after
    (4, 1, "same", 1, 6),  # asymmetric 'same': 1 before, 2 after
    (2, 1, "same", 3, 7),  # even kernel, odd dilation: asymmetric
    (3, 2, 0, 2, 9),   # dilation with stride
    (3, 1, "valid", 1, 6),  # padding given as a word
    ((2, 3), (2, 1), (1, 0), (1, 2), 7),  # non-square kernel, stride, padding and dilation
    ((2, 4), 1, "same", (2, 1), 6),  # 'same': symmetric along H, asymmetric along W
])
def test_c1_conv_adjoint_geometries_that_need_care(k, s, p, d, hw):
    conv = nn.Conv2d(2, 3, k, stride=s, padding=p, dilation=d).double()
    shape = (2, hw, hw)
    with torch.no_grad():
        out_shape = tuple(conv(torch.zeros(1, *shape, dtype=torch.float64)).shape[1:])
    M, _ = module_operator_reference(conv, shape)
    R = _rows(4, out_shape, seed=hw)
    for adjoint in (conv_adjoint, conv_adjoint_transpose):
        _assert_adjoint(adjoint(conv, R, shape).numpy(), M, R.numpy(), f"{adjoint.__name__}")


@given(st.integers(1, 3), st.integers(1, 3), st.integers(0, 1), st.booleans(), st.booleans(),
       st.sampled_from([None, 3]), st.integers(4, 7))
def test_c1_avgpool_adjoint_is_rows_times_the_pool_matrix(k, s, p, ceil, include_pad, divisor, hw):
    p = min(p, k // 2)
    pool = nn.AvgPool2d(k, s, p, ceil_mode=ceil, count_include_pad=include_pad, divisor_override=divisor)
    shape = (2, hw, hw + 1)
    out_shape = tuple(pool(torch.zeros(1, *shape, dtype=torch.float64)).shape[1:])
    M, _ = module_operator_reference(pool, shape)
    R = _rows(3, out_shape)
    _assert_adjoint(pool_adjoint(pool, R, shape).numpy(), M, R.numpy(), "pool adjoint")


@given(st.integers(1, 4), st.integers(1, 4), st.integers(2, 9))
def test_c1_adaptive_pool_adjoint_is_rows_times_the_pool_matrix(oh, ow, hw):
    pool = nn.AdaptiveAvgPool2d((oh, ow))
    shape = (2, hw, hw + 2)
    M, _ = module_operator_reference(pool, shape)
    R = _rows(2, (2, oh, ow))
    _assert_adjoint(pool_adjoint(pool, R, shape).numpy(), M, R.numpy(), "pool adjoint")


@given(st.integers(2, 3), st.integers(1, 3), st.integers(0, 1), st.integers(1, 2), st.booleans(),
       st.integers(4, 8), st.integers(0, 2**31 - 1))
def test_c1_maxpool_adjoint_scatters_by_the_recorded_argmax(k, s, p, d, ceil, hw, seed):
    """Overlapping windows (stride < kernel) select one input twice: the adjoint must add."""
    p = min(p, k // 2)
    assume(hw + 2 * p >= d * (k - 1) + 1)
    pool = nn.MaxPool2d(k, s, p, dilation=d, ceil_mode=ceil)
    shape = (2, hw, hw + 1)
    x = _rows(1, shape, seed=seed)
    y, idx = nn.functional.max_pool2d(x, k, s, p, d, ceil_mode=ceil, return_indices=True)
    M = maxpool_operator_reference(idx[0].numpy(), shape)
    np.testing.assert_allclose(M @ x.reshape(-1).numpy(), y.reshape(-1).numpy(), rtol=0, atol=0)
    R = _rows(3, tuple(y.shape[1:]), seed=seed + 1)
    _assert_adjoint(maxpool_adjoint(idx[0], R, shape).numpy(), M, R.numpy(), "max-pool adjoint")


def test_c1_maxpool_adjoint_adds_when_two_windows_pick_the_same_input():
    x = torch.tensor([[[[0.0, 5.0, 0.0, 3.0]]]], dtype=torch.float64)  # windows [0,1] and [1,2] both pick 1
    _, idx = nn.functional.max_pool2d(x, (1, 2), (1, 1), return_indices=True)
    R = torch.ones(1, 1, 1, 3, dtype=torch.float64)
    got = maxpool_adjoint(idx[0], R, (1, 1, 4)).reshape(-1).tolist()
    assert got == [0.0, 2.0, 0.0, 1.0]


# -- the composed operator -------------------------------------------------------------------

@given(networks_and_inputs(min_n=2, max_n=3, image_size=(3, 7)))
def test_c1_adjoint_composition_matches_basis_reference_for_every_sample(case):
    """Each sample's own support: A_S, c_S of sample i equal the gated network's on basis vectors."""
    S = support(case.model, case.x)
    y = case.model(case.x).detach().reshape(case.x.shape[0], -1).numpy()
    for i in range(case.x.shape[0]):
        A, c, _ = Linearization(case.model, S, i).compose(method="adjoint")
        A_ref, c_ref = linearize_reference(case.model, S, i)
        assert rel(A, A_ref) <= TOL and np.linalg.norm(c - c_ref) <= TOL * max(np.linalg.norm(c_ref), 1.0)
        xi = case.x[i].reshape(-1).numpy()
        assert np.linalg.norm(A @ xi + c - y[i]) <= TOL * max(np.linalg.norm(y[i]), 1.0)


@given(networks_and_inputs(max_n=1))
def test_c1_adjoint_and_sparse_compositions_agree_with_the_jacobian(case):
    S = support(case.model, case.x)
    lin = Linearization(case.model, S, 0)
    A, c, _ = lin.compose()
    A_sp, c_sp, _ = lin.compose(method="sparse")
    J = torch.autograd.functional.jacobian(lambda v: case.model(v[None])[0], case.x[0])
    J = J.reshape(A.shape[0], -1).numpy()
    assert rel(A, A_sp) <= TOL and rel(A, J) <= TOL
    assert np.linalg.norm(c - c_sp) <= TOL * max(np.linalg.norm(c_sp), 1.0)


@given(networks_and_inputs(max_n=1, max_out=3), st.integers(1, 2))
def test_c1_row_blocks_and_kept_adjoints_do_not_change_the_result(case, max_rows):
    S = support(case.model, case.x)
    lin = Linearization(case.model, S, 0)
    names = [n.name for n in lin.graph.nodes if n.kind in ("act", "linear", "conv", "maxpool")]
    A, c, kept = lin.compose(keep=tuple(names))
    A_b, c_b, kept_b = lin.compose(keep=tuple(names), max_rows=max_rows)
    _, _, kept_sp = lin.compose(keep=tuple(names), method="sparse")
    np.testing.assert_array_equal(A, A_b)
    np.testing.assert_array_equal(c, c_b)
    assert set(kept) == set(kept_sp) == set(kept_b)
    for v in kept:
        assert kept[v].shape == kept_sp[v].shape
        assert rel(kept[v], kept_sp[v]) <= TOL and np.array_equal(kept[v], kept_b[v])


def test_c1_the_operator_is_per_sample_a_wrong_sample_support_is_detected():
    """The check can fail: sample 1's support gives another operator than sample 0's."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), PHT(0.1), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(3 * 2 * 2, 2)).double().eval()
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    S = support(net, x)
    assert S.hamming(support(net, x.flip(0))) > 0  # the two samples have different supports
    A0, _ = linearize(net, S, 0)
    A1, _ = linearize(net, S, 1)
    assert rel(A1, linearize_reference(net, S, 1)[0]) <= TOL
    assert rel(A1, A0) > 1e-3


def test_c1_float32_model_is_linearized_in_float64():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(),
                        nn.Linear(2 * 3 * 3, 2)).eval()
    x = torch.randn(1, 1, 7, 7)
    S = support(net, x)
    lin = Linearization(net, S, 0)
    A, c, _ = lin.compose()
    A_sp, c_sp, _ = lin.compose(method="sparse")
    assert A.dtype == np.float64 and c.dtype == np.float64
    assert rel(A, A_sp) <= TOL and rel(c, c_sp) <= TOL


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"method": "dense"}, ValueError, "method must be 'adjoint' or 'sparse'"),
    ({"max_rows": 0}, ValueError, "max_rows must be a positive int"),
    ({"max_rows": 1.5}, ValueError, "max_rows must be a positive int"),
    ({"max_rows": True}, ValueError, "max_rows must be a positive int"),
])
def test_compose_bad_calls(kwargs, exc, match):
    net = nn.Sequential(nn.Linear(3, 4), PHT(0.1), nn.Linear(4, 2)).double()
    x = torch.randn(2, 3, dtype=torch.float64)
    lin = Linearization(net, support(net, x), 0)
    with pytest.raises(exc, match=match):
        lin.compose(**kwargs)


def test_c1_adjoint_composition_uses_no_autograd(monkeypatch):
    """C1's point: A_S from weights and masks. With every autograd entry point disabled and
    under inference mode (no graph can be recorded), compose still gives the Jacobian."""
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.BatchNorm2d(3), PHT(0.05),
                        nn.MaxPool2d(2, 1), nn.Flatten(), nn.Linear(3 * 3 * 3, 2)).double().eval()
    x = torch.randn(1, 2, 7, 7, dtype=torch.float64)
    S = support(net, x)
    J = torch.autograd.functional.jacobian(lambda v: net(v[None])[0], x[0]).reshape(2, -1).numpy()

    def refuse(*args, **kwargs):
        raise AssertionError("autograd was called")

    for mod, name in ((torch.autograd, "grad"), (torch.autograd, "backward"), (torch.Tensor, "backward"),
                      (torch.func, "vjp"), (torch.func, "jacrev"), (torch.func, "jacfwd"),
                      (torch.autograd.functional, "jacobian"), (torch.autograd.functional, "vjp")):
        monkeypatch.setattr(mod, name, refuse)
    lin = Linearization(net, S, 0)
    with torch.inference_mode():
        A, _, _ = lin.compose()
    assert rel(A, J) <= TOL
