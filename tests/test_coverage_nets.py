"""Coverage: every piecewise-linear network linearizes exactly (claims C1, C2).

Activations with more than two states (LeakyReLU, PReLU: a slope on the off side; ReLU6,
Hardtanh: lower constant / identity / upper constant), graph operations written in ``forward``
(``torch.cat``/``torch.stack``, ``F.max_pool2d``, ``F.avg_pool2d``, ``F.adaptive_avg_pool2d``,
``torch.flatten``, ``.view``, functional activations), and torchvision's mobilenet_v2 and
densenet at 3x32x32. Each is compared with ``torch.func.jacrev`` and the forward pass
(float64, relative error <= 1e-10), both composition methods, and with the slow references of
``altheory.nets._reference``.
"""

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.models as tvm
from hypothesis import given
from torch import nn

from altheory import PHT, gated_forward, layer_operator, linearize, replace_relu, support
from altheory.errors import UnsupportedModuleError
from altheory.floats import assert_close
from altheory.nets.architectures import calibrate_batchnorm
from altheory.nets._reference import cat_operator_reference, linearize_reference, piecewise_reference
from altheory.nets.graph import act_apply, act_select, trace
from altheory.nets.operators import Linearization
from altheory.testing import networks_and_inputs

TOL = 1e-10


def rel(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def exact(model, x, i=0, methods=("adjoint", "sparse")):
    """Worst relative error of A against jacrev and of A x + c against f(x), over methods."""
    S = support(model, x)
    lin = Linearization(model, S, i)
    xi = x[i].reshape(-1).numpy()
    with torch.no_grad():
        y = model(x[i:i + 1]).reshape(-1).numpy()
    J = torch.func.jacrev(lambda v: model(v[None])[0])(x[i]).reshape(y.size, -1).detach().numpy()
    worst = 0.0
    for m in methods:
        A, c, _ = lin.compose(method=m)
        worst = max(worst, rel(A, J), rel(A @ xi + c, y))
    return worst, S


def seeded(shape, seed=0, scale=1.0):
    return scale * torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


# -- activations, one entry at a time ---------------------------------------------------------

@pytest.mark.parametrize("mod,kind,p", [
    (nn.LeakyReLU(0.1), "leaky", {"slope": 0.1}),
    (nn.LeakyReLU(-0.5), "leaky", {"slope": -0.5}),
    (nn.ReLU6(), "clamp", {"lo": 0.0, "hi": 6.0}),
    (nn.Hardtanh(-0.5, 0.25), "clamp", {"lo": -0.5, "hi": 0.25}),
])
def test_c1_activation_states_values_and_derivatives_match_the_reference(mod, kind, p):
    z = torch.tensor([[-7.0, -0.5, -0.1, 0.0, 0.1, 0.25, 0.3, 5.9, 6.0, 8.0]], dtype=torch.float64)
    model = nn.Sequential(nn.Identity(), mod).double()
    node = next(n for n in trace(model).nodes if n.kind == "act")
    s, up = act_select(node, z)
    val, der, state = piecewise_reference(z.numpy(), kind, **p)
    out = act_apply(node, z, s, up)
    assert np.array_equal(out.numpy(), val) and np.array_equal(out.numpy(), mod(z).numpy())
    got_state = s.numpy().astype(np.int8) + (0 if up is None else 2 * up.numpy().astype(np.int8))
    assert np.array_equal(got_state, state)
    zr = z.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(mod(zr).sum(), zr)
    assert np.array_equal(g.numpy(), der)  # the support's diagonal is autograd's derivative


@pytest.mark.parametrize("act", [nn.LeakyReLU(0.2), nn.PReLU(), nn.PReLU(3), nn.ReLU6(),
                                 nn.Hardtanh(-0.4, 0.3)])
def test_c1_new_activations_linearize_exactly_in_a_cnn(act):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), act,
                          nn.MaxPool2d(2), nn.Conv2d(3, 3, 1), act, nn.Flatten(),
                          nn.Linear(3 * 3 * 3, 4)).double().eval()
    if isinstance(act, nn.PReLU):
        with torch.no_grad():
            act.weight.copy_(torch.linspace(-0.3, 0.6, act.weight.numel()))
    x = seeded((3, 2, 6, 6), scale=3.0)
    for i in range(3):
        err, _ = exact(model, x, i)
        assert err <= TOL
        A, c = linearize(model, support(model, x), i)
        Ar, cr = linearize_reference(model, support(model, x), i)
        assert rel(A, Ar) <= TOL and rel(c, cr) <= TOL


