r"""The model as a graph of affine maps and supports (torch.fx), and its two executions.

A CNN built from the modules of docs/claims.md's notation is a directed acyclic graph whose nodes are
either affine maps (Linear, Conv2d, BatchNorm in eval mode, average pooling, reshapes, residual
additions) or *selections* (PHT/ReLU activations and max pooling). :func:`trace` turns a model
into that graph with ``torch.fx``, treating :class:`~altheory.nets.activations.PHT` as a leaf, and
classifies each node. :func:`execute` runs the graph in one of two modes:

* ``"record"``: the true network :math:`f(x; W)`; every selection node records its support
  (boolean mask for activations, argmax indices for max pooling) and its margin;
* ``"gated"``: the fixed-support network :math:`f_S(x; W)`, where each selection applies a given
  support instead of computing its own. It is affine in ``x`` and, layer by layer, in ``W``,
  and it is differentiable in both (autograd never sees a threshold).

Support keys are module paths, with ``#j`` appended for the j-th reuse of one module in the
same forward pass (torchvision's BasicBlock applies ``relu`` twice: ``layer1.0.relu`` and
``layer1.0.relu#1``). Functional selections (``F.relu``, ``.relu()``, ``F.relu6``,
``F.leaky_relu``, ``F.hardtanh``, ``F.max_pool2d``) are keyed by their fx node name.

Activations, by the states of their support (:func:`act_kind`):

* ``"pht"`` — PHT (threshold and top-k) and ReLU: two states, the off side is an exact zero;
  :math:`D = \mathrm{diag}(s)`.
* ``"leaky"`` — LeakyReLU (slope ``a`` fixed) and PReLU (slope per channel, a parameter of the
  model): two states, ``s = 1[z > 0]``, the off side is ``a z``;
  :math:`D = \mathrm{diag}(s + a (1 - s))`; margin :math:`\min |z|`.
* ``"clamp"`` — Hardtanh(lo, hi) and ReLU6 (= Hardtanh(0, 6)): three states, lower constant
  (``z <= lo``), identity (``lo < z < hi``: the ``mask``) and upper constant (``z >= hi``: the
  ``upper`` mask); :math:`D = \mathrm{diag}(s)` and the constants ``lo``/``hi`` go into the bias
  :math:`c`; margin :math:`\min(|z - lo|, |z - hi|)`. The regions follow autograd's
  ``hardtanh_backward`` (derivative 1 only strictly inside), so :math:`A_S` is autograd's
  Jacobian.

Graph operations beyond the affine modules: ``torch.cat`` / ``torch.stack`` along a per-sample
dimension (kind ``"cat"``), the functional pools ``F.max_pool2d``, ``F.avg_pool2d``,
``F.adaptive_avg_pool2d`` (a module of the same parameters is built from the call's constant
arguments), ``torch.flatten`` and the reshape methods, ``F.dropout(training=False)``.
"""

from __future__ import annotations

import inspect
import math
import operator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import fx, nn

from altheory.nets.activations import PHT, select, topk_mask

__all__ = ["Node", "Graph", "trace", "execute", "Selection", "check_supported", "SUPPORTED"]

Kind = Literal[
    "input", "linear", "conv", "bn", "avgpool", "adaptiveavgpool", "maxpool", "act",
    "reshape", "identity", "add", "cat", "output", "other",
]
ActKind = Literal["pht", "leaky", "clamp"]

_RESHAPE_METHODS = {"view", "reshape", "flatten", "contiguous"}
_RESHAPE_FUNCTIONS = {torch.flatten, torch.reshape}
_ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}
_RELU_FUNCTIONS = {F.relu, torch.relu, torch.relu_, F.relu_}
_RELU_METHODS = {"relu", "relu_"}
_CAT_FUNCTIONS = {torch.cat, torch.concat, torch.concatenate}
_STACK_FUNCTIONS = {torch.stack}

