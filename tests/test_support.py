"""MultiLayerSupport: recording, bit packing, margins, flips, consistency, gated forward, errors."""

import numpy as np
import pytest
import torch
from hypothesis import given
from torch import nn

from altheory import PHT, gated_forward, support
from altheory.floats import assert_close
from altheory.testing import networks_and_inputs


def _mlp(tau=0.0):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), PHT(tau=tau), nn.Linear(6, 5), PHT(tau=tau), nn.Linear(5, 2)).double()


def test_masks_are_the_thresholded_preactivations():
    net = _mlp(0.1)
    x = torch.randn(7, 4, dtype=torch.float64)
    S = support(net, x)
    z1 = net[0](x)
    np.testing.assert_array_equal(S["1"].mask(), (z1 > 0.1).numpy())
    assert_close(S["1"].margin, (z1 - 0.1).abs().amin(1).detach().numpy(),
                 scale=float(z1.detach().abs().max()), what="margins")
    assert S.margin == min(S["1"].margin.min(), S["3"].margin.min())     # the smallest, exactly
    assert S["1"].packed.shape == (7, 1)  # 6 bits packed into one byte
    assert S.nbytes() == 7 + 7


def test_reused_module_gets_one_key_per_call_and_maxpool_records_indices():
    from torchvision.models.resnet import BasicBlock

    blk = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.MaxPool2d(2), BasicBlock(3, 3)).double().eval()
    S = support(blk, torch.randn(2, 2, 6, 6, dtype=torch.float64))
    assert list(S.keys()) == ["1", "2.relu", "2.relu#1"]
    assert S["1"].kind == "maxpool" and S["1"].indices.shape == (2, 3, 3, 3)


@given(networks_and_inputs(max_n=2))
def test_support_is_consistent_and_gated_forward_equals_forward(case):
    S = support(case.model, case.x)
    assert S.is_consistent(case.model, case.x)
    assert S.hamming(support(case.model, case.x)) == 0
    with torch.no_grad():
        assert_close(gated_forward(case.model, S, case.x).numpy(), case.model(case.x).numpy(),
                     what="gated forward")


def test_flips_count_changed_entries_per_layer():
    net = _mlp()
    x = torch.randn(5, 4, dtype=torch.float64)
    S = support(net, x)
    with torch.no_grad():
        net[0].bias += 0.3
    T = support(net, x)
    flips = S.flips(T)
    expected = int((S["1"].mask() != T["1"].mask()).sum())
    assert flips["1"] == expected > 0
    assert S.hamming(T) == sum(flips.values())
    assert not S.is_consistent(net, x)


def test_gated_forward_is_affine_in_x():
    net = _mlp()
    x = torch.randn(3, 4, dtype=torch.float64)
    S = support(net, x)
    u, v = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    f = lambda z: gated_forward(net, S, z)  # noqa: E731
    terms = (0.3 * f(u).abs() + 0.7 * f(v).abs()).max().item()
    assert_close(f(0.3 * u + 0.7 * v).detach().numpy(), (0.3 * f(u) + 0.7 * f(v)).detach().numpy(),
                 scale=terms, what="affine")


def test_subset_selects_samples():
    net = _mlp()
    x = torch.randn(6, 4, dtype=torch.float64)
    S = support(net, x)
    T = S.subset([4, 1])
    np.testing.assert_array_equal(T["1"].mask(), S["1"].mask()[[4, 1]])
    assert T == support(net, x[[4, 1]])


@pytest.mark.parametrize("make, exc, match", [
    (lambda net: support(net, torch.tensor([[float("nan"), 0, 0, 0]], dtype=torch.float64)), ValueError, "NaN or Inf"),
    (lambda net: support(net, torch.ones(4, dtype=torch.float64)), ValueError, "batch of shape"),
    (lambda net: support(net, [[1.0, 2.0]]), TypeError, "torch.Tensor or numpy"),
    (lambda net: support(nn.Sequential(nn.Linear(4, 2), nn.BatchNorm1d(2)).train(), torch.ones(3, 4)), ValueError, "training mode"),
    (lambda net: gated_forward(net, support(net, torch.ones(3, 4, dtype=torch.float64)), torch.ones(2, 4, dtype=torch.float64)), ValueError, "batch of shape"),
    (lambda net: gated_forward(nn.Sequential(nn.Linear(4, 2), nn.ReLU()).double(), support(net, torch.ones(3, 4, dtype=torch.float64)), torch.ones(3, 4, dtype=torch.float64)), ValueError, "another model"),
    (lambda net: support(net, torch.ones(3, 4, dtype=torch.float64)).flips(support(net, torch.ones(2, 4, dtype=torch.float64))), ValueError, "not comparable"),
    (lambda net: support(net, torch.ones(3, 4, dtype=torch.float64)).sample(3), ValueError, "out of range"),
])
def test_bad_calls(make, exc, match):
    with pytest.raises(exc, match=match):
        make(_mlp())