def test_c1_three_state_support_hits_all_three_regions_and_c_holds_the_constants():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 30), nn.Hardtanh(-0.2, 0.3), nn.Linear(30, 2)).double().eval()
    x = seeded((2, 4), scale=2.0)
    S = support(model, x)
    L = S["1"]
    states = L.flat(0)
    assert set(np.unique(states)) == {0, 1, 2} and states.dtype == np.int8
    z = model[0](x).detach().numpy()
    _, _, ref = piecewise_reference(z, "clamp", lo=-0.2, hi=0.3)
    assert np.array_equal(np.stack([L.flat(0), L.flat(1)]), ref)
    lin = Linearization(model, S, 0)
    ops, b = lin.operator(next(n.name for n in lin.graph.nodes if n.key == "1"))
    assert np.array_equal(b, np.where(ref[0] == 1, 0.0, np.where(ref[0] == 2, 0.3, -0.2)))
    # the margin: distance to the nearer breakpoint
    assert np.isclose(L.margin[0], np.minimum(abs(z[0] + 0.2), abs(z[0] - 0.3)).min(), rtol=0, atol=0)


def test_c2_three_state_support_algebra_flips_hamming_subset_nbytes():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(3, 9), nn.ReLU6(), nn.Linear(9, 1)).double().eval()
    x = seeded((4, 3), scale=6.0)
    S = support(model, x)
    assert S["1"].upper is not None and S["1"].upper_mask().any()
    # lower unit j's bias so that no sample's entry j stays in the upper region: an entry that
    # moves from upper to identity flips both of its bits and counts once
    z = model[0](x).detach()
    i, j = map(int, np.argwhere(S["1"].upper_mask())[0])
    m2 = nn.Sequential(nn.Linear(3, 9), nn.ReLU6(), nn.Linear(9, 1)).double().eval()
    m2.load_state_dict(model.state_dict())
    with torch.no_grad():
        m2[0].bias[j] -= float(z[:, j].max()) - 3.0  # the largest entry j is now 3
    S2 = support(m2, x)
    per_entry = (S["1"].mask() != S2["1"].mask()) | (S["1"].upper_mask() != S2["1"].upper_mask())
    assert S.flips(S2)["1"] == int(per_entry.sum()) >= 1
    assert S.hamming(S2) == int(per_entry.sum()) and S != S2 and S == S
    sub = S.subset([i, i])
    assert np.array_equal(sub["1"].upper_mask()[1], S["1"].upper_mask()[i])
    assert S.nbytes() == S["1"].packed.nbytes + S["1"].upper.nbytes
    assert np.array_equal(S.sample(i)["1"], S["1"].flat(i))


def test_c1_gated_forward_three_state_is_affine_and_equals_A_x_plus_c():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 8), nn.Hardtanh(-0.3, 0.3), nn.Linear(8, 8), nn.LeakyReLU(0.1),
                          nn.Linear(8, 2)).double().eval()
    x = seeded((2, 3))
    S = support(model, x)
    A, c = linearize(model, S, 0)
    other = seeded((2, 3), seed=5, scale=4.0)  # far away: f_S is defined (affine) everywhere
    out = gated_forward(model, S, other).detach().numpy()
    assert rel(out[0], A @ other[0].numpy() + c) <= TOL
    # differentiable: the derivative in x is A, the supports' diagonal held
    J = torch.autograd.functional.jacobian(lambda v: gated_forward(model, S.subset([0]), v[None])[0],
                                           other[0])
    assert rel(J.numpy(), A) <= TOL


