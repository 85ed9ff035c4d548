"""The weights fingerprint of a support: a change of any single value always changes it."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from altheory.nets.support import _BLOCK, _tensor_fingerprint


def _bump(t: torch.Tensor, j: int, ulps: int) -> torch.Tensor:
    """``t`` with entry ``j`` moved by ``ulps`` units in the last place (toward +inf or -inf)."""
    u = t.clone()
    target = torch.tensor(np.inf if ulps > 0 else -np.inf, dtype=u.dtype)
    for _ in range(abs(ulps)):
        u[j] = torch.nextafter(u[j], target)
    return u


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3 * _BLOCK + 7), data=st.data())
def test_fingerprint_changes_with_any_single_entry(n, data):
    """One entry moved by 1-3 ulps, anywhere (first block, block edges, the tail): always seen."""
    seed = data.draw(st.integers(0, 2**31 - 1))
    t = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    j = data.draw(st.sampled_from(sorted({0, n - 1, min(_BLOCK - 1, n - 1), min(_BLOCK, n - 1),
                                          n // 2})))
    ulps = data.draw(st.sampled_from([-3, -1, 1, 2]))
    assert _tensor_fingerprint(_bump(t, j, ulps)) != _tensor_fingerprint(t)


def test_fingerprint_is_a_function_of_values_in_float64():
    """Same values, other storage: a float32 tensor and its exact float64 cast, a non-contiguous
    view and its contiguous copy, agree; a swap of two different entries does not."""
    g = torch.Generator().manual_seed(0)
    t32 = torch.randn(3, 5000, generator=g)
    assert _tensor_fingerprint(t32) == _tensor_fingerprint(t32.double())
    assert _tensor_fingerprint(t32.t()) == _tensor_fingerprint(t32.t().contiguous())
    flat = t32.reshape(-1).double()
    swapped = flat.clone()
    swapped[[10, 9000]] = flat[[9000, 10]]
    assert _tensor_fingerprint(swapped) != _tensor_fingerprint(flat)
    assert _tensor_fingerprint(torch.zeros(0)) == (0, 0, 0)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 2 * _BLOCK + 3), scale=st.sampled_from([-1.0, 2.0, -2.0, 0.5, 4.0]),
       seed=st.integers(0, 2**31 - 1))
def test_fingerprint_sees_a_negated_or_rescaled_layer(n, scale, seed):
    """Structured changes of many entries at once: a sign flip changes each word by 2^63 and a
    power-of-two rescaling by a multiple of 2^52, which a sum modulo 2^64 of the aligned words
    alone would see only through a few low bits of the multipliers; the words read 4 bytes
    off their boundaries see them (the first component, without the end entries)."""
    t = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    u = t * scale  # exact: a power of two
    assert _tensor_fingerprint(u) != _tensor_fingerprint(t)
    assert _tensor_fingerprint(u)[0] != _tensor_fingerprint(t)[0]


def test_shifted_words_slow_path_equals_the_buffer_view():
    """Inside torch.func transforms a tensor has no data pointer: the fingerprint then builds the
    shifted words from 32-bit halves; both paths give the same words."""
    import warnings

    from altheory.nets.support import _shifted_words

    x = torch.randn(4099, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    x[[0, 7, 4098]] = torch.tensor([-0.0, -np.inf, 2.0 ** -1074], dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = torch.frombuffer(memoryview(x.numpy()).cast("B"), dtype=torch.int64, offset=4,
                                count=x.numel() - 1)
    assert torch.equal(_shifted_words(x), fast)


def test_gated_forward_runs_inside_jacrev():
    """The weights check of gated_forward works inside torch.func.jacrev (no data pointers)."""
    from torch import nn

    from altheory import PHT, gated_forward, support

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), PHT(0.1), nn.Linear(4, 2)).double()
    x = torch.randn(2, 3, dtype=torch.float64)
    S = support(net, x)
    J = torch.func.jacrev(lambda v: gated_forward(net, S, v))(x)
    J_ref = torch.autograd.functional.jacobian(lambda v: gated_forward(net, S, v), x)
    torch.testing.assert_close(J, J_ref)
