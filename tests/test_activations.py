"""PHT in threshold and top-k form: against the reference, ReLU bit for bit, and bad calls."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch import nn

from altheory import PHT, pht, pht_mask, pht_topk, replace_relu, topk_mask
from altheory.nets._reference import pht_reference, topk_reference

floats = st.floats(-10, 10, allow_nan=False, width=64)
arrays = hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6), elements=floats)


@given(arrays, st.sampled_from([0.0, 0.1, 1.0, 3.5]))
def test_pht_matches_reference(z, tau):
    np.testing.assert_array_equal(pht(z, tau), pht_reference(z, tau))
    np.testing.assert_array_equal(pht(torch.from_numpy(z), tau).numpy(), pht_reference(z, tau))


@given(hnp.arrays(np.float64, hnp.array_shapes(max_dims=3, max_side=6),
                  elements=st.one_of(st.floats(allow_nan=False, allow_infinity=True, width=64),
                                           st.sampled_from([-0.0, 0.0, 5e-324, -5e-324]))))
def test_pht_tau0_is_relu_bit_for_bit(z):
    t = torch.from_numpy(z)
    out = pht(t, 0.0)
    ref = torch.relu(t)
    bits = lambda a: a.view(torch.int64)  # noqa: E731  (compares signed zeros and infinities too)
    assert torch.equal(bits(out), bits(ref))
    assert torch.equal(bits(PHT()(t)), bits(ref))
    np.testing.assert_array_equal(pht(z, 0.0).view(np.int64), ref.numpy().view(np.int64))


@given(hnp.arrays(np.float64, st.integers(1, 12), elements=st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2.0])),
       st.integers(0, 14))
def test_topk_keeps_min_k_positive_with_index_ties(z, k):
    """k counts the entries kept: 1 <= k <= width, and anything else is refused."""
    if not 1 <= k <= z.size:
        with pytest.raises(ValueError, match="k=None" if k < 1 else "larger than"):
            topk_mask(z, k)
        return
    s = topk_mask(z, k)
    assert s.sum() == min(k, int((z > 0).sum()))
    np.testing.assert_array_equal(s, topk_reference(z, k))
    np.testing.assert_array_equal(pht_topk(z, k), np.where(s, z, 0.0))


def test_topk_along_channels():
    z = torch.tensor([[[[1.0]], [[3.0]], [[2.0]]]])  # (1, C=3, 1, 1)
    assert PHT(k=2, dim=1).mask(z).ravel().tolist() == [False, True, True]


def test_pht_jumps_by_tau():
    z = np.array([0.49, 0.5, 0.51])
    assert pht(z, 0.5).tolist() == [0.0, 0.0, 0.51]


def test_replace_relu_swaps_every_relu_of_a_torchvision_model():
    from torchvision.models import resnet18

    m = resnet18()
    p = replace_relu(m, tau=0.2)
    assert not any(isinstance(x, nn.ReLU) for x in p.modules())
    assert sum(isinstance(x, PHT) for x in p.modules()) == sum(isinstance(x, nn.ReLU) for x in m.modules())
    assert any(isinstance(x, nn.ReLU) for x in m.modules())  # original untouched
    q = replace_relu(m, k=3, inplace=True)
    assert q is m and all(x.k == 3 for x in m.modules() if isinstance(x, PHT))


@pytest.mark.parametrize("call, exc, match", [
    (lambda: pht(np.ones(2), tau=-0.1), ValueError, "tau must be a finite number >= 0"),
    (lambda: pht(np.ones(2), tau=float("nan")), ValueError, "tau must be"),
    (lambda: pht(np.ones(2), tau="0"), TypeError, "tau must be a real number"),
    (lambda: pht_mask(np.ones(2), tau=True), TypeError, "tau must be a real number"),
    (lambda: topk_mask(np.ones(2), k=-1), ValueError, "k must be >= 1"),
    (lambda: topk_mask(np.ones(2), k=1.5), TypeError, "k must be an int"),
    (lambda: topk_mask(np.float64(1.0), k=1), ValueError, "at least one dimension"),
    (lambda: PHT(k=2, dim="1"), TypeError, "dim must be an int"),
    (lambda: replace_relu("model"), TypeError, "torch.nn.Module"),
])
def test_bad_calls(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@given(arrays, st.sampled_from([0.0, 0.1, 1.0]))
def test_pht_module_fast_path_matches_functional_values_and_gradients(z, tau):
    t = torch.from_numpy(z).requires_grad_(True)
    y_fast = PHT(tau)(t)
    (g_fast,) = torch.autograd.grad(y_fast.sum(), t)
    y_ref = pht(t, tau)
    (g_ref,) = torch.autograd.grad(y_ref.sum(), t)
    assert torch.equal(y_fast, y_ref) and torch.equal(g_fast, g_ref)
    np.testing.assert_array_equal(g_fast.numpy(), (z > tau).astype(np.float64))