def test_c3_layer_operator_with_prelu_and_hardtanh_holds_the_slope_fixed():
    """PReLU's slope is a constant of f_S (read from the model), not part of theta_l."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(3, 6), nn.PReLU(6), nn.Linear(6, 5), nn.Hardtanh(-0.5, 0.5),
                          nn.Linear(5, 2)).double().eval()
    X = seeded((5, 3))
    S = support(model, X)
    for layer in ("0", "2", "4"):
        Phi, o = layer_operator(model, S, layer, X)
        mod = model[int(layer)]
        theta = torch.cat([mod.weight.ravel(), mod.bias]).detach().numpy()
        assert rel(Phi @ theta + o, model(X).detach().numpy().ravel()) <= TOL


# -- graph operations ---------------------------------------------------------------------------

class Functional(nn.Module):
    """A user's forward written with functional operations only."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 2, 1)
        self.c3 = nn.Conv2d(6, 3, 1)
        self.fc = nn.Linear(2 * 3 * 2 * 2, 5)

    def forward(self, x):
        a = F.relu(self.c1(x), inplace=True)
        b = F.leaky_relu(self.c2(x), 0.1)
        h = torch.cat([a, b], dim=1)
        h = F.max_pool2d(h, 2)
        h = F.hardtanh(self.c3(h), -0.5, 0.5)
        h = F.avg_pool2d(h, 2, stride=1)
        h = F.adaptive_avg_pool2d(h, (2, 2))
        h = torch.stack([F.relu6(h), h.relu()], 1)
        h = torch.flatten(h, 1)
        return self.fc(h.view(h.size(0), -1))


def test_c1_custom_functional_forward_linearizes_exactly():
    torch.manual_seed(5)
    model = Functional().double().eval()
    g = trace(model)
    kinds = {n.path: n.kind for n in g.nodes}
    assert kinds["max_pool2d"] == "maxpool" and kinds["cat"] == "cat" and kinds["stack"] == "cat"
    assert kinds["avg_pool2d"] == "avgpool" and kinds["adaptive_avg_pool2d"] == "adaptiveavgpool"
    assert kinds["hardtanh"] == kinds["leaky_relu"] == kinds["relu6"] == "act"
    x = seeded((2, 3, 8, 8), scale=2.0)
    for i in range(2):
        err, S = exact(model, x, i)
        assert err <= TOL
    assert "max_pool2d" in S.keys() and "hardtanh" in S.keys()


def test_c1_cat_operator_blocks_and_adjoint_match_the_reference():
    torch.manual_seed(6)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(1, 2, 1), nn.Conv2d(1, 3, 1)

        def forward(self, x):
            return torch.cat([self.a(x), self.b(x), self.a(x)], -3)

    model = Net().double().eval()
    x = seeded((1, 1, 2, 3))
    S = support(model, x)
    lin = Linearization(model, S, 0)
    cat = next(n for n in lin.graph.nodes if n.kind == "cat")
    ops, b = lin.operator(cat.name)
    ref = cat_operator_reference([lin.shapes[u] for u in cat.inputs], 0)
    assert b is None and all(np.array_equal(M.toarray(), R) for (_, M), R in zip(ops, ref))
    rows = seeded((4, *lin.shapes[cat.name]), seed=1)
    prep = lin._adjoint_prep(cat, torch.device("cpu"))
    got = lin._adjoint_step(cat, rows, prep, torch.zeros(4, dtype=torch.float64))
    for (u, G), R in zip(got, ref):
        assert np.array_equal(G.reshape(4, -1).numpy(), rows.reshape(4, -1).numpy() @ R)
    err, _ = exact(model, x)  # the same input used twice: contributions add
    assert err <= TOL


@pytest.mark.parametrize("make", [
    lambda z: torch.cat([z, z], 0),
    lambda z: F.dropout(z, 0.5, training=True),
    lambda z: F.max_pool2d(z, 2, return_indices=True)[0],
    lambda z: F.gelu(z),
    lambda z: F.silu(z),
])
def test_c1_what_is_not_representable_is_refused_with_its_name(make):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(1, 2, 1)

        def forward(self, x):
            return make(self.c(x)).flatten(1).sum(1, keepdim=True)

    with pytest.raises(UnsupportedModuleError):
        support(Net().double().eval(), seeded((2, 1, 4, 4)))