SUPPORTED = ("Linear, Conv2d, BatchNorm1d/2d (eval, running statistics), AvgPool2d, "
             "AdaptiveAvgPool2d, MaxPool2d (modules or F.avg_pool2d, F.adaptive_avg_pool2d, "
             "F.max_pool2d), Flatten/reshape (torch.flatten, .view, .reshape, .flatten), Identity, "
             "Dropout (eval), residual addition, torch.cat/torch.stack along a per-sample "
             "dimension, ReLU (module, F.relu, torch.relu, .relu()), PHT, LeakyReLU (module, "
             "F.leaky_relu), PReLU (module), ReLU6 and Hardtanh (modules, F.relu6, F.hardtanh)")


# signatures of the functional forms, to read their constant arguments (fx keeps args/kwargs
# as written in forward())
def _sig_max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                    return_indices=False): ...
def _sig_avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
                    count_include_pad=True, divisor_override=None): ...
def _sig_adaptive_avg_pool2d(input, output_size): ...
def _sig_relu(input, inplace=False): ...
def _sig_leaky_relu(input, negative_slope=0.01, inplace=False): ...
def _sig_hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False): ...
def _sig_cat(tensors, dim=0): ...
def _sig_dropout(input, p=0.5, training=True, inplace=False): ...


def _functional_module(fn: fx.Node) -> tuple[Kind, nn.Module | None, str]:
    """(kind, module of the same parameters, why) for a functional pool / activation / dropout;
    kind ``"other"`` with the reason when an argument is not a constant or not supported."""
    target = fn.target
    table = {F.max_pool2d: _sig_max_pool2d, F.avg_pool2d: _sig_avg_pool2d,
             F.adaptive_avg_pool2d: _sig_adaptive_avg_pool2d, F.relu6: _sig_relu,
             F.leaky_relu: _sig_leaky_relu, F.hardtanh: _sig_hardtanh, F.dropout: _sig_dropout}
    sig = table[target]
    name = getattr(target, "__name__", str(target))
    try:
        bound = inspect.signature(sig).bind(*fn.args, **fn.kwargs)
    except TypeError as exc:
        return "other", None, f"function {name}() called with arguments altheory cannot read ({exc})"
    bound.apply_defaults()
    a = dict(bound.arguments)
    a.pop("input")
    nodes = [k for k, v in a.items()
             if any(isinstance(u, fx.Node) for u in (v if isinstance(v, (tuple, list)) else (v,)))]
    if nodes:
        return "other", None, (f"function {name}() with argument(s) {nodes} computed in forward() "
                               "(only constant arguments are supported)")
    if sig is _sig_max_pool2d:
        if a["return_indices"]:
            return "other", None, "F.max_pool2d(return_indices=True) returns a tuple"
        return "maxpool", nn.MaxPool2d(a["kernel_size"], a["stride"], a["padding"], a["dilation"],
                                       ceil_mode=a["ceil_mode"]), ""
    if sig is _sig_avg_pool2d:
        return "avgpool", nn.AvgPool2d(a["kernel_size"], a["stride"], a["padding"], a["ceil_mode"],
                                       a["count_include_pad"], a["divisor_override"]), ""
    if sig is _sig_adaptive_avg_pool2d:
        return "adaptiveavgpool", nn.AdaptiveAvgPool2d(a["output_size"]), ""
    if target is F.relu6:
        return "act", nn.ReLU6(), ""
    if sig is _sig_leaky_relu:
        return "act", nn.LeakyReLU(float(a["negative_slope"])), ""
    if sig is _sig_hardtanh:
        lo, hi = float(a["min_val"]), float(a["max_val"])
        if not lo < hi:
            return "other", None, f"F.hardtanh with min_val={lo} >= max_val={hi}"
        return "act", nn.Hardtanh(lo, hi), ""
    if sig is _sig_dropout:
        if a["training"] and a["p"] > 0:
            return "other", None, ("F.dropout(training=True) zeroes random entries; pass "
                                   "training=self.training and call model.eval()")
        return "identity", None, ""
    raise AssertionError(name)  # pragma: no cover - the table above is exhaustive


