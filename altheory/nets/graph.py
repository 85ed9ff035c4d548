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
``layer1.0.relu#1``). Functional ReLUs are keyed by their fx node name.
"""

from __future__ import annotations

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
    "reshape", "identity", "add", "output", "other",
]

_RESHAPE_METHODS = {"view", "reshape", "flatten", "contiguous"}
_RESHAPE_FUNCTIONS = {torch.flatten, torch.reshape}
_ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}
_RELU_FUNCTIONS = {F.relu, torch.relu}
_RELU_METHODS = {"relu"}

SUPPORTED = ("Linear, Conv2d, BatchNorm1d/2d (eval, running statistics), AvgPool2d, "
             "AdaptiveAvgPool2d, MaxPool2d, Flatten/reshape, Identity, Dropout (eval), residual "
             "addition, ReLU (module, F.relu, torch.relu, .relu()), PHT")


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
    """

    name: str
    kind: Kind
    inputs: list[str]
    path: str
    module: nn.Module | None = None
    key: str | None = None
    why: str = ""
    fx_node: Any = field(default=None, repr=False)


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
                nodes.append(Node(fn.name, "act", inputs, fname, nn.ReLU(), fn.name, fx_node=fn))
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
    return Graph(model, nodes, gm)


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
    if isinstance(mod, (PHT, nn.ReLU)):
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

    ``mask`` (activations): boolean tensor ``(n, *shape)``; ``indices`` (max pooling): int64
    tensor ``(n, C, H_out, W_out)`` of flat positions in each input channel; ``margin``: float64
    tensor ``(n,)``, the largest :math:`r` such that every perturbation of the node's input with
    :math:`\\|\\delta\\|_\\infty < r` keeps this selection; ``in_shape``: per-sample input shape.
    """

    mask: torch.Tensor | None
    indices: torch.Tensor | None
    margin: torch.Tensor
    in_shape: tuple[int, ...]


def _threshold_margin(z: torch.Tensor, tau: float) -> torch.Tensor:
    return (z.detach().double() - tau).abs().flatten(1).amin(1)


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
                    held: torch.Tensor | None = None) -> torch.Tensor:
    """Half the gap between the largest and second largest entry of every window.

    ``held`` (optional, bool like ``x``) marks the entries the preceding activation keeps; the
    others are exact zeros that stay zero while that activation's support holds, so they never
    compete: a window of such zeros selects a zero whichever index wins (no constraint), and a
    kept entry only has to stay above them, which its own margin already guarantees.
    """
    k = _pair(mod.kernel_size)
    s = _pair(mod.stride if mod.stride is not None else mod.kernel_size)
    p = _pair(mod.padding)
    d = _pair(mod.dilation)
    x = x.detach().double()
    if held is not None:
        x = torch.where(held, x, torch.tensor(-math.inf, dtype=x.dtype))
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
    mod = node.module
    if isinstance(mod, PHT):
        return mod.tau, mod.k, mod.dim
    return 0.0, None, 1


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
                tau, k, dim = _activation_params(node)
                if k is None:
                    s = z > tau
                    margin = _threshold_margin(z, tau)
                else:
                    s = topk_mask(z, k, dim)
                    margin = _topk_margin(z, s, k, dim)
                recorded[node.key] = Selection(s.detach(), None, margin, tuple(z.shape[1:]))
            else:
                s = selections[node.key].mask
            out = select(z, s)
        elif node.kind == "maxpool":
            z = env[node.inputs[0]]
            mod = node.module
            if mode == "record":
                out, idx = F.max_pool2d(z, mod.kernel_size, mod.stride, mod.padding, mod.dilation,
                                        ceil_mode=mod.ceil_mode, return_indices=True)
                src = graph.node(node.inputs[0])
                held = recorded[src.key].mask if src.kind == "act" else None
                margin = _maxpool_margin(z, mod, tuple(out.shape[2:]), held)
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
