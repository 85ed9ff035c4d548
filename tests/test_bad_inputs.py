r"""A table of bad library calls, each with the error it must raise.

Every row is a call a hostile-but-realistic user makes, with the exception type and a fragment
of the message (expected, got, fix). None may return a silently wrong result, and none may end
in a raw traceback from torch, numpy, scipy or cvxpy. The CLI has its own table
(tests/test_bad_inputs_cli.py).

Rows marked ``# was: silent`` returned a wrong answer before these checks existed; ``# was: raw`` ended in a
traceback that did not say what was wrong.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import altheory as at
from altheory import (PHT, FixedSupportNetwork, MLPObjective, TwoLayerFixedSupport,
                      UnsupportedModuleError, certify, descend, gated_forward, group_lasso,
                      layer_operator, linearize, per_layer, pht, pht_mask, pht_topk,
                      reduced_rank_regression, replace_relu, solve, solve_group_lasso, solve_layer,
                      support, topk_mask)
from altheory.alternation.alternation import alternate, mlp
from altheory.certificates.certificates import lifted_bound
from altheory.nets.architectures import build, sample_spec
from altheory.solvers.arrangements import (enumerate_patterns, program_to_network,
                                           prune_blocks, relu_objective, relu_program,
                                           sample_patterns)
from altheory.solvers.convex import group_nuclear
from altheory.solvers.problems import balanced_factors, factors_to_U, two_layer_network
from altheory.testing import inputs_for, net_specs, networks_and_inputs


# --------------------------------------------------------------------------------------------
# fixtures: small float64 models, built fresh for every row
# --------------------------------------------------------------------------------------------

def X():
    return torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


def Y2():
    return np.random.default_rng(0).standard_normal((5, 2))


def net(*tail: nn.Module, width: int = 4) -> nn.Sequential:
    """``Linear(3, width) -> PHT(0.1) -> Linear(width, 2)`` followed by ``tail``, seeded."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, width), PHT(0.1), nn.Linear(width, 2), *tail).double().eval()


def negated() -> nn.Sequential:
    """``net()`` with the first layer's weights negated: same architecture, other weights."""
    m = net()
    with torch.no_grad():
        m[0].weight.neg_()
    return m


def S():
    return support(net(), X())


class Functional(nn.Module):
    """An MLP whose non-linearity is a function call (or a tensor method)."""

    def __init__(self, fn):
        super().__init__()
        self.a, self.b, self.fn = nn.Linear(3, 4), nn.Linear(4, 2), fn

    def forward(self, x):
        return self.b(self.fn(self.a(x)))


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 2)

    def forward(self, x):
        return self.a(x) if x.sum() > 0 else -self.a(x)


def with_module(mod: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), mod, nn.Linear(4, 2)).double().eval()


def bn_net(*, train: bool = False, stats: bool = True) -> nn.Module:
    m = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, track_running_stats=stats), PHT(),
                      nn.Linear(4, 2)).double()
    return m.train(train)


def fsn(**kw) -> FixedSupportNetwork:
    return FixedSupportNetwork(net(), S(), X(), Y2(), "squared", 0.01, **kw)


def two_layer():
    rng = np.random.default_rng(0)
    Xn = rng.standard_normal((6, 3))
    return Xn, Xn @ rng.standard_normal((3, 4)) > 0, rng.standard_normal(6)


def P(**kw):
    Xn, G, y = two_layer()
    return TwoLayerFixedSupport(Xn, G, y, "squared", 0.1, **kw)


def layer_problem():
    rng = np.random.default_rng(0)
    return rng.standard_normal((6, 3)), np.zeros(6), rng.standard_normal(6)


def mlp_objective(**kw):
    rng = np.random.default_rng(0)
    Xn = rng.standard_normal((6, 3))
    Ws = [rng.standard_normal((4, 3)), rng.standard_normal(4)]
    kw.setdefault("masks", [Xn @ Ws[0].T > 0])
    return MLPObjective(Xn, rng.standard_normal(6), Ws, **kw)


def alt_data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((8, 3)), rng.standard_normal(8)


def nan_x():
    x = X()
    x[0, 0] = float("nan")
    return x


# --------------------------------------------------------------------------------------------
# the table: (id, call, exception type, message fragment)
# --------------------------------------------------------------------------------------------

