"""Claim C1: the network is A_S x + c_S given its support; A_S is the autograd Jacobian.

Properties over random architectures drawn by hypothesis (altheory.testing), float64,
relative error <= 1e-10; fast sparse operators against the slow references in _reference.
"""

import numpy as np
import pytest
import torch
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from torch import nn

from altheory import PHT, UnsupportedModuleError, layer_operator, linearize, replace_relu, support
from altheory.nets._reference import linearize_reference, module_operator_reference
from altheory.nets.architectures import build, sample_spec
from altheory.claims.c1_linearization import measure
from altheory.floats import assert_close
from altheory.nets.operators import conv_operator, pool_operator
from altheory.testing import networks_and_inputs

TOL = 1e-10


def rel(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


@given(networks_and_inputs(max_n=2))
def test_c1_forward_equals_A_x_plus_c_and_A_is_the_jacobian(case):
    m = measure(case.model, case.x)
    assert m["forward_rel_error"] <= TOL
    assert m["jacobian_rel_error"] <= TOL


@given(networks_and_inputs(max_n=1, image_size=(3, 6)))
def test_c1_explicit_operator_matches_gated_network_on_basis_vectors(case):
    S = support(case.model, case.x)
    A, c = linearize(case.model, S, 0)
    A_ref, c_ref = linearize_reference(case.model, S, 0)
    assert rel(A, A_ref) <= TOL and rel(c, c_ref) <= TOL + 1e-300


@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 2), st.integers(0, 2),
       st.integers(1, 2), st.sampled_from([1, 2]), st.integers(3, 7), st.booleans())
# even kernels with padding='same': PyTorch puts the odd padding pixel at the end (explicit,
# so that these cases run on every test run, not only when hypothesis happens to draw them)
@example(1, 1, 2, 1, 0, 1, 1, 4, True)
@example(2, 1, 2, 1, 0, 2, 1, 5, True)
@example(1, 2, 2, 1, 0, 1, 2, 3, True)
@example(1, 1, 4, 1, 0, 1, 1, 6, True)
def test_conv_operator_matches_reference(cin_g, cout_g, k, s, p, dil, groups, hw, same):
    conv = nn.Conv2d(cin_g * groups, cout_g * groups, k, stride=1 if same else s,
                     padding="same" if same else p, dilation=dil, groups=groups).double()
    shape = (cin_g * groups, hw, hw + 1)
    assume(same or hw + 2 * p >= dil * (k - 1) + 1)
    with torch.no_grad():
        out_hw = conv(torch.zeros(1, *shape, dtype=torch.float64)).shape[2:]
    M, b = conv_operator(conv, shape, tuple(out_hw))
    M_ref, b_ref = module_operator_reference(conv, shape)
    assert_close(M.toarray(), M_ref, what="conv operator")
    assert_close(b, b_ref, what="conv offset")
    assert M.nnz <= conv.weight.numel() * out_hw[0] * out_hw[1]  # one entry per (output, tap) at most


@given(st.integers(1, 3), st.integers(1, 2), st.integers(0, 1), st.booleans(), st.booleans(),
       st.sampled_from([None, 3]), st.integers(4, 7))
