r"""Hypothesis strategies for property-testing PHT networks (yours or random ones).

Every strategy is keyword-only, validates its arguments when built, and draws float64 models in
eval mode. Use them with ``@given``::

    from hypothesis import given
    from altheory.testing import networks_and_inputs

    @given(networks_and_inputs(family="cnn"))
    def test_c1(case):
        S = altheory.support(case.model, case.x)
        A, c = altheory.linearize(case.model, S, 0)
        ...

Strategies
----------
:func:`net_specs`            replayable :class:`~altheory.nets.architectures.NetSpec` descriptions.
:func:`networks`             built ``nn.Module`` networks.
:func:`networks_and_inputs`  a :class:`Case` (model, inputs, spec).
:func:`inputs_for`           float64 input batches for a given model's input shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch import nn

from altheory.nets.architectures import ACTIVATIONS, NetSpec, build, draw_spec

__all__ = ["Case", "net_specs", "networks", "networks_and_inputs", "inputs_for"]


@dataclass
class Case:
    """A drawn network with its inputs: ``model(x)`` is defined; ``spec`` replays it."""

    model: nn.Module
    x: torch.Tensor
    spec: NetSpec

    def __repr__(self) -> str:  # what hypothesis prints for a falsifying example
        return f"Case(spec={self.spec.describe()!r}, n={self.x.shape[0]})"


class _HypothesisChooser:
    def __init__(self, draw):
        self.draw = draw

    def int(self, lo: int, hi: int) -> int:
        return self.draw(st.integers(lo, hi))

    def choice(self, seq):
        return self.draw(st.sampled_from(list(seq)))

    def bool(self) -> bool:
        return self.draw(st.booleans())


def _check_positive_int(name: str, v, minimum: int = 1) -> None:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{name} must be an int; got {type(v).__name__}.")
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {name}={v}.")


def net_specs(*, family: str = "any", max_depth: int = 3, max_width: int = 6, max_channels: int = 4,
              image_size: tuple[int, int] = (5, 9), max_out: int = 3,
              activations: tuple[str, ...] = ("threshold", "topk", "relu"),
              residual: bool = True, concat: bool = False) -> st.SearchStrategy[NetSpec]:
    """Strategy of network specs.

    Parameters
    ----------
    family : {"mlp", "cnn", "any"}
    max_depth : int, most affine layers (or blocks) before the head.
    max_width, max_channels : int, widths of MLP layers and channels of CNN layers.
    image_size : (lo, hi) range of the input's height and width.
    max_out : int, most outputs k.
    activations : subset of ("threshold", "topk", "relu", "leaky", "prelu", "relu6",
        "hardtanh"): PHT in threshold and top-k form, ReLU, LeakyReLU, PReLU (two states, a slope
        on the off side), ReLU6 and Hardtanh (three states: lower constant, identity, upper
        constant).
    residual : bool, allow torchvision BasicBlock / Bottleneck blocks.
    concat : bool, allow a DenseNet-like ``torch.cat`` block along the channels (CNNs).

    Examples
    --------
    >>> spec = net_specs(family="mlp", max_depth=1).example()  # doctest: +SKIP
    >>> spec = net_specs(family="cnn", activations=("relu6", "leaky"), concat=True).example()  # doctest: +SKIP
    """
    if family not in ("mlp", "cnn", "any"):
        raise ValueError(f"family must be 'mlp', 'cnn' or 'any'; got {family!r}.")
    for name, v in (("max_depth", max_depth), ("max_width", max_width), ("max_channels", max_channels),
                    ("max_out", max_out)):
        _check_positive_int(name, v)
    if (not isinstance(image_size, (tuple, list)) or len(image_size) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) for v in image_size)):
        raise ValueError(f"image_size must be (lo, hi), two ints with 1 <= lo <= hi; got "
                         f"{image_size!r}.")
    lo, hi = image_size
    if not (1 <= lo <= hi):
        raise ValueError(f"image_size must be (lo, hi) with 1 <= lo <= hi; got {image_size}.")
    if isinstance(activations, str) or not isinstance(activations, (tuple, list)):
        raise TypeError(f"activations must be a tuple of names, e.g. ('relu',); got "
                        f"{type(activations).__name__} {activations!r}.")
    bad = set(activations) - set(ACTIVATIONS)
    if not activations or bad:
        raise ValueError(f"activations must be a non-empty subset of {ACTIVATIONS}; "
                         f"got {activations}.")
    if not isinstance(concat, bool):
        raise TypeError(f"concat must be a bool; got {type(concat).__name__}.")

    @st.composite
    def _specs(draw):
        return draw_spec(_HypothesisChooser(draw), family=family, max_depth=max_depth,
                         max_width=max_width, max_channels=max_channels, image_size=image_size,
                         max_out=max_out, activations=tuple(activations), residual=residual,
                         concat=concat)

    return _specs()


def networks(**kwargs) -> st.SearchStrategy[nn.Module]:
    """Strategy of built float64 eval-mode networks; keywords as :func:`net_specs`."""
    return net_specs(**kwargs).map(build)


def inputs_for(input_shape: tuple[int, ...], *, min_n: int = 1, max_n: int = 3,
               scale: float = 1.0) -> st.SearchStrategy[torch.Tensor]:
    """Strategy of float64 input batches ``(n, *input_shape)`` with entries in [-scale, scale]."""
    if (not isinstance(input_shape, (tuple, list))
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in input_shape)):
        raise TypeError(f"input_shape must be a tuple of positive ints, e.g. (3,) or (1, 8, 8); "
                        f"got {input_shape!r}.")
    _check_positive_int("min_n", min_n)
    _check_positive_int("max_n", max_n, minimum=min_n)
    if not (isinstance(scale, (int, float)) and scale > 0):
        raise ValueError(f"scale must be a positive number; got {scale!r}.")
    elems = st.floats(-scale, scale, allow_nan=False, allow_infinity=False, width=64)
    return st.integers(min_n, max_n).flatmap(
        lambda n: hnp.arrays(np.float64, (n, *input_shape), elements=elems)
    ).map(torch.from_numpy)


def networks_and_inputs(*, min_n: int = 1, max_n: int = 3, **kwargs) -> st.SearchStrategy[Case]:
    """Strategy of :class:`Case` — a network and a batch for it.

    Inputs are standard normal draws seeded by hypothesis (so shrinking is on the architecture,
    while values stay generic: no exact ties at thresholds).
    """
    _check_positive_int("min_n", min_n)
    _check_positive_int("max_n", max_n, minimum=min_n)

    @st.composite
    def _case(draw):
        spec = draw(net_specs(**kwargs))
        n = draw(st.integers(min_n, max_n))
        seed = draw(st.integers(0, 2**31 - 1))
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn((n, *spec.input_shape), generator=gen, dtype=torch.float64)
        return Case(build(spec), x, spec)

    return _case()