# --------------------------------------------------------------------------------------------
# what the input checks must still accept
# --------------------------------------------------------------------------------------------

class _Methods(nn.Module):
    """``.relu()`` as a method and ``x.view(x.size(0), -1)``: both have explicit operators."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 2, 3, padding=1), nn.Linear(2 * 4 * 4, 3)

    def forward(self, x):
        z = self.conv(x).relu()
        return self.fc(z.view(z.size(0), -1))


def test_relu_method_is_a_support_and_size_feeding_view_is_allowed():
    from altheory import linearize

    torch.manual_seed(0)
    net = _Methods().double().eval()
    x = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    S = support(net, x)
    assert len(S) == 1 and S[next(iter(S.keys()))].mask().shape == (3, 2, 4, 4)
    np.testing.assert_array_equal(S[next(iter(S.keys()))].mask(), (net.conv(x) > 0).numpy())
    A, c = linearize(net, S, 1)
    assert_close(A @ x[1].numpy().ravel() + c, net(x)[1].detach().numpy(), what="A x + c = f(x)")


def test_nodes_the_output_does_not_use_are_not_checked():
    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 2)

        def forward(self, x):
            torch.sigmoid(x)  # computed and dropped
            return self.a(x)

    S = support(Unused().double(), torch.randn(2, 3, dtype=torch.float64))
    assert len(S) == 0


def test_fingerprint_follows_values_not_objects():
    """A deep copy and a device-free dtype cast keep the fingerprint; any value change breaks it,
    buffers included (BatchNorm running statistics)."""
    import copy

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), PHT(0.1), nn.Linear(6, 2)).double().eval()
    x = torch.randn(5, 4, dtype=torch.float64)
    S = support(net, x)
    gated_forward(copy.deepcopy(net), S, x)  # accepted
    assert S.subset([0, 1]).weights_digest == S.weights_digest
    with torch.no_grad():
        net[1].running_mean.add_(1e-12)
    with pytest.raises(ValueError, match="other weights"):
        gated_forward(net, S, x)
    gated_forward(net, S, x, same_weights=False)  # held on purpose
    assert S.for_any_weights().weights_digest is None and S.weights_digest is not None


def test_for_any_weights_still_checks_the_architecture():
    x = torch.randn(5, 4, dtype=torch.float64)
    S = support(_mlp(), x).for_any_weights()
    wider = nn.Sequential(nn.Linear(4, 7), PHT(), nn.Linear(7, 5), PHT(), nn.Linear(5, 2)).double()
    with pytest.raises(ValueError, match="another architecture"):
        gated_forward(wider, S, x)


def test_fixed_support_network_checks_then_holds():
    from altheory import FixedSupportNetwork

    net, x = _mlp(0.1), torch.randn(6, 4, dtype=torch.float64)
    Y = np.random.default_rng(0).standard_normal((6, 2))
    S = support(net, x)
    with torch.no_grad():
        net[0].weight.mul_(-1.0)
    with pytest.raises(ValueError, match="other weights"):
        FixedSupportNetwork(net, S, x, Y)
    P = FixedSupportNetwork(net, S, x, Y, same_weights=False)
    out = P.output()
    with torch.no_grad():
        net[4].weight.mul_(2.0)
    torch.testing.assert_close(P.output(), 2 * out - net[4].bias.detach())  # f_S moved with W_3


def test_topk_spec_wider_than_a_layer_builds_and_keeps_every_positive_entry():
    """A spec's k is 'at most k': a 1-unit layer under k=3 is built as PHT(k=1) (PHT refuses
    k > width), the same function."""
    from altheory.nets.architectures import NetSpec, build

    spec = NetSpec((2,), (("linear", (("in", 2), ("out", 1))), ("act", ()),
                          ("linear", (("in", 1), ("out", 1)))), ("topk", 3), 0)
    net = build(spec)
    assert net[1].k == 1
    x = torch.randn(4, 2, dtype=torch.float64)
    S = support(net, x)
    np.testing.assert_array_equal(S["1"].mask(), (net[0](x) > 0).numpy())


def test_float32_batch_is_the_same_batch_in_float64():
    """The batch digest hashes values, so FixedSupportNetwork (which keeps X in float64) accepts
    the float32 batch a float32 model's support came from."""
    from altheory import FixedSupportNetwork

    net = _mlp(0.1).float()
    x = torch.randn(6, 4)
    P = FixedSupportNetwork(net, support(net, x), x, np.zeros((6, 2)))
    assert P.output().dtype == torch.float32