def test_c1_replace_relu_keeps_relu6_unless_asked():
    m = nn.Sequential(nn.Conv2d(1, 1, 1), nn.ReLU6(), nn.ReLU())
    kept = replace_relu(m, tau=0.1)
    assert isinstance(kept[1], nn.ReLU6) and isinstance(kept[2], PHT)
    swapped = replace_relu(m, tau=0.1, relu6=True)
    assert isinstance(swapped[1], PHT) and isinstance(swapped[2], PHT)
    with pytest.raises(TypeError, match="relu6 must be a bool"):
        replace_relu(m, relu6=1)


# -- torchvision ---------------------------------------------------------------------------------

def _torchvision(make):
    """float64, eval, batch norm calibrated on a random batch (at torchvision's initialisation a
    PHT mobilenet_v2 is a constant network: A = J = 0 would prove nothing)."""
    torch.manual_seed(0)
    return calibrate_batchnorm(make().double(), seeded((16, 3, 32, 32), seed=1))


@pytest.mark.parametrize("name,make,upper", [
    ("mobilenet_v2 (ReLU6)", lambda: tvm.mobilenet_v2(num_classes=10), True),
    ("mobilenet_v2 replace_relu (ReLU6 kept)",
     lambda: replace_relu(tvm.mobilenet_v2(num_classes=10), tau=0.01), True),
    ("mobilenet_v2 PHT", lambda: replace_relu(tvm.mobilenet_v2(num_classes=10), tau=0.01, relu6=True),
     False),
    ("densenet small PHT", lambda: replace_relu(tvm.DenseNet(growth_rate=8, block_config=(2, 2),
                                                             num_init_features=16, num_classes=10),
                                                tau=0.01), False),
])
def test_c1_torchvision_models_linearize_exactly(name, make, upper):
    model = _torchvision(make)
    x = seeded((1, 3, 32, 32))
    err, S = exact(model, x, methods=("adjoint",))
    assert err <= TOL, name
    A, _ = linearize(model, S, 0)
    assert np.linalg.norm(A) > 1e-3  # a live network, not a constant one
    n_upper = sum(int(L.upper_mask(0).sum()) for L in S.layers.values() if L.packed is not None)
    assert (n_upper > 0) == upper  # ReLU6's third state is exercised where there is one


@pytest.mark.slow
def test_c1_densenet121_linearizes_exactly():
    model = _torchvision(lambda: replace_relu(tvm.densenet121(num_classes=10), tau=0.01))
    err, S = exact(model, seeded((1, 3, 32, 32)), methods=("adjoint",))
    assert err <= TOL
    assert np.linalg.norm(linearize(model, S, 0)[0]) > 1e-3


# -- random networks with the new activations and cat blocks ------------------------------------

@given(networks_and_inputs(activations=("leaky", "prelu", "relu6", "hardtanh", "threshold"),
                           concat=True, max_n=2))
def test_c1_random_networks_with_new_activations_linearize_exactly(case):
    S = support(case.model, case.x)
    with torch.no_grad():
        y = case.model(case.x).reshape(case.x.shape[0], -1).numpy()
    for i in range(case.x.shape[0]):
        lin = Linearization(case.model, S, i)
        xi = case.x[i].reshape(-1).numpy()
        for m in ("adjoint", "sparse"):
            A, c, _ = lin.compose(method=m)
            assert rel(A @ xi + c, y[i]) <= TOL
        J = torch.autograd.functional.jacobian(lambda v: case.model(v[None])[0], case.x[i])
        assert rel(A, J.reshape(y.shape[1], -1).numpy()) <= TOL


def test_c2_predicted_selection_uses_each_activations_rule():
    from altheory.claims.c2_linear_region import check_instance

    torch.manual_seed(7)
    for act in (nn.ReLU6(), nn.Hardtanh(-0.3, 0.2), nn.LeakyReLU(0.1), nn.PReLU(5)):
        model = nn.Sequential(nn.Linear(4, 5), act, nn.Linear(5, 2)).double().eval()
        x = seeded((1, 4), scale=3.0)
        r = check_instance(model, x, 0, np.random.default_rng(0).standard_normal(4))
        assert r["inside"] == "pass" and r["crossing"] == "pass", (act, r)


