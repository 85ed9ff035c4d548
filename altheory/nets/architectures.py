r"""Random PHT architectures for property tests and claim checks: one sampler, two sources.

A network is described by a :class:`NetSpec` — plain data (input shape, layer list, activation,
weight seed) that prints, compares and replays — and built by :func:`build` into a float64
``nn.Module`` in eval mode. Specs are drawn by one sampler, :func:`draw_spec`, from either a numpy
``Generator`` (the claim checks: the seed *is* the replayable instance) or hypothesis
(:mod:`altheory.testing`: shrinking to a minimal failing network).

Covered: Linear, Conv2d (kernel 1–3, stride 1–2, padding 0–2 or ``'same'``, dilation 1–2,
groups), BatchNorm2d in eval with random running statistics, AvgPool2d (ceil mode,
count_include_pad, divisor_override), AdaptiveAvgPool2d, MaxPool2d (padding, dilation, ceil mode),
torchvision BasicBlock and Bottleneck residual blocks (with and without downsampling), PHT in
threshold and top-k form, and ReLU; on request (``activations=``, ``concat=True``)
LeakyReLU, PReLU (a slope per channel), ReLU6 and Hardtanh, and a DenseNet-like concatenation
block (``torch.cat`` of the input and two convolutions along the channels). The defaults draw
exactly the specs they drew before these were added: a seed keeps its network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np
import torch
from torch import nn

from altheory.nets.activations import PHT, replace_relu

__all__ = ["NetSpec", "build", "draw_spec", "sample_spec", "NumpyChooser"]

Family = Literal["mlp", "cnn", "any"]
ACTIVATIONS = ("threshold", "topk", "relu", "leaky", "prelu", "relu6", "hardtanh")


@dataclass(frozen=True)
class NetSpec:
    """A replayable network: ``build(spec)`` always gives the same weights.

    Attributes
    ----------
    input_shape : per-sample input shape, ``(d,)`` or ``(C, H, W)``.
    layers : tuple of ``(kind, params)`` pairs, kinds ``linear, conv, bn, act, maxpool, avgpool,
        adaptiveavgpool, basicblock, bottleneck, cat, flatten``.
    activation : ``("threshold", tau)``, ``("topk", k)``, ``("relu", 0)``, ``("leaky", slope)``,
        ``("prelu", 0)`` (slopes drawn with the weights, one per channel), ``("relu6", 0)`` or
        ``("hardtanh", v)`` (Hardtanh(-v, v)).
    seed : seed of the weight initialisation.
    """

    input_shape: tuple[int, ...]
    layers: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]
    activation: tuple[str, float]
    seed: int

    def describe(self) -> str:
        kinds = "-".join(k for k, _ in self.layers)
        return f"{self.input_shape} {kinds} {self.activation[0]}={self.activation[1]} seed={self.seed}"

    @property
    def depth(self) -> int:
        return sum(k in ("linear", "conv") for k, _ in self.layers)


def _act(activation: tuple[str, float], width: int) -> nn.Module:
    kind, v = activation
    if kind == "threshold":
        return PHT(tau=float(v))
    if kind == "topk":
        # a spec's k is "keep at most k": a layer narrower than k keeps all of its positive
        # entries, which is PHT(k=width) exactly (PHT refuses k > width)
        return PHT(k=min(int(v), width), dim=1)
    if kind == "relu":
        return nn.ReLU()
    if kind == "leaky":
        return nn.LeakyReLU(float(v))
    if kind == "prelu":
        return nn.PReLU(width)
    if kind == "relu6":
        return nn.ReLU6()
    if kind == "hardtanh":
        return nn.Hardtanh(-float(v), float(v))
    raise ValueError(f"activation kind must be one of {ACTIVATIONS}; got {kind!r}.")


class ConcatBlock(nn.Module):
    """DenseNet-like: ``torch.cat([x (if keep), conv3x3(x), conv1x1(x)], dim=1)``."""

    def __init__(self, c_in: int, a: int, b: int, keep: bool):
        super().__init__()
        self.keep = keep
        self.a = nn.Conv2d(c_in, a, 3, padding=1)
        self.b = nn.Conv2d(c_in, b, 1, bias=False)

    def forward(self, x):
        parts = [self.a(x), self.b(x)]
        return torch.cat([x, *parts] if self.keep else parts, dim=1)


def _swap_relu(module: nn.Module, make) -> None:
    """Replace every ``nn.ReLU`` inside ``module`` by ``make()`` (in place)."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.ReLU):
            setattr(module, name, make())
        else:
            _swap_relu(child, make)