BAD = [
    # -- activations ---------------------------------------------------------------------
    ("pht-tau-negative", lambda: pht(np.ones(2), tau=-0.1), ValueError, "Use tau=0 for ReLU"),
    ("pht-tau-nan", lambda: pht(np.ones(2), tau=float("nan")), ValueError, "finite number >= 0"),
    ("pht-tau-str", lambda: pht(np.ones(2), tau="0.1"), TypeError, "tau must be a real number"),
    ("pht-mask-tau-bool", lambda: pht_mask(np.ones(2), tau=True), TypeError, "tau must be a real"),
    ("pht-z-none", lambda: pht(None), TypeError, "z must be"),  # was: raw
    ("pht-z-strings", lambda: pht(np.array(["a", "b"])), TypeError, "z must be"),  # was: raw
    ("topk-k-zero", lambda: topk_mask(np.ones(3), k=0), ValueError, "k=None"),  # was: silent
    ("topk-k-negative", lambda: topk_mask(np.ones(3), k=-1), ValueError, "k must be >= 1"),
    ("topk-k-float", lambda: topk_mask(np.ones(3), k=1.5), TypeError, "k must be an int"),
    ("topk-k-none", lambda: pht_topk(np.ones(3), None), TypeError, "k must be an int"),
    ("topk-dim-out-of-range", lambda: pht_topk(np.ones((2, 3)), 1, dim=3), ValueError,
     "out of range for a tensor of shape (2, 3)"),  # was: silent
    ("topk-dim-negative-out-of-range", lambda: pht_topk(np.ones((2, 3)), 1, dim=-3), ValueError,
     "out of range"),  # was: silent
    ("topk-dim-float", lambda: topk_mask(np.ones((2, 3)), 1, dim=1.0), TypeError,
     "dim must be an int"),  # was: raw
    ("topk-k-above-width", lambda: pht_topk(np.ones((2, 3)), 4), ValueError,
     "larger than the 3 entries"),  # was: silent
    ("topk-scalar", lambda: topk_mask(np.float64(1.0), k=1), ValueError, "at least one dimension"),
    ("PHT-k-zero", lambda: PHT(k=0), ValueError, "k=None"),  # was: silent
    ("PHT-k-bool", lambda: PHT(k=True), TypeError, "k must be an int"),
    ("PHT-tau-and-k", lambda: PHT(0.1, k=2), ValueError, "not both"),  # was: tau ignored
    ("replace-relu-tau-and-k", lambda: replace_relu(nn.Sequential(nn.ReLU()), tau=0.1, k=2),
     ValueError, "not both"),  # was: tau ignored
    ("PHT-tau-negative", lambda: PHT(-1.0), ValueError, "tau must be"),
    ("PHT-dim-str", lambda: PHT(k=2, dim="1"), TypeError, "dim must be an int"),
    ("PHT-dim-out-of-range", lambda: PHT(k=1, dim=3)(torch.ones(2, 3)), ValueError,
     "out of range"),  # was: silent
    ("PHT-k-above-width", lambda: PHT(k=5)(torch.ones(2, 3)), ValueError,
     "larger than the 3 entries"),  # was: silent
    ("replace-relu-not-module", lambda: replace_relu("net"), TypeError, "torch.nn.Module"),
    ("replace-relu-k-zero", lambda: replace_relu(nn.Sequential(nn.Linear(2, 2)), k=0), ValueError,
     "k must be >= 1"),  # was: silent (no ReLU to replace, so nothing checked k)
    ("replace-relu-tau-negative", lambda: replace_relu(nn.Sequential(nn.Linear(2, 2)), tau=-1.0),
     ValueError, "tau must be"),  # was: silent

    # -- support: modules it cannot represent --------------------------------------------
    ("support-GELU", lambda: support(with_module(nn.GELU()), X()), UnsupportedModuleError,
     "GELU at '1'"),  # was: silent
    ("support-Softmax", lambda: support(with_module(nn.Softmax(-1)), X()), UnsupportedModuleError,
     "Softmax at '1'"),  # was: silent
    ("support-Hardswish", lambda: support(with_module(nn.Hardswish()), X()), UnsupportedModuleError,
     "Hardswish at '1'"),  # was ReLU6, now supported (three-state support)
    ("support-SiLU", lambda: support(with_module(nn.SiLU()), X()), UnsupportedModuleError,
     "SiLU at '1'"),
    ("support-cat-batch-dim", lambda: support(Functional(lambda z: torch.cat([z, z], 0)).double(),
                                              X()), UnsupportedModuleError, "batch dimension"),
    ("support-functional-dropout-training",
     lambda: support(Functional(lambda z: F.dropout(z, 0.5, training=True)).double(), X()),
     UnsupportedModuleError, "training=True"),
    ("support-Sigmoid", lambda: support(with_module(nn.Sigmoid()), X()), UnsupportedModuleError,
     "Sigmoid at '1'"),  # was: silent
    ("support-LayerNorm", lambda: support(with_module(nn.LayerNorm(4)), X()),
     UnsupportedModuleError, "LayerNorm at '1'"),  # was: silent
    ("support-nested-Tanh", lambda: support(with_module(nn.Sequential(nn.Tanh())), X()),
     UnsupportedModuleError, "Tanh at '1.0'"),  # was: silent
    ("support-functional-gelu", lambda: support(Functional(F.gelu).double(), X()),
     UnsupportedModuleError, "gelu"),  # was: silent
    ("support-functional-softmax", lambda: support(Functional(lambda z: F.softmax(z, -1)).double(),
                                                    X()), UnsupportedModuleError, "softmax"),  # was: silent
    ("support-method-sigmoid", lambda: support(Functional(lambda z: z.sigmoid()).double(), X()),
     UnsupportedModuleError, ".sigmoid()"),  # was: silent
    ("support-scaled", lambda: support(Functional(lambda z: 2 * z).double(), X()),
     UnsupportedModuleError, "mul"),  # was: silent (linear, but no operator: the same rule)
    ("support-bn-batch-stats", lambda: support(bn_net(stats=False), X()), UnsupportedModuleError,
     "track_running_stats=False"),  # was: silent
    ("support-bn-training", lambda: support(bn_net(train=True), X()), ValueError, "model.eval()"),
    ("support-dropout-training", lambda: support(with_module(nn.Dropout(0.5)).train(), X()),
     ValueError, "Dropout"),  # was: silent (a random support)
    ("support-control-flow", lambda: support(Branchy().double(), X()), UnsupportedModuleError,
     "could not trace"),
    ("support-not-module", lambda: support("net", X()), TypeError, "torch.nn.Module"),
    ("support-x-str", lambda: support(net(), "x"), TypeError, "torch.Tensor or numpy array"),
    ("support-x-unbatched", lambda: support(net(), X()[0]), ValueError, "x[None]"),
    ("support-x-nan", lambda: support(net(), nan_x()), ValueError, "NaN or Inf"),
    ("support-x-float32", lambda: support(net(), X().float()), TypeError,
     "dtype"),  # was: raw
    ("support-x-int", lambda: support(net(), torch.ones(5, 3, dtype=torch.int64)), TypeError,
     "dtype"),  # was: raw
    ("support-x-empty", lambda: support(net(), torch.ones(0, 3, dtype=torch.float64)), ValueError,
     "at least one sample"),  # was: raw (numpy reshape)
    ("support-x-wrong-features", lambda: support(net(), torch.randn(5, 4, dtype=torch.float64)),
     ValueError, "could not run"),  # was: raw

    # -- the support object ----------------------------------------------------------------
    ("S-unknown-layer", lambda: S()["7"], KeyError, "no selection layer"),
    ("S-sample-out-of-range", lambda: S().sample(9), ValueError, "out of range"),
    ("S-sample-str", lambda: S().sample("0"), TypeError, "must be an int"),
    ("S-flips-other-arch", lambda: S().flips(support(net(width=5), X())), ValueError,
     "not comparable"),
    ("S-subset-str", lambda: S().subset("a"), ValueError, "sample indices in [0, 5)"),  # was: raw
    ("S-subset-out-of-range", lambda: S().subset([9]), ValueError, "got [9]"),  # was: raw
    ("S-is-consistent-other-arch", lambda: S().is_consistent(net(width=5), X()), ValueError,
     "not comparable"),  # was: silent (False)
    ("S-flips-not-support", lambda: S().flips("S"), TypeError, "MultiLayerSupport"),
    ("S-maxpool-mask",
     lambda: support(nn.Sequential(nn.MaxPool2d(2), nn.Flatten()).double(),
                     torch.randn(2, 1, 4, 4, dtype=torch.float64))["0"].mask(), ValueError,
     "max-pool selection"),

    # -- gated_forward -----------------------------------------------------------------------
    ("gated-GELU-after-support", lambda: gated_forward(net(nn.GELU()), S(), X()),
     UnsupportedModuleError, "GELU at '3'"),  # was: silent (returned GELU's output as f_S)
    ("gated-other-weights", lambda: gated_forward(negated(), S(), X()), ValueError,
     "other weights"),  # was: silent
    ("gated-other-arch", lambda: gated_forward(net(width=5), S(), X()), ValueError,
     "another"),  # was: raw
    ("gated-other-arch-any-weights",
     lambda: gated_forward(net(width=5), S().for_any_weights(), X()), ValueError,
     "another architecture"),  # was: raw
    ("gated-batch-size", lambda: gated_forward(net(), S(), X()[:2]), ValueError, "S.subset"),
    ("gated-x-float32", lambda: gated_forward(net(), S(), X().float()), TypeError,
     "x.to(torch.float64)"),  # was: raw
    ("gated-x-nan", lambda: gated_forward(net(), S(), nan_x()), ValueError, "NaN or Inf"),
    ("gated-not-support", lambda: gated_forward(net(), "S", X()), TypeError, "MultiLayerSupport"),
    ("gated-bn-training",
     lambda: gated_forward(bn_net(train=True), support(bn_net(), X()), X()), ValueError,
     "model.eval()"),  # was: silent (batch statistics)
    ("gated-same-weights-not-bool", lambda: gated_forward(net(), S(), X(), same_weights="no"),
     TypeError, "same_weights must be a bool"),

    # -- linearize, layer_operator ---------------------------------------------------------
    ("linearize-other-weights", lambda: linearize(net(), support(negated(), X()), 0), ValueError,
     "other weights"),  # was: silent (A x + c off by O(1))
    ("linearize-other-arch-any-weights",
     lambda: linearize(net(width=5), S().for_any_weights(), 0), ValueError,
     "another architecture"),  # was: raw
    ("linearize-GELU-after-support", lambda: linearize(net(nn.GELU()), S(), 0),
     UnsupportedModuleError, "GELU at '3'"),
    ("linearize-index", lambda: linearize(net(), S(), 5), ValueError, "out of range"),
    ("layer-operator-other-weights", lambda: layer_operator(net(), support(negated(), X()), 0, X()),
     ValueError, "other weights"),  # was: silent
    ("layer-operator-other-batch", lambda: layer_operator(net(), S(), 0, X() + 1), ValueError,
     "same_batch=False"),
    ("layer-operator-X-string", lambda: layer_operator(net(), S(), 0, "X"), TypeError,
     "X must be a real tensor or array"),  # was: raw

    # -- FixedSupportNetwork -----------------------------------------------------------------
    ("fsn-GELU", lambda: FixedSupportNetwork(net(nn.GELU()), S(), X(), Y2()),
     UnsupportedModuleError, "GELU at '3'"),  # was: silent
    ("fsn-other-weights", lambda: FixedSupportNetwork(negated(), S(), X(), Y2()), ValueError,
     "other weights"),  # was: silent
    ("fsn-other-batch", lambda: FixedSupportNetwork(net(), S(), X() + 1, Y2()), ValueError,
     "not the batch"),  # was: silent
    ("fsn-Y-outputs", lambda: FixedSupportNetwork(net(), S(), X(), np.zeros((5, 3))), ValueError,
     "output(s) per sample"),  # was: raw (at the first objective())
    ("fsn-Y-rows", lambda: FixedSupportNetwork(net(), S(), X(), np.zeros((4, 2))), ValueError,
     "rows"),
    ("fsn-X-nan", lambda: FixedSupportNetwork(net(), S(), nan_x(), Y2()), ValueError, "NaN or Inf"),
    ("fsn-same-weights-str", lambda: FixedSupportNetwork(net(), S(), X(), Y2(), same_weights="no"),
     TypeError, "same_weights must be a bool"),
    ("fsn-model-str", lambda: FixedSupportNetwork("net", S(), X(), Y2()), TypeError,
     "torch.nn.Module"),
    ("fsn-S-str", lambda: FixedSupportNetwork(net(), "S", X(), Y2()), TypeError,
     "MultiLayerSupport"),
    ("fsn-loss", lambda: FixedSupportNetwork(net(), S(), X(), Y2(), "l2"), ValueError,
     "loss must be one of"),
    ("fsn-lam", lambda: FixedSupportNetwork(net(), S(), X(), Y2(), "squared", -1.0), ValueError,
     "lam must be"),
    ("fsn-logistic-real-targets",
     lambda: FixedSupportNetwork(net(), S(), X(), np.zeros(5), "logistic"), ValueError,
     "y = 2*labels - 1"),

    # -- TwoLayerFixedSupport and helpers ------------------------------------------------------
    ("P-G-rows", lambda: TwoLayerFixedSupport(two_layer()[0], np.ones((5, 2), bool),
                                              two_layer()[2]), ValueError, "G must have shape"),
    ("P-G-values", lambda: TwoLayerFixedSupport(two_layer()[0], np.full((6, 2), 2),
                                                two_layer()[2]), ValueError, "boolean"),
    ("P-X-nan", lambda: TwoLayerFixedSupport(np.full((6, 3), np.nan), *two_layer()[1:]),
     ValueError, "NaN or Inf"),
    ("P-X-str", lambda: TwoLayerFixedSupport("X", *two_layer()[1:]), TypeError,
     "X must be an array"),
    ("P-X-3d", lambda: TwoLayerFixedSupport(np.ones((6, 3, 1)), *two_layer()[1:]), ValueError,
     "2 dimension"),
    ("P-empty", lambda: TwoLayerFixedSupport(np.ones((0, 3)), np.ones((0, 1), bool), np.ones(0)),
     ValueError, "at least one sample"),
    ("P-softmax", lambda: TwoLayerFixedSupport(*two_layer(), "softmax"), ValueError,
     "scalar output"),
    ("P-loss-unknown", lambda: TwoLayerFixedSupport(*two_layer(), "mse"), ValueError,
     "loss must be one of"),
    ("P-y-length", lambda: TwoLayerFixedSupport(*two_layer()[:2], np.ones(5)), ValueError,
     "y must have shape"),
    ("P-lam-negative", lambda: TwoLayerFixedSupport(*two_layer(), "squared", -1.0), ValueError,
     "lam must be"),
    ("P-lam-str", lambda: TwoLayerFixedSupport(*two_layer(), "squared", "0.1"), TypeError,
     "lam must be a real number"),
    ("P-objective-U-shape", lambda: P().objective(np.ones((3, 3))), ValueError,
     "U must have shape"),
    ("P-factors-w2", lambda: P().objective_factors(np.ones((4, 3)), np.ones(3)), ValueError,
     "w2 must have shape"),
    ("P-solve-unknown-solver", lambda: P().solve(solver="cvx"), ValueError, "solver must be one of"),
    ("P-solve-fast-lam-zero",
     lambda: TwoLayerFixedSupport(*two_layer(), "squared", 0.0).solve(solver="fast"), ValueError,
     "solver='clarabel'"),
    ("solve-not-problem", lambda: solve("P"), TypeError, "TwoLayerFixedSupport"),
    ("from-network-three-layers",
     lambda: TwoLayerFixedSupport.from_network(mlp(3, (4, 4)), two_layer()[0], two_layer()[2]),
     ValueError, "Linear(d, p)"),
    ("from-network-bias",
     lambda: TwoLayerFixedSupport.from_network(mlp(3, (4,)), two_layer()[0], two_layer()[2]),
     ValueError, "bias=False"),
    ("from-network-not-module",
     lambda: TwoLayerFixedSupport.from_network("net", two_layer()[0], two_layer()[2]),
     TypeError, "torch.nn.Module"),  # was: raw
    ("from-network-GELU",
     lambda: TwoLayerFixedSupport.from_network(
         nn.Sequential(nn.Linear(3, 4, bias=False), nn.GELU(), nn.Linear(4, 1, bias=False)),
         two_layer()[0], two_layer()[2]), UnsupportedModuleError, "GELU at '1'"),  # was: silent
    ("from-gate-vectors-d",
     lambda: TwoLayerFixedSupport.from_gate_vectors(two_layer()[0], np.ones((4, 2)),
                                                    two_layer()[2]), ValueError, "V must have shape"),
    ("factors-of-not-module", lambda: P().factors_of("net"), TypeError, "torch.nn.Module"),  # was: raw
    ("two-layer-network-w2", lambda: two_layer_network(np.ones((3, 2)), np.ones(4)), ValueError,
     "w2 must have shape"),  # was: raw
    ("two-layer-network-W1-1d", lambda: two_layer_network(np.ones(3), np.ones(3)), ValueError,
     "W1 must have 2 dimension"),
    ("two-layer-network-tau", lambda: two_layer_network(np.ones((3, 2)), np.ones(3), tau=-1.0),
     ValueError, "tau must be"),
    ("balanced-factors-1d", lambda: balanced_factors(np.ones(3)), ValueError, "2 dimension"),
    ("factors-to-U-w2", lambda: factors_to_U(np.ones((3, 2)), np.ones(2)), ValueError,
     "w2 must have shape"),

    # -- convex and fast solvers -------------------------------------------------------------
    ("group-lasso-lam", lambda: group_lasso(*two_layer(), -1.0), ValueError, "lam must be"),
    ("group-lasso-solver", lambda: group_lasso(*two_layer(), 0.1, solver="mosek"), ValueError,
     "solver must be one of"),
    ("group-lasso-hinge-real", lambda: group_lasso(*two_layer(), 0.1, loss="hinge"), ValueError,
     "{-1, +1}"),
    ("group-lasso-softmax", lambda: group_lasso(*two_layer(), 0.1, loss="softmax"), ValueError,
     "scalar output"),
    ("group-lasso-fallback-str", lambda: group_lasso(*two_layer(), 0.1, fallback="no"), TypeError,
     "fallback must be a bool"),  # was: silent (any truthy value)
    ("per-layer-offset", lambda: per_layer(layer_problem()[0], np.zeros(5), layer_problem()[2]),
     ValueError, "offset"),
    ("per-layer-solver", lambda: per_layer(*layer_problem(), solver="x"), ValueError,
     "solver must be one of"),
    ("per-layer-lam", lambda: per_layer(*layer_problem(), lam=-1.0), ValueError, "lam must be"),
    ("per-layer-n-weight", lambda: per_layer(*layer_problem(), n_weight=9), ValueError, "n_weight"),
    ("per-layer-phi-nan", lambda: per_layer(np.full((6, 3), np.nan), *layer_problem()[1:]),
     ValueError, "NaN or Inf"),
    ("per-layer-fast-hinge",
     lambda: per_layer(*layer_problem()[:2], np.sign(layer_problem()[2]), loss="hinge",
                       solver="fast"), ValueError, "solver='clarabel'"),
    ("per-layer-loss", lambda: per_layer(*layer_problem(), loss="l1"), ValueError,
     "loss must be one of"),
    ("per-layer-solver-type", lambda: per_layer(*layer_problem(), solver=None), TypeError,
     "solver must be a str"),  # was: raw (None not in the choices: a ValueError with no fix)
    ("rrr-rank", lambda: reduced_rank_regression(np.eye(3), np.eye(3), -1), ValueError,
     "r must be"),
    ("rrr-rows", lambda: reduced_rank_regression(np.eye(3), np.eye(2), 1), ValueError, "rows"),
    ("group-nuclear-Y-1d", lambda: group_nuclear(*two_layer(), 0.1), ValueError, "Y[:, None]"),
    ("fast-group-lasso-lam-zero", lambda: solve_group_lasso(*two_layer(), 0.0), ValueError, "lam"),
    ("fast-group-lasso-hinge", lambda: solve_group_lasso(*two_layer(), 0.1, loss="hinge"),
     ValueError, "loss"),
    ("fast-layer-lam", lambda: solve_layer(*layer_problem(), -1.0), ValueError, "lam must be"),
    ("fast-layer-rows", lambda: solve_layer(layer_problem()[0], np.zeros(6), np.ones(5)),
     ValueError, "rows"),

    ("enumerate-patterns-1d", lambda: enumerate_patterns(np.ones(3)), ValueError, "2 dimension"),
    ("sample-patterns-zero", lambda: sample_patterns(two_layer()[0], 0), ValueError,
     "n_samples must be an int >= 1"),
    ("relu-program-patterns-str", lambda: relu_program(*two_layer()[::2], 0.1, "p"), TypeError,
     "enumerate_patterns"),
    ("relu-program-other-X",
     lambda: relu_program(two_layer()[0][:4], two_layer()[2][:4], 0.1,
                          enumerate_patterns(two_layer()[0])), ValueError, "n=4 rows"),
    ("prune-blocks-G-shape", lambda: prune_blocks(np.ones((5, 3)), np.ones((5, 4), bool),
                                                  np.ones((6, 3)), np.ones((6, 3))),
     ValueError, "G must have shape (n, P)"),  # was: raw (numpy broadcast) or silent
    ("prune-blocks-G-values", lambda: prune_blocks(np.ones((5, 3)), np.full((5, 6), 0.5),
                                                   np.ones((6, 3)), np.ones((6, 3))),
     ValueError, "bool or 0/1"),  # was: silent (0.5 read as True)
    ("prune-blocks-VW-shapes", lambda: prune_blocks(np.ones((5, 3)), np.ones((5, 6), bool),
                                                    np.ones((6, 3)), np.ones((6, 2))),
     ValueError, "V and W must both have shape"),  # was: raw
    ("prune-blocks-rtol", lambda: prune_blocks(np.ones((5, 3)), np.ones((5, 6), bool),
                                               np.ones((6, 3)), np.ones((6, 3)), rtol=0.0),
     ValueError, "rtol must be"),  # was: silent (nothing zeroed)
    ("prune-blocks-max-steps", lambda: prune_blocks(np.ones((5, 3)), np.ones((5, 6), bool),
                                                    np.ones((6, 3)), np.ones((6, 3)),
                                                    max_steps=-1),
     ValueError, "max_steps must be"),  # was: silent (no step)
    ("program-to-network-d", lambda: program_to_network(np.ones((3, 2)), np.ones((4, 3))),
     ValueError, "the same d"),  # was: raw (numpy concatenate)
    ("relu-objective-w2",
     lambda: relu_objective(two_layer()[0], two_layer()[2], np.ones((4, 3)), np.ones(5), 0.1),
     ValueError, "w2 (p,)"),  # was: raw (numpy matmul)
    ("relu-objective-lam", lambda: relu_objective(two_layer()[0], two_layer()[2], np.ones((4, 3)),
                                                  np.ones(4), -1.0), ValueError, "lam must be"),  # was: silent
    # -- descent -----------------------------------------------------------------------------
    ("mlp-objective-weights-array", lambda: MLPObjective(np.eye(3), np.ones(3), np.ones((3, 3))),
     TypeError, "list of arrays"),
    ("mlp-objective-columns", lambda: MLPObjective(np.eye(3), np.ones(3), [np.ones((2, 4))]),
     ValueError, "columns"),
    ("mlp-objective-mask-count", lambda: mlp_objective(masks=[]), ValueError, "L-1"),
    ("mlp-objective-mask-shape", lambda: mlp_objective(masks=[np.ones((6, 3), bool)]), ValueError,
     "masks[0] must have shape"),
    ("mlp-objective-tau", lambda: mlp_objective(masks=None, tau=-1.0), ValueError, "tau=0"),
    ("mlp-objective-trainable", lambda: mlp_objective(trainable=[5]), ValueError, "trainable"),
    ("descend-method", lambda: descend(mlp_objective(), method="newton"), ValueError, "method"),
    ("descend-max-iter", lambda: descend(mlp_objective(), max_iter=-1), ValueError, "max_iter"),
    ("descend-tol-grad", lambda: descend(mlp_objective(), tol_grad=0.0), ValueError, "tol_grad"),
    ("descend-theta0-shape", lambda: descend(mlp_objective(), np.ones(3)), ValueError, "theta0"),
    ("descend-lr-negative", lambda: descend(mlp_objective(), method="gd", lr=-1.0, max_iter=3),
     ValueError, "lr must be a finite number > 0"),  # was: silent (ascent)
    ("descend-batch-size-zero", lambda: descend(mlp_objective(), method="sgd", batch_size=0),
     ValueError, "batch_size must be an int >= 1"),  # was: raw (range())
    ("descend-seed-str", lambda: descend(mlp_objective(), seed="a"), TypeError,
     "seed must be an int"),  # was: raw (int())
    ("descend-not-objective", lambda: descend("f"), TypeError, "MLPObjective"),  # was: raw

    # -- certificates ------------------------------------------------------------------------
    ("certify-not-problem", lambda: certify("P"), TypeError, "TwoLayerFixedSupport"),
    ("certify-fsn-no-layer", lambda: certify(fsn()), ValueError, "layer="),
    ("certify-fsn-unknown-layer", lambda: certify(fsn(), layer="9"), ValueError,
     "no Linear/Conv2d layer"),
    ("certify-U-shape", lambda: certify(P(), np.ones((3, 3))), ValueError, "U must have shape"),
    ("certify-mlp-theta-shape", lambda: certify(mlp_objective(), np.zeros(3)), ValueError,
     "theta must have shape"),
    ("certify-solver", lambda: certify(P(), np.zeros((4, 3)), solver="x"), ValueError,
     "solver must be one of"),
    ("lifted-bound-masks-array",
     lambda: lifted_bound(two_layer()[0], two_layer()[1], two_layer()[2]), TypeError,
     "[mask]"),  # was: raw (truth value of an array)
    ("certify-mlp-no-masks", lambda: certify(mlp_objective(masks=None), np.zeros(16)), ValueError,
     "fixed masks"),

    # -- alternation -------------------------------------------------------------------------
    ("alternate-weight-step", lambda: alternate(mlp(3, (4,)), *alt_data(), weight_step="x"),
     ValueError, "weight_step must be one of"),
    ("alternate-Y-rows", lambda: alternate(mlp(3, (4,)), alt_data()[0], np.ones(5)), ValueError,
     "rows"),
    ("alternate-lam", lambda: alternate(mlp(3, (4,)), *alt_data(), lam=-1.0), ValueError,
     "lam must be"),
    ("alternate-max-rounds", lambda: alternate(mlp(3, (4,)), *alt_data(), max_rounds=0),
     ValueError, "max_rounds"),
    ("alternate-tol-negative", lambda: alternate(mlp(3, (4,)), *alt_data(), tol=-1.0), ValueError,
     "tol must be a finite number >= 0"),  # was: silent
    ("alternate-X-features", lambda: alternate(mlp(3, (4,)), np.ones((8, 4)), np.ones(8)),
     ValueError, "per-sample shape"),
    ("alternate-not-mlp",
     lambda: alternate(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(),
                                     nn.Linear(2, 1)).double(), np.ones((4, 1, 3, 3)), np.ones(4)),
     ValueError, "alternate Linear and PHT/ReLU"),
    ("alternate-topk-preserving",
     lambda: alternate(mlp(3, (4,), topk=2), *alt_data(), weight_step="support-preserving"),
     ValueError, "threshold PHT"),
    ("alternate-logistic-real", lambda: alternate(mlp(3, (4,)), *alt_data(), loss="logistic"),
     ValueError, "{-1, +1}"),
    ("mlp-topk-zero", lambda: mlp(3, (4,), topk=0), ValueError, "k=None"),  # was: silent
    ("mlp-width-zero", lambda: mlp(3, (0,)), ValueError, "widths"),

    # -- hypothesis strategies and architectures -----------------------------------------------
    ("net-specs-family", lambda: net_specs(family="rnn"), ValueError, "family must be"),
    ("net-specs-depth", lambda: net_specs(max_depth=0), ValueError, "max_depth must be >= 1"),
    ("net-specs-depth-float", lambda: net_specs(max_depth=2.5), TypeError, "max_depth must be an int"),
    ("net-specs-activation", lambda: net_specs(activations=("gelu",)), ValueError, "activations"),
    ("net-specs-activation-str", lambda: net_specs(activations="relu"), TypeError,
     "activations must be a tuple"),  # was: unclear (a set of letters)
    ("net-specs-image-size", lambda: net_specs(image_size=(5,)), ValueError,
     "image_size must be"),  # was: raw (unpacking)
    ("net-specs-image-size-zero", lambda: net_specs(image_size=(0, 3)), ValueError,
     "image_size must be"),
    ("inputs-for-min-n", lambda: inputs_for((3,), min_n=0), ValueError, "min_n must be >= 1"),
    ("inputs-for-scale", lambda: inputs_for((3,), scale=0), ValueError, "scale must be"),
    ("inputs-for-shape", lambda: inputs_for("3"), TypeError, "input_shape"),  # was: raw
    ("networks-and-inputs-max-n", lambda: networks_and_inputs(max_n=0), ValueError, "max_n"),
    ("build-not-spec", lambda: build("spec"), TypeError, "NetSpec"),
    ("sample-spec-family", lambda: sample_spec(0, family="rnn"), ValueError, "family must be"),
]