def test_c2_maxpool_after_hardtanh_constants_do_not_compete():
    """Hardtanh -> MaxPool: a window holding an upper constant outputs hi whatever its kept
    entries do (no constraint); lower constants never beat a kept entry. The max-pool margin
    is then the gap among kept entries only, and it is sharp on this case."""
    model = nn.Sequential(nn.Hardtanh(-1.0, 1.0), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(2, 1)).double().eval()
    # window 1: upper 3.0 with kept 0.5, 0.4 (no constraint); window 2: kept 0.2, 0.1 and lower
    x = torch.tensor([[[[3.0, 0.5, 0.2, 0.1], [0.4, -2.0, -5.0, -3.0]]]], dtype=torch.float64)
    S = support(model, x)
    assert_close(S["1"].margin[0], (0.2 - 0.1) / 2, scale=0.2, what="max-pool margin")
    assert_close(S["0"].margin[0], min(abs(v - b) for v in x.ravel().tolist() for b in (-1.0, 1.0)),
                 scale=5.0, what="hardtanh margin")                  # |x| <= 5: the terms
    for t, same in ((0.99, True), (1.01, False)):  # move 0.2 down, 0.1 up by t * margin
        xp = x.clone()
        xp[0, 0, 0, 2] -= t * 0.05
        xp[0, 0, 0, 3] += t * 0.05
        assert (support(model, xp) == S) == same


def test_testing_strategies_validate_the_new_arguments():
    from altheory.testing import net_specs

    with pytest.raises(ValueError, match="subset of"):
        net_specs(activations=("gelu",))
    with pytest.raises(TypeError, match="concat must be a bool"):
        net_specs(concat=1)


@pytest.mark.parametrize("act", ["leaky", "prelu", "relu6", "hardtanh"])
def test_c1_drawn_specs_build_each_new_activation_and_cat(act):
    from altheory.nets.architectures import build, random_inputs, sample_spec

    kinds = set()
    for seed in range(40):
        spec = sample_spec(seed, family="cnn", activations=(act,), concat=True)
        model = build(spec)
        kinds |= {type(m).__name__ for m in model.modules()}
        if "ConcatBlock" in kinds:
            break
    assert "ConcatBlock" in kinds
    assert {"leaky": "LeakyReLU", "prelu": "PReLU", "relu6": "ReLU6", "hardtanh": "Hardtanh"}[act] in kinds
    err, _ = exact(model, random_inputs(spec, 1, 0))
    assert err <= TOL


def test_c1_cat_of_one_tensor_repeated_and_stack_on_the_last_dim():
    """The same node three times in one cat (its adjoints add up) and a stack along dim=-1."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.fc = nn.Conv2d(1, 2, 1), nn.Linear(2 * 3 * 2 * 3 * 2, 2)

        def forward(self, x):
            h = self.a(x)
            h = torch.stack([torch.cat([h, h, h], dim=1)] * 2, dim=-1)
            return self.fc(h.flatten(1))

    torch.manual_seed(8)
    model = Net().double().eval()
    cats = [n for n in trace(model).nodes if n.kind == "cat"]
    assert [len(n.inputs) for n in cats] == [3, 2] and len(set(cats[0].inputs)) == 1
    err, _ = exact(model, seeded((2, 1, 2, 3)))
    assert err <= TOL


@pytest.mark.parametrize("inplace", [False, True])
def test_c1_inplace_activation_whose_input_is_read_again_is_refused(inplace):
    """``relu_(h) + h`` reads the activated h twice; altheory's graph would read the old h."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.r, self.b = nn.Linear(3, 4), nn.ReLU(inplace=inplace), nn.Linear(4, 2)

        def forward(self, x):
            h = self.a(x)
            return self.b(self.r(h) + h)

    model, x = Net().double().eval(), seeded((2, 3))
    if inplace:
        with pytest.raises(UnsupportedModuleError, match="in-place activation"):
            support(model, x)
    else:
        assert exact(model, x)[0] <= TOL