def test_avgpool_operator_matches_reference(k, s, p, ceil, include_pad, divisor, hw):
    p = min(p, k // 2)
    pool = nn.AvgPool2d(k, s, p, ceil_mode=ceil, count_include_pad=include_pad, divisor_override=divisor)
    shape = (2, hw, hw + 1)
    out_hw = pool(torch.zeros(1, *shape, dtype=torch.float64)).shape[2:]
    M = pool_operator(pool, shape, tuple(out_hw))
    M_ref, _ = module_operator_reference(pool, shape)
    assert_close(M.toarray(), M_ref, what="pool operator")


@given(st.integers(1, 4), st.integers(1, 4), st.integers(2, 9))
def test_adaptive_pool_operator_matches_reference(oh, ow, hw):
    pool = nn.AdaptiveAvgPool2d((oh, ow))
    shape = (2, hw, hw + 2)
    M = pool_operator(pool, shape, (oh, ow))
    M_ref, _ = module_operator_reference(pool, shape)
    assert_close(M.toarray(), M_ref, what="pool operator")


def test_c1_on_a_pht_resnet18():
    from torchvision.models import resnet18

    torch.manual_seed(0)
    model = replace_relu(resnet18(num_classes=3), tau=0.01).double().eval()
    x = torch.randn(1, 3, 16, 16, dtype=torch.float64)
    m = measure(model, x)
    assert m["forward_rel_error"] <= TOL and m["jacobian_rel_error"] <= TOL


@given(networks_and_inputs(max_n=3, max_depth=2))
@settings(max_examples=10)
def test_c1_output_is_affine_in_each_layer_two_point_check(case):
    """f_S is affine in each W_l separately: Phi theta + offset at two weights (C3's operator)."""
    S = support(case.model, case.x)
    params = [m for m in case.model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    from altheory import gated_forward

    for li, mod in enumerate(params):
        try:
            Phi, off = layer_operator(case.model, S, li, case.x)
        except ValueError as e:  # a shared module (not drawn here) would be refused
            raise AssertionError(str(e))
        theta0 = torch.cat([mod.weight.ravel(), mod.bias if mod.bias is not None else mod.weight.new_zeros(0)])
        rng = np.random.default_rng(li)
        theta1 = theta0.detach().numpy() + rng.standard_normal(theta0.numel())
        with torch.no_grad():
            nw = mod.weight.numel()
            old_w, old_b = mod.weight.clone(), None if mod.bias is None else mod.bias.clone()
            mod.weight.copy_(torch.from_numpy(theta1[:nw]).reshape(mod.weight.shape))
            if mod.bias is not None:
                mod.bias.copy_(torch.from_numpy(theta1[nw:]))
            f1 = gated_forward(case.model, S, case.x, same_weights=False).reshape(-1).numpy()
            mod.weight.copy_(old_w)
            if old_b is not None:
                mod.bias.copy_(old_b)
            f0 = gated_forward(case.model, S, case.x).reshape(-1).numpy()
        scale = max(np.linalg.norm(f0), np.linalg.norm(f1), 1.0)
        assert np.linalg.norm(Phi @ theta0.detach().numpy() + off - f0) <= TOL * scale
        assert np.linalg.norm(Phi @ theta1 + off - f1) <= TOL * scale


def test_unsupported_module_error_names_type_and_path():
    net = nn.Sequential(nn.Linear(3, 4), nn.Sequential(nn.Tanh()), nn.Linear(4, 1)).double()
    x = torch.randn(2, 3, dtype=torch.float64)
    S = support(nn.Sequential(net[0], nn.Sequential(nn.Identity()), net[2]), x)  # support(net) refuses Tanh too
    with pytest.raises(UnsupportedModuleError, match=r"Tanh at '1\.0'"):
        linearize(net, S, 0)


@pytest.mark.parametrize("call, exc, match", [
    (lambda net, S, x: linearize(net, S, 5), ValueError, "out of range"),
    (lambda net, S, x: linearize(net, S, 1.0), TypeError, "must be an int"),
    (lambda net, S, x: linearize(nn.Sequential(nn.Linear(3, 2)).double(), S, 0), ValueError, "another model"),
    (lambda net, S, x: linearize(net, "S", 0), TypeError, "MultiLayerSupport"),
    (lambda net, S, x: layer_operator(net, S, "9", x), ValueError, "no Linear/Conv2d layer"),
    (lambda net, S, x: layer_operator(net, S, 7, x), ValueError, "out of range"),
    (lambda net, S, x: layer_operator(net, S, 0, x[:1]), ValueError, "expected the batch"),
    (lambda net, S, x: layer_operator(net, S, 0.5, x), TypeError, "module path"),
    (lambda net, S, x: layer_operator(net, S, 0, x + 1), ValueError, "not the batch"),
])
def test_bad_calls(call, exc, match):
    net = nn.Sequential(nn.Linear(3, 4), PHT(0.1), nn.Linear(4, 2)).double()
    x = torch.randn(2, 3, dtype=torch.float64)
    with pytest.raises(exc, match=match):
        call(net, support(net, x), x)


def test_sparse_conv_operator_memory_is_proportional_to_nnz():
    conv = nn.Conv2d(8, 8, 3, padding=1).double()
    M, _ = conv_operator(conv, (8, 16, 16), (16, 16))
    assert M.nnz == 8 * 8 * 9 * 16 * 16 - 8 * 8 * (4 * 16 * 3 - 4)  # taps outside the border dropped
    assert M.data.nbytes + M.indices.nbytes + M.indptr.nbytes < 20 * M.nnz


def test_replayed_spec_builds_identical_weights():
    a, b = build(sample_spec(3)), build(sample_spec(3))
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("k,dil", [(2, 1), (2, 2), (4, 1)])
def test_c1_even_kernel_same_padding_network(k, dil):
    """C1 through the adjoint path for even kernels with padding='same' (asymmetric padding)."""
    torch.manual_seed(k + 10 * dil)
    model = nn.Sequential(nn.Conv2d(2, 3, k, padding="same", dilation=dil), PHT(0.05),
                          nn.Conv2d(3, 2, k, padding="same", dilation=dil), nn.Flatten(),
                          nn.Linear(2 * 5 * 6, 3)).double().eval()
    x = torch.randn(2, 2, 5, 6, dtype=torch.float64)
    m = measure(model, x)
    assert m["forward_rel_error"] <= TOL and m["jacobian_rel_error"] <= TOL