@dataclass
class Node:
    """One node of the traced graph.

    Attributes
    ----------
    name : fx node name (unique).
    kind : what the node is, for the linear algebra (see module docstring).
    inputs : names of the tensor nodes it reads.
    path : module path (``layer1.0.conv1``) or the function's name.
    module : the ``nn.Module`` for module nodes, else None.
    key : support key for selection nodes (``act``, ``maxpool``), else None.
    why : for ``kind == "other"``, why the node has no explicit operator.
    params : for ``kind == "cat"``: ``{"dim": int, "stack": bool}`` as written in forward()
        (``dim`` counts the batch dimension; it is resolved against the shapes when used).
    """

    name: str
    kind: Kind
    inputs: list[str]
    path: str
    module: nn.Module | None = None
    key: str | None = None
    why: str = ""
    fx_node: Any = field(default=None, repr=False)
    params: dict = field(default_factory=dict)


@dataclass
class Graph:
    """A traced model: nodes in execution (topological) order."""

    model: nn.Module
    nodes: list[Node]
    gm: fx.GraphModule = field(repr=False)

    @property
    def selection_keys(self) -> list[str]:
        return [n.key for n in self.nodes if n.key is not None]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    @property
    def output(self) -> Node:
        return self.nodes[-1]

    def parametric(self) -> list[Node]:
        """Linear and Conv2d nodes, in execution order (the layers W_1, ..., W_L)."""
        return [n for n in self.nodes if n.kind in ("linear", "conv")]


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, PHT) or super().is_leaf_module(m, qualname)


def trace(model: nn.Module) -> Graph:
    """Trace ``model`` into a :class:`Graph` (PHT modules are leaves).

    Raises
    ------
    TypeError
        ``model`` is not an ``nn.Module``.
    UnsupportedModuleError
        fx cannot trace the model (data-dependent control flow); the message says so.
    """
    from altheory.errors import UnsupportedModuleError

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}.")
    try:
        fx_graph = _Tracer().trace(model)
    except Exception as exc:  # fx raises many types; report them as one
        raise UnsupportedModuleError(
            f"torch.fx could not trace {type(model).__name__}: {exc}. altheory needs a model "
            "without data-dependent control flow in forward()."
        ) from exc
    gm = fx.GraphModule(model, fx_graph)
    modules = dict(model.named_modules())
    uses: dict[str, int] = {}
    nodes: list[Node] = []
    for fn in fx_graph.nodes:
        inputs = [a.name for a in fn.all_input_nodes]
        if fn.op == "placeholder":
            nodes.append(Node(fn.name, "input", [], "input", fx_node=fn))
        elif fn.op == "output":
            nodes.append(Node(fn.name, "output", inputs, "output", fx_node=fn))
        elif fn.op == "call_module":
            mod = modules[fn.target]
            kind, why = _classify_module(mod)
            key = None
            if kind in ("act", "maxpool"):
                j = uses.get(fn.target, 0)
                uses[fn.target] = j + 1
                key = fn.target if j == 0 else f"{fn.target}#{j}"
            nodes.append(Node(fn.name, kind, inputs, fn.target, mod, key, why, fn))
        elif fn.op == "call_function":
            fname = getattr(fn.target, "__name__", str(fn.target))
            if fn.target in _ADD_FUNCTIONS and len(fn.args) == 2 and not fn.kwargs and all(
                isinstance(a, fx.Node) for a in fn.args
            ):
                nodes.append(Node(fn.name, "add", inputs, fname, fx_node=fn))
            elif fn.target in _RESHAPE_FUNCTIONS:
                nodes.append(Node(fn.name, "reshape", inputs[:1], fname, fx_node=fn))
            elif fn.target in _RELU_FUNCTIONS:
                nodes.append(Node(fn.name, "act", inputs[:1], fname, nn.ReLU(), fn.name, fx_node=fn))
            elif fn.target in _CAT_FUNCTIONS or fn.target in _STACK_FUNCTIONS:
                nodes.append(_cat_node(fn, fname))
            elif fn.target in (F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.relu6,
                               F.leaky_relu, F.hardtanh, F.dropout):
                kind, mod, why = _functional_module(fn)
                key = fn.name if kind in ("act", "maxpool") else None
                nodes.append(Node(fn.name, kind, inputs[:1] if kind != "other" else inputs, fname,
                                  mod, key, why, fn))
            else:
                nodes.append(Node(fn.name, "other", inputs, fname,
                                  why=f"function {fname}() has no explicit linear operator",
                                  fx_node=fn))
        elif fn.op == "call_method":
            if fn.target in _RELU_METHODS and len(fn.args) == 1 and not fn.kwargs:
                nodes.append(Node(fn.name, "act", inputs, f".{fn.target}()", nn.ReLU(), fn.name,
                                  fx_node=fn))
            elif fn.target in _RESHAPE_METHODS:
                nodes.append(Node(fn.name, "reshape", inputs[:1], f".{fn.target}()", fx_node=fn))
            else:
                nodes.append(Node(fn.name, "other", inputs, f".{fn.target}()",
                                  why=f"method .{fn.target}() has no explicit linear operator",
                                  fx_node=fn))
        else:  # get_attr
            nodes.append(Node(fn.name, "other", inputs, str(fn.target),
                              why="reads a parameter or buffer directly in forward()", fx_node=fn))
    for node in nodes:  # an in-place activation rewrites its input for every later reader
        if node.kind == "act" and _inplace(node) and len(node.fx_node.all_input_nodes[0].users) > 1:
            node.kind, node.key = "other", None
            node.why = ("in-place activation whose input is also read elsewhere (it sees the "
                        "activated values); use inplace=False")
    return Graph(model, nodes, gm)