def build(spec: NetSpec) -> nn.Module:
    """Build the float64, eval-mode network of ``spec`` (deterministic in ``spec.seed``).

    A top-k spec keeps at most ``k`` entries per activation: a layer narrower than ``k`` is built
    as ``PHT(k=width)``, which keeps every positive entry (:class:`PHT` refuses ``k > width``).
    A residual block's one shared activation is built with ``k = min(k, planes)``, its narrowest
    width (for a Bottleneck whose ``planes < k`` that keeps fewer than ``k`` entries after the
    4x expansion).
    """
    from torchvision.models.resnet import BasicBlock, Bottleneck

    if not isinstance(spec, NetSpec):
        raise TypeError(f"spec must be a NetSpec; got {type(spec).__name__}.")
    gen = torch.Generator().manual_seed(int(spec.seed))
    mods: list[nn.Module] = []
    width = int(spec.input_shape[0])  # features (MLP) or channels (CNN) entering the next layer
    for kind, params in spec.layers:
        p = dict(params)
        if kind in ("linear", "conv"):
            width = int(p["out"])
        if kind == "linear":
            m = nn.Linear(p["in"], p["out"], bias=p.get("bias", True))
        elif kind == "conv":
            m = nn.Conv2d(p["in"], p["out"], p["k"], stride=p["stride"], padding=p["padding"],
                          dilation=p["dilation"], groups=p["groups"], bias=p.get("bias", True))
        elif kind == "bn":
            m = nn.BatchNorm2d(p["c"])
        elif kind == "act":
            m = _act(spec.activation, width)
        elif kind == "maxpool":
            m = nn.MaxPool2d(p["k"], stride=p["stride"], padding=p["padding"], dilation=p["dilation"],
                             ceil_mode=p["ceil"])
        elif kind == "avgpool":
            m = nn.AvgPool2d(p["k"], stride=p["stride"], padding=p["padding"], ceil_mode=p["ceil"],
                             count_include_pad=p["include_pad"], divisor_override=p["divisor"])
        elif kind == "adaptiveavgpool":
            m = nn.AdaptiveAvgPool2d(p["out"])
        elif kind in ("basicblock", "bottleneck"):
            block = BasicBlock if kind == "basicblock" else Bottleneck
            planes_out = p["planes"] * block.expansion
            down = None
            if p["stride"] != 1 or p["in"] != planes_out:
                down = nn.Sequential(nn.Conv2d(p["in"], planes_out, 1, stride=p["stride"], bias=False),
                                     nn.BatchNorm2d(planes_out))
            m = block(p["in"], p["planes"], stride=p["stride"], downsample=down)
            act = spec.activation  # torchvision blocks come with ReLU; swap it unless asked for
            if act[0] == "threshold":
                m = replace_relu(m, tau=float(act[1]), inplace=True)
            elif act[0] == "topk":  # the narrowest activation of a block has `planes` channels
                m = replace_relu(m, k=min(int(act[1]), int(p["planes"])), dim=1, inplace=True)
            elif act[0] != "relu":  # one module for every width of the block: PReLU(1)
                _swap_relu(m, lambda: _act(act, 1))
        elif kind == "cat":
            m = ConcatBlock(p["in"], p["a"], p["b"], p["keep"])
            width = p["a"] + p["b"] + (p["in"] if p["keep"] else 0)
        elif kind == "flatten":
            m = nn.Flatten()
        else:
            raise ValueError(f"unknown layer kind {kind!r} in spec.")
        mods.append(m)
    net = nn.Sequential(*mods).double()
    with torch.no_grad():
        for name, t in net.named_parameters():
            if t.ndim > 1:
                fan_in = t[0].numel()
                t.copy_(torch.randn(t.shape, generator=gen, dtype=t.dtype) * (1.5 / fan_in) ** 0.5)
            else:
                t.copy_(0.1 * torch.randn(t.shape, generator=gen, dtype=t.dtype))
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=gen, dtype=torch.float64))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=gen, dtype=torch.float64))
                m.weight.copy_(1 + 0.2 * torch.randn(m.num_features, generator=gen, dtype=torch.float64))
    return net.eval()