@pytest.mark.parametrize("call, exc, match", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_call_raises_with_fix(call, exc, match):
    """Each bad call raises its documented exception, whose message contains the fragment."""
    with pytest.raises(exc) as info:
        call()
    assert match in str(info.value), f"message lacks {match!r}: {info.value}"


def test_table_is_large_and_ids_unique():
    assert len(BAD) >= 60
    assert len({b[0] for b in BAD}) == len(BAD)


def test_error_messages_say_what_was_got():
    """Spot-check of the style: the new messages name the value they got."""
    with pytest.raises(ValueError, match=r"got k=0"):
        PHT(k=0)
    with pytest.raises(ValueError, match=r"got dim=3"):
        pht_topk(np.ones((2, 3)), 1, dim=3)


# --------------------------------------------------------------------------------------------
# the weight fingerprint: what it accepts
# --------------------------------------------------------------------------------------------

def test_fingerprint_survives_dtype_and_copy():
    """A support stays valid for the same weights: a deep copy, and float32 -> float64 (exact)."""
    import copy

    m = net().float()
    x = X().float()
    Sf = support(m, x)
    m64 = copy.deepcopy(m).double()
    A, c = linearize(m64, Sf, 0)  # same values: accepted
    np.testing.assert_allclose(A @ x[0].double().numpy() + c, m64(x.double())[0].detach().numpy(),
                               rtol=1e-6)


def test_fingerprint_opt_out_holds_a_support_while_weights_change():
    """``S.for_any_weights()`` and ``same_weights=False`` hold a support on purpose."""
    m, x = net(), X()
    S0 = support(m, x)
    with torch.no_grad():
        m[0].weight.add_(0.5)
    with pytest.raises(ValueError, match="other weights"):
        gated_forward(m, S0, x)
    out = gated_forward(m, S0, x, same_weights=False)
    torch.testing.assert_close(out, gated_forward(m, S0.for_any_weights(), x))
    A, c = linearize(m, S0.for_any_weights(), 0)
    np.testing.assert_allclose(A @ x[0].numpy() + c, out[0].detach().numpy(), rtol=1e-10, atol=1e-12)


def test_fixed_support_network_holds_its_support_while_weights_change():
    """The problem's variable is W: changing the model's weights after construction is allowed."""
    problem = fsn()
    before = problem.objective()
    with torch.no_grad():
        problem.model[2].weight.mul_(2.0)
    assert problem.objective() != before
    assert certify(problem, layer="2").status == "certified"