def _inplace(node: Node) -> bool:
    fn = node.fx_node
    if fn.op == "call_module":
        return bool(getattr(node.module, "inplace", False))
    if fn.target in (torch.relu_, F.relu_, "relu_"):
        return True
    return bool(fn.kwargs.get("inplace", False)) or (
        fn.target in (F.relu, F.relu6) and len(fn.args) > 1 and fn.args[1] is True)


def _cat_node(fn: fx.Node, fname: str) -> Node:
    """A ``torch.cat``/``torch.stack`` node: inputs in order (repeats kept), its ``dim``."""
    try:
        bound = inspect.signature(_sig_cat).bind(*fn.args, **fn.kwargs)
    except TypeError as exc:
        return Node(fn.name, "other", [a.name for a in fn.all_input_nodes], fname,
                    why=f"{fname}() called with arguments altheory cannot read ({exc})", fx_node=fn)
    bound.apply_defaults()
    tensors, dim = bound.arguments["tensors"], bound.arguments["dim"]
    inputs = [a.name for a in fn.all_input_nodes]
    if (not isinstance(tensors, (list, tuple)) or not tensors
            or not all(isinstance(t, fx.Node) for t in tensors)):
        return Node(fn.name, "other", inputs, fname,
                    why=f"{fname}() of something other than a list of tensors", fx_node=fn)
    if isinstance(dim, bool) or not isinstance(dim, int):
        return Node(fn.name, "other", inputs, fname,
                    why=f"{fname}() with a dim computed in forward() (only a constant int)", fx_node=fn)
    if dim == 0:
        return Node(fn.name, "other", inputs, fname,
                    why=f"{fname}(dim=0) joins along the batch dimension, which mixes samples",
                    fx_node=fn)
    return Node(fn.name, "cat", [t.name for t in tensors], fname, fx_node=fn,
                params={"dim": dim, "stack": fn.target in _STACK_FUNCTIONS})