class NumpyChooser:
    """The choices of :func:`draw_spec` taken from a numpy Generator."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def int(self, lo: int, hi: int) -> int:  # inclusive
        return int(self.rng.integers(lo, hi + 1))

    def choice(self, seq: Sequence):
        return seq[int(self.rng.integers(len(seq)))]

    def bool(self) -> bool:
        return bool(self.rng.integers(2))


def _conv_out(h: int, k: int, s: int, p: int, d: int) -> int:
    return (h + 2 * p - d * (k - 1) - 1) // s + 1


def _pool_out(h: int, k: int, s: int, p: int, d: int, ceil: bool) -> int:
    num = h + 2 * p - d * (k - 1) - 1
    out = (-(-num // s) if ceil else num // s) + 1
    if ceil and (out - 1) * s >= h + p:
        out -= 1
    return out


def draw_spec(ch, *, family: Family = "any", max_depth: int = 3, max_width: int = 6,
              max_channels: int = 4, image_size: tuple[int, int] = (5, 9), max_out: int = 3,
              activations: tuple[str, ...] = ("threshold", "topk", "relu"), residual: bool = True,
              concat: bool = False) -> NetSpec:
    """Draw one :class:`NetSpec` using chooser ``ch`` (``int(lo, hi)``, ``choice``, ``bool``).

    ``activations`` is a subset of ``ACTIVATIONS``; ``concat=True`` adds the concatenation block
    to the CNN operations. With the defaults, the draws are those made before either existed.
    """
    if family == "any":
        family = ch.choice(("mlp", "cnn"))
    if family not in ("mlp", "cnn"):
        raise ValueError(f"family must be 'mlp', 'cnn' or 'any'; got {family!r}.")
    act_kind = ch.choice(tuple(activations))
    if act_kind == "threshold":
        activation = ("threshold", ch.choice((0.0, 0.05, 0.2)))
    elif act_kind == "topk":
        activation = ("topk", ch.int(1, 3))
    elif act_kind in ("relu", "prelu", "relu6"):
        activation = (act_kind, 0.0)
    elif act_kind == "leaky":
        activation = ("leaky", ch.choice((0.01, 0.1, 0.3, -0.2)))
    elif act_kind == "hardtanh":
        activation = ("hardtanh", ch.choice((0.25, 0.5, 1.0)))
    else:
        raise ValueError(f"activations must be among {ACTIVATIONS}; got {act_kind!r}.")
    layers: list[tuple[str, dict]] = []
    k_out = ch.int(1, max_out)
    if family == "mlp":
        d = ch.int(1, max_width)
        shape: tuple[int, ...] = (d,)
        width = d
        for _ in range(ch.int(1, max_depth)):
            h = ch.int(1, max_width)
            layers += [("linear", {"in": width, "out": h}), ("act", {})]
            width = h
        layers.append(("linear", {"in": width, "out": k_out}))
    else:
        C, H, W = ch.int(1, max_channels), ch.int(*image_size), ch.int(*image_size)
        shape = (C, H, W)
        for _ in range(ch.int(1, max_depth)):
            ops = ("conv", "conv", "block", "pool") if residual else ("conv", "conv", "pool")
            op = ch.choice(ops + ("cat",) if concat else ops)
            if op == "cat":
                a, b, keep = ch.int(1, max_channels), ch.int(1, max_channels), ch.bool()
                layers.append(("cat", {"in": C, "a": a, "b": b, "keep": keep}))
                C = a + b + (C if keep else 0)
                layers.append(("act", {}))
            elif op == "conv":
                k, s, dil = ch.int(1, 3), ch.int(1, 2), ch.int(1, 2)
                same = s == 1 and ch.bool() and ch.bool()
                p = "same" if same else ch.int(0, 2)
                pi = (dil * (k - 1)) // 2 if same else p
                Ho = H if same else _conv_out(H, k, s, pi, dil)
                Wo = W if same else _conv_out(W, k, s, pi, dil)
                if Ho < 1 or Wo < 1:
                    continue
                g = ch.choice([g for g in (1, 2, C) if C % g == 0])
                cout = g * ch.int(1, max(1, max_channels // g))
                layers.append(("conv", {"in": C, "out": cout, "k": k, "stride": s, "padding": p,
                                        "dilation": dil, "groups": g, "bias": ch.bool()}))
                C, H, W = cout, Ho, Wo
                if ch.bool():
                    layers.append(("bn", {"c": C}))
                layers.append(("act", {}))
            elif op == "block":
                kind = ch.choice(("basicblock", "bottleneck"))
                s = ch.int(1, 2) if min(H, W) >= 3 else 1
                planes = ch.int(1, 2 if kind == "bottleneck" else max_channels)
                layers.append((kind, {"in": C, "planes": planes, "stride": s}))
                C = planes * (4 if kind == "bottleneck" else 1)
                H, W = _conv_out(H, 3, s, 1, 1), _conv_out(W, 3, s, 1, 1)
            else:
                pk = ch.choice(("maxpool", "avgpool"))
                k = ch.int(2, 3)
                s = ch.int(1, 2)
                p = ch.int(0, k // 2)
                dil = ch.int(1, 2) if pk == "maxpool" else 1
                ceil = ch.bool()
                Ho, Wo = _pool_out(H, k, s, p, dil, ceil), _pool_out(W, k, s, p, dil, ceil)
                if Ho < 1 or Wo < 1 or H + 2 * p < dil * (k - 1) + 1 or W + 2 * p < dil * (k - 1) + 1:
                    continue
                if pk == "maxpool":
                    layers.append(("maxpool", {"k": k, "stride": s, "padding": p, "dilation": dil,
                                               "ceil": ceil}))
                else:
                    layers.append(("avgpool", {"k": k, "stride": s, "padding": p, "ceil": ceil,
                                               "include_pad": ch.bool(),
                                               "divisor": ch.choice((None, None, 2))}))
                H, W = Ho, Wo
        if ch.bool():
            out = ch.int(1, 2)
            layers.append(("adaptiveavgpool", {"out": out}))
            H = W = out
        layers += [("flatten", {}), ("linear", {"in": C * H * W, "out": k_out})]
    frozen = tuple((k, tuple(sorted(p.items()))) for k, p in layers)
    return NetSpec(shape, frozen, activation, ch.int(0, 2**31 - 1))


def sample_spec(rng: np.random.Generator | int, **kwargs) -> NetSpec:
    """:func:`draw_spec` with choices from a numpy Generator (or a seed).

    Examples
    --------
    >>> spec = sample_spec(0, family="mlp")
    >>> net = build(spec)
    >>> net(torch.zeros((2, *spec.input_shape), dtype=torch.float64)).shape[0]
    2
    """
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    return draw_spec(NumpyChooser(rng), **kwargs)


def random_inputs(spec: NetSpec, n: int, seed: int) -> torch.Tensor:
    """Standard normal float64 inputs of shape ``(n, *spec.input_shape)``."""
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randn((n, *spec.input_shape), generator=gen, dtype=torch.float64)



def calibrate_batchnorm(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Set every BatchNorm's running statistics to those of the batch ``x``; return the model
    in eval mode (in place).

    A torchvision model at its initialisation has running statistics (0, 1) that do not match
    its activations: in mobilenet_v2 they shrink layer by layer, and a PHT threshold of 0.01
    then zeroes every entry from the fifth block on (a constant network, whose Jacobian is 0:
    a check of ``A = J`` on it proves nothing). Calibrated on one random batch, each
    pre-activation has about unit variance, as after training.
    """
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: one batch gives its own statistics
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()