def cat_axis(node: Node, out_shape: tuple[int, ...]) -> int:
    """The axis of a ``cat`` node in a batched tensor of per-sample shape ``out_shape`` (>= 1).

    Raises UnsupportedModuleError for a (negative) ``dim`` that resolves to the batch axis.
    """
    from altheory.errors import UnsupportedModuleError

    ndim = len(out_shape) + 1
    dim = node.params["dim"]
    if not -ndim <= dim < ndim or dim % ndim == 0:
        raise UnsupportedModuleError(
            f"{node.path}() at {node.name!r} with dim={dim} joins along the batch dimension of a "
            f"{ndim}-d batch (or is out of range): only per-sample dimensions 1..{ndim - 1} are "
            "supported.")
    return dim % ndim


def check_supported(graph: Graph, where: str) -> None:
    r"""Raise :class:`~altheory.errors.UnsupportedModuleError` unless every node the output
    depends on has an explicit operator (the rule of :func:`altheory.linearize`).

    A node without one (GELU, Softmax, Sigmoid, LayerNorm, ``x * 2``, ``.sigmoid()``, ...) would
    otherwise be run as it is by :func:`altheory.support` and :func:`altheory.gated_forward`: the
    support would miss its non-linearity and :math:`f_S` would not be affine. Nodes the output
    does not depend on (``x.size(0)`` feeding a ``view``) are allowed. The first offending node
    in execution order is named, with its type and its path in the model.
    """
    from altheory.errors import UnsupportedModuleError

    need = {graph.output.name}
    for node in reversed(graph.nodes):
        if node.name in need:
            need.update(node.inputs)
    for node in graph.nodes:
        if node.name not in need:
            continue
        why = None
        if node.kind == "other":
            why = node.why or "unsupported operation"
        elif node.kind == "bn" and node.module.running_mean is None:
            why = ("track_running_stats=False, so even in eval mode it normalises with batch "
                   "statistics and a sample's support depends on its batch")
        if why is not None:
            what = type(node.module).__name__ if node.module is not None else node.path
            raise UnsupportedModuleError(
                f"{where}: cannot represent {what} at {node.path!r}: {why}. Supported: "
                f"{SUPPORTED}. Replace it (altheory.replace_relu swaps ReLUs for PHT) or remove it.")


def _classify_module(mod: nn.Module) -> tuple[Kind, str]:
    if isinstance(mod, (PHT, nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.Hardtanh)):  # ReLU6 is a Hardtanh
        return "act", ""
    if isinstance(mod, nn.Linear):
        return "linear", ""
    if isinstance(mod, nn.Conv2d):
        if mod.padding_mode != "zeros":
            return "other", f"padding_mode={mod.padding_mode!r} (only 'zeros' is supported)"
        return "conv", ""
    if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return "bn", ""
    if isinstance(mod, nn.AvgPool2d):
        return "avgpool", ""
    if isinstance(mod, nn.AdaptiveAvgPool2d):
        return "adaptiveavgpool", ""
    if isinstance(mod, nn.MaxPool2d):
        return "maxpool", ""
    if isinstance(mod, nn.Flatten):
        return "reshape", ""
    if isinstance(mod, (nn.Identity, nn.Dropout)):
        return "identity", ""
    return "other", "no explicit linear operator is implemented for this module type"


@dataclass
class Selection:
    """What one selection node recorded for a batch.

    ``mask`` (activations): boolean tensor ``(n, *shape)`` (for a three-state ``"clamp"``
    activation: the identity region); ``indices`` (max pooling): int64 tensor
    ``(n, C, H_out, W_out)`` of flat positions in each input channel; ``margin``: float64
    tensor ``(n,)``, the largest :math:`r` such that every perturbation of the node's input with
    :math:`\\|\\delta\\|_\\infty < r` keeps this selection; ``in_shape``: per-sample input shape;
    ``upper`` (``"clamp"`` activations only): boolean tensor like ``mask``, the upper-constant
    region (entries in neither are at the lower constant).
    """

    mask: torch.Tensor | None
    indices: torch.Tensor | None
    margin: torch.Tensor
    in_shape: tuple[int, ...]
    upper: torch.Tensor | None = None


def _threshold_margin(z: torch.Tensor, tau: float) -> torch.Tensor:
    return (z.detach().double() - tau).abs().flatten(1).amin(1)


def _clamp_margin(z: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Distance to the nearer of the two breakpoints of a Hardtanh(lo, hi), per sample."""
    z = z.detach().double()
    return torch.minimum((z - lo).abs(), (z - hi).abs()).flatten(1).amin(1)


def _topk_margin(z: torch.Tensor, s: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """Margin of a top-k selection along ``dim`` (see :class:`Selection`)."""
    z = z.detach().double().movedim(dim, -1)
    s = s.movedim(dim, -1)
    inf = torch.tensor(math.inf, dtype=z.dtype)
    kept_min = torch.where(s, z, inf).amin(-1)
    dropped_max = torch.where(~s, z, -inf).amax(-1)
    n_kept = s.sum(-1)
    # all dropped entries are <= 0 when fewer than k are kept: they must stay <= 0
    r_few = torch.where(~s, -z, inf).amin(-1)
    r_full = torch.where(dropped_max > -inf, (kept_min - dropped_max) / 2, inf)
    r = torch.where(n_kept < k, torch.minimum(kept_min, r_few), torch.minimum(kept_min, r_full))
    r = torch.where(n_kept == 0, torch.where(torch.tensor(k == 0), inf, r_few), r)
    return r.flatten(1).amin(1) if r.ndim > 1 else r


def _maxpool_margin(x: torch.Tensor, mod: nn.MaxPool2d, out_hw: tuple[int, int],
                    held: torch.Tensor | None = None,
                    dominant: torch.Tensor | None = None) -> torch.Tensor:
    """Half the gap between the largest and second largest entry of every window.

    ``held`` (optional, bool like ``x``) marks the entries the preceding activation keeps; the
    others are constants below every kept entry (PHT/ReLU: exact zeros; Hardtanh: its lower
    value) that stay so while that activation's support holds, so they never compete: a window
    of such constants selects the constant whichever index wins (no constraint), and a kept
    entry only has to stay above them, which its own margin already guarantees. ``dominant``
    (optional, Hardtanh's upper region) marks constants above every kept entry: a window that
    holds one outputs that constant whichever of them wins, whatever the kept entries do while
    the activation's support holds (no constraint). Not for LeakyReLU/PReLU, whose off entries
    ``a z`` move with ``z``.
    """
    k = _pair(mod.kernel_size)
    s = _pair(mod.stride if mod.stride is not None else mod.kernel_size)
    p = _pair(mod.padding)
    d = _pair(mod.dilation)
    x = x.detach().double()
    if held is not None:
        x = torch.where(held, x, torch.tensor(-math.inf, dtype=x.dtype))
    if dominant is not None:  # +inf: the window's gap comes out inf below
        x = torch.where(dominant, torch.tensor(math.inf, dtype=x.dtype), x)
    n, c, h, w = x.shape
    extra = [max(0, (out_hw[i] - 1) * s[i] + d[i] * (k[i] - 1) + 1 - ((h, w)[i] + 2 * p[i]))
             for i in range(2)]
    xp = F.pad(x, (p[1], p[1] + extra[1], p[0], p[0] + extra[0]), value=-math.inf)
    cols = F.unfold(xp.reshape(n * c, 1, *xp.shape[2:]), k, dilation=d, stride=s)
    cols = cols[:, :, : out_hw[0] * out_hw[1]]
    if cols.shape[1] < 2:
        return torch.full((n,), math.inf, dtype=torch.float64)
    top2 = cols.topk(2, dim=1).values
    gap = (top2[:, 0] - top2[:, 1]) / 2
    # a window with fewer than two competing entries (the rest -inf) has no tie to break
    gap = torch.where(torch.isfinite(top2[:, 1]), gap, torch.tensor(math.inf, dtype=gap.dtype))
    return gap.reshape(n, -1).amin(1)


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)  # type: ignore[return-value]


def _activation_params(node: Node) -> tuple[float, int | None, int]:
    """``(tau, k, dim)`` of a ``"pht"`` activation (ReLU: ``(0.0, None, 1)``)."""
    mod = node.module
    if isinstance(mod, PHT):
        return mod.tau, mod.k, mod.dim
    return 0.0, None, 1


def act_kind(node: Node) -> ActKind:
    """``"pht"`` (PHT, ReLU), ``"leaky"`` (LeakyReLU, PReLU) or ``"clamp"`` (Hardtanh, ReLU6)."""
    mod = node.module
    if isinstance(mod, (PHT, nn.ReLU)):
        return "pht"
    if isinstance(mod, (nn.LeakyReLU, nn.PReLU)):
        return "leaky"
    if isinstance(mod, nn.Hardtanh):
        return "clamp"
    raise TypeError(f"node {node.name!r} is not a supported activation; got "
                    f"{type(mod).__name__}.")


def act_bounds(node: Node) -> tuple[float, float]:
    """``(lo, hi)`` of a ``"clamp"`` activation (ReLU6: ``(0.0, 6.0)``)."""
    return float(node.module.min_val), float(node.module.max_val)


def act_slope(node: Node, z: torch.Tensor) -> torch.Tensor:
    """The off-side slope ``a`` of a ``"leaky"`` activation, broadcastable against the batch
    ``z`` (PReLU: its weight, one per channel along dim 1 or a single one; LeakyReLU: the
    fixed ``negative_slope``). PReLU's slope stays a parameter (differentiable) here."""
    mod = node.module
    if isinstance(mod, nn.PReLU):
        a = mod.weight.to(dtype=z.dtype, device=z.device)
        if a.numel() == 1:
            return a.reshape(())
        return a.reshape((1, -1) + (1,) * (z.ndim - 2))
    return torch.tensor(float(mod.negative_slope), dtype=z.dtype, device=z.device)


def act_select(node: Node, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The support an activation node computes on ``z``: ``(mask, upper)``.

    ``mask`` is ``1[z > tau]`` / the top-k set (``"pht"``), ``1[z > 0]`` (``"leaky"``) or the
    identity region ``lo < z < hi`` (``"clamp"``); ``upper`` is ``z >= hi`` for ``"clamp"``
    and None otherwise.
    """
    kind = act_kind(node)
    if kind == "pht":
        tau, k, dim = _activation_params(node)
        return (z > tau) if k is None else topk_mask(z, k, dim), None
    if kind == "leaky":
        return z > 0, None
    lo, hi = act_bounds(node)
    return (z > lo) & (z < hi), z >= hi


def act_margin(node: Node, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sample margin of an activation's support on ``z`` (see :class:`Selection`)."""
    kind = act_kind(node)
    if kind == "pht":
        tau, k, dim = _activation_params(node)
        return _threshold_margin(z, tau) if k is None else _topk_margin(z, mask, k, dim)
    if kind == "leaky":
        return _threshold_margin(z, 0.0)
    return _clamp_margin(z, *act_bounds(node))


def act_apply(node: Node, z: torch.Tensor, mask: torch.Tensor,
              upper: torch.Tensor | None) -> torch.Tensor:
    """The activation with its support held: affine in ``z`` (derivative the diagonal D).

    ``"pht"``: ``z`` on the mask, else 0 (:func:`select`); ``"leaky"``: ``z * (1 or a)``;
    ``"clamp"``: ``z`` on the mask, ``hi`` on ``upper``, ``lo`` elsewhere. Each equals the
    module's own output on the support it records (the same floating-point operations).
    """
    kind = act_kind(node)
    if kind == "pht":
        return select(z, mask)
    if kind == "leaky":
        one = torch.ones((), dtype=z.dtype, device=z.device)
        return z * torch.where(mask, one, act_slope(node, z))
    lo, hi = act_bounds(node)
    if upper is None:
        raise ValueError(f"activation {node.key!r} ({type(node.module).__name__}) has three "
                         "states; its support needs the upper-region mask.")
    const = torch.where(upper, torch.tensor(hi, dtype=z.dtype, device=z.device),
                        torch.tensor(lo, dtype=z.dtype, device=z.device))
    return torch.where(mask, z, const)


def _fetch(arg, env):
    return fx.node.map_arg(arg, lambda a: env[a.name])


def execute(graph: Graph, x: torch.Tensor, mode: Literal["record", "gated"] = "record",
            selections: dict[str, Selection] | None = None):
    r"""Run the graph on a batch ``x``.

    Parameters
    ----------
    graph : Graph
    x : Tensor of shape (n, ...)
    mode : {"record", "gated"}
        ``"record"`` runs the true network and returns ``(output, selections, shapes)``;
        ``"gated"`` runs :math:`f_S` with the given ``selections`` (masks / indices of a batch of
        the same size ``n``) and returns ``(output, shapes)``.

    ``shapes`` maps every tensor node name to its full shape (batch dimension first).
    """
    if mode not in ("record", "gated"):
        raise ValueError(f"mode must be 'record' or 'gated'; got {mode!r}.")
    if mode == "gated" and selections is None:
        raise ValueError("mode='gated' needs the selections of a support.")
    env: dict[str, Any] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    recorded: dict[str, Selection] = {}
    for node in graph.nodes:
        fn = node.fx_node
        if node.kind == "input":
            out = x
        elif node.kind == "output":
            out = _fetch(fn.args[0], env)
            env[node.name] = out
            if isinstance(out, torch.Tensor):
                shapes[node.name] = tuple(out.shape)
            break
        elif node.kind == "act":
            z = env[node.inputs[0]]
            if mode == "record":
                s, up = act_select(node, z)
                s = s.detach()
                up = None if up is None else up.detach()
                margin = act_margin(node, z, s)
                recorded[node.key] = Selection(s, None, margin, tuple(z.shape[1:]), up)
            else:
                s, up = selections[node.key].mask, selections[node.key].upper
            out = act_apply(node, z, s, up)
        elif node.kind == "maxpool":
            z = env[node.inputs[0]]
            mod = node.module
            if mode == "record":
                out, idx = F.max_pool2d(z, mod.kernel_size, mod.stride, mod.padding, mod.dilation,
                                        ceil_mode=mod.ceil_mode, return_indices=True)
                src = graph.node(node.inputs[0])
                held = dominant = None
                # an activation's off entries compete only where they move with z (leaky: a z)
                if src.kind == "act" and act_kind(src) in ("pht", "clamp"):
                    held, dominant = recorded[src.key].mask, recorded[src.key].upper
                margin = _maxpool_margin(z, mod, tuple(out.shape[2:]), held, dominant)
                recorded[node.key] = Selection(None, idx.detach(), margin, tuple(z.shape[1:]))
            else:
                idx = selections[node.key].indices
                out = z.flatten(2).gather(2, idx.flatten(2)).view(idx.shape)
        elif fn.op == "call_module":
            out = node.module(*_fetch(fn.args, env), **_fetch(fn.kwargs, env))
        elif fn.op == "call_function":
            out = fn.target(*_fetch(fn.args, env), **_fetch(fn.kwargs, env))
        elif fn.op == "call_method":
            self_obj, *rest = _fetch(fn.args, env)
            out = getattr(self_obj, fn.target)(*rest, **_fetch(fn.kwargs, env))
        elif fn.op == "get_attr":
            out = _get_attr(graph, fn.target)
        else:  # pragma: no cover - fx has no other ops
            raise RuntimeError(f"unknown fx op {fn.op}")
        env[node.name] = out
        if isinstance(out, torch.Tensor) and out.ndim >= 1:
            shapes[node.name] = tuple(out.shape)
    output = env[graph.output.name]
    if mode == "record":
        return output, recorded, shapes
    return output, shapes


def _get_attr(graph: Graph, target: str):
    obj: Any = graph.model
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj
