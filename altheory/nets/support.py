r"""The multi-layer support :math:`S = \{s^l_i\}` of a network on a batch, and its algebra.

For a PHT layer :math:`s^l_i = \mathbb{1}[z^l_i > \tau]` (top-k: the kept entries) and
:math:`D^l_i = \mathrm{diag}(s^l_i)`; for a max-pooling layer the support is the selection of
one input per window (argmax indices). With :math:`S` fixed the network is the gated network

.. math:: f_S(x_i; W) = W_L D^{L-1}_i W_{L-1} \cdots D^1_i W_1 x_i + \text{bias terms},

which :func:`gated_forward` evaluates. :math:`S` is *consistent* with :math:`W` when
:math:`S = S(W)`; then :math:`f_S(x_i; W) = f(x_i; W)`. The margin
:math:`\mu = \min_{l,i,j} |z^l_{ij} - \tau|` (generalised to top-k and max pooling as the radius
of the largest :math:`\ell_\infty` ball of pre-activations that keeps the support, see
:class:`altheory.nets.graph.Selection`) measures how far the support is from changing.

Masks are stored bit-packed (``np.packbits``, one bit an entry); max-pool selections as int32
indices.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from altheory.nets.graph import Graph, Selection, execute, trace

__all__ = ["LayerSupport", "MultiLayerSupport", "support", "gated_forward"]


@dataclass(frozen=True)
class LayerSupport:
    """The support of one selection layer for a batch of ``n`` samples.

    Attributes
    ----------
    key : layer key (module path, ``#j`` for the j-th reuse).
    kind : ``"act"`` or ``"maxpool"``.
    shape : per-sample shape of the mask (act) or of the pooled output (maxpool).
    in_shape : per-sample shape of the layer's input.
    packed : uint8 array (n, ceil(prod(shape)/8)) of packed mask bits, or None.
    indices : int32 array (n, *shape) of argmax positions per input channel, or None.
    margin : float64 array (n,), per-sample margin of this layer.
    """

    key: str
    kind: str
    shape: tuple[int, ...]
    in_shape: tuple[int, ...]
    packed: np.ndarray | None
    indices: np.ndarray | None
    margin: np.ndarray

    @property
    def n(self) -> int:
        return int(self.margin.shape[0])

    @property
    def size(self) -> int:
        """Entries per sample (h_l)."""
        return int(np.prod(self.shape))

    def mask(self, i: int | slice | None = None) -> np.ndarray:
        """Boolean mask of shape (n, *shape) (or (*shape) for an int ``i``); act layers only."""
        if self.packed is None:
            raise ValueError(f"layer {self.key!r} is a max-pool selection; use .indices, not .mask().")
        rows = self.packed if i is None else self.packed[i]
        bits = np.unpackbits(rows, axis=-1, count=self.size).astype(bool)
        return bits.reshape(bits.shape[:-1] + self.shape)

    def as_selection(self) -> Selection:
        if self.packed is not None:
            return Selection(torch.from_numpy(self.mask()), None, torch.from_numpy(self.margin),
                             self.in_shape)
        return Selection(None, torch.from_numpy(self.indices.astype(np.int64)),
                         torch.from_numpy(self.margin), self.in_shape)

    def flat(self, i: int) -> np.ndarray:
        """The support of sample ``i`` as one flat array (bool mask or int indices)."""
        return self.mask(i).ravel() if self.packed is not None else self.indices[i].ravel()


class MultiLayerSupport:
    r"""The multi-layer support of a model on a batch: per selection layer, per sample.

    Build it with :func:`support`. Index it by layer key: ``S["layer1.0.relu"]``.

    Attributes
    ----------
    layers : dict[str, LayerSupport], in execution order.
    n : int, batch size.
    input_shape : per-sample input shape.
    model_signature : str identifying the architecture (layer keys and shapes) it came from.
    input_digest : str, hash of the batch it was computed on.

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(3, 4), PHT(tau=0.1), nn.Linear(4, 1)).double()
    >>> S = support(net, torch.randn(5, 3, dtype=torch.float64))
    >>> S.n, list(S.keys())
    (5, ['1'])
    """

    def __init__(self, layers: dict[str, LayerSupport], n: int, input_shape: tuple[int, ...],
                 model_signature: str, input_digest: str):
        self.layers = layers
        self.n = n
        self.input_shape = tuple(input_shape)
        self.model_signature = model_signature
        self.input_digest = input_digest

    def __getitem__(self, key: str) -> LayerSupport:
        try:
            return self.layers[key]
        except KeyError:
            raise KeyError(f"no selection layer {key!r}; layers are {list(self.layers)}") from None

    def keys(self):
        return self.layers.keys()

    def __len__(self) -> int:
        return len(self.layers)

    def __repr__(self) -> str:
        return (f"MultiLayerSupport(n={self.n}, layers={len(self.layers)}, "
                f"entries/sample={sum(l.size for l in self.layers.values())}, margin={self.margin:.3g})")

    @property
    def margin(self) -> float:
        r"""Global margin :math:`\mu = \min_{l,i}` of the per-layer, per-sample margins."""
        if not self.layers:
            return float("inf")
        return float(min(l.margin.min() for l in self.layers.values()))

    def margins(self) -> dict[str, np.ndarray]:
        """Per layer, the per-sample margins (float64 arrays of shape (n,))."""
        return {k: l.margin for k, l in self.layers.items()}

    def selections(self) -> dict[str, Selection]:
        return {k: l.as_selection() for k, l in self.layers.items()}

    def _check_comparable(self, other: "MultiLayerSupport") -> None:
        if not isinstance(other, MultiLayerSupport):
            raise TypeError(f"expected a MultiLayerSupport; got {type(other).__name__}.")
        if other.model_signature != self.model_signature or other.n != self.n:
            raise ValueError(
                "supports are not comparable: expected the same architecture and batch size; got "
                f"n={self.n} vs n={other.n}, layers {list(self.layers)} vs {list(other.layers)}. "
                "Compute both with support() on the same model and the same number of samples.")

    def flips(self, other: "MultiLayerSupport") -> dict[str, int]:
        """Per layer, the number of (sample, entry) pairs whose support differs."""
        self._check_comparable(other)
        out = {}
        for key, a in self.layers.items():
            b = other.layers[key]
            if a.packed is not None:
                out[key] = int(np.unpackbits(a.packed ^ b.packed, axis=-1, count=a.size).sum())
            else:
                out[key] = int((a.indices != b.indices).sum())
        return out

    def hamming(self, other: "MultiLayerSupport") -> int:
        """Total number of support entries that differ (sum of :meth:`flips`)."""
        return int(sum(self.flips(other).values()))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MultiLayerSupport):
            return NotImplemented
        try:
            return self.hamming(other) == 0
        except ValueError:
            return False

    __hash__ = None  # type: ignore[assignment]

    def is_consistent(self, model: nn.Module, x) -> bool:
        r"""Whether :math:`S = S(W, x)`: the support ``model`` itself produces on ``x``."""
        return self == support(model, x)

    def sample(self, i: int) -> dict[str, np.ndarray]:
        """The support of sample ``i``: per layer, a flat bool mask or int index array."""
        i = self._check_index(i)
        return {k: l.flat(i) for k, l in self.layers.items()}

    def _check_index(self, i) -> int:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"sample index must be an int; got {type(i).__name__}.")
        if not 0 <= i < self.n:
            raise ValueError(f"sample index out of range: expected 0 <= i < {self.n}; got i={i}.")
        return int(i)

    def subset(self, idx) -> "MultiLayerSupport":
        """The support restricted to samples ``idx`` (an index array or slice)."""
        layers = {}
        for k, l in self.layers.items():
            layers[k] = LayerSupport(
                l.key, l.kind, l.shape, l.in_shape,
                None if l.packed is None else l.packed[idx],
                None if l.indices is None else l.indices[idx], l.margin[idx])
        n = int(next(iter(layers.values())).margin.shape[0]) if layers else len(np.arange(self.n)[idx])
        return MultiLayerSupport(layers, n, self.input_shape, self.model_signature, "subset")

    def nbytes(self) -> int:
        """Bytes used by the stored masks and indices."""
        return int(sum((l.packed.nbytes if l.packed is not None else l.indices.nbytes)
                       for l in self.layers.values()))


def _signature(graph: Graph, shapes: dict[str, tuple[int, ...]]) -> str:
    parts = [f"{n.kind}:{n.key or n.path}:{shapes.get(n.name, (None,))[1:]}" for n in graph.nodes]
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]


def _digest(x: torch.Tensor) -> str:
    return hashlib.sha1(x.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


def _check_input(x, where: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{where}: x must be a torch.Tensor or numpy array; got {type(x).__name__}.")
    if x.ndim < 2:
        raise ValueError(f"{where}: x must be a batch of shape (n, ...); got shape {tuple(x.shape)}. "
                         "Add a batch dimension with x[None].")
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{where}: x has {bad} NaN or Inf entries (shape {tuple(x.shape)}); "
                         "supports are only defined for finite inputs.")
    return x


def _check_eval(model: nn.Module, where: str) -> None:
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training:
            raise ValueError(
                f"{where}: BatchNorm {name!r} is in training mode, where the support of a sample "
                "depends on its batch (docs/claims.md, 'Batch norm and the support'). Call model.eval() "
                "to use running statistics.")


@torch.no_grad()
def support(model: nn.Module, x) -> MultiLayerSupport:
    r"""Run ``model`` on the batch ``x`` and record its multi-layer support.

    Parameters
    ----------
    model : nn.Module
        Any fx-traceable model; PHT/ReLU modules, functional ReLUs and ``nn.MaxPool2d`` are the
        selection layers. BatchNorm must be in eval mode.
    x : Tensor or ndarray of shape (n, ...)

    Returns
    -------
    MultiLayerSupport

    Raises
    ------
    ValueError
        NaN/Inf in ``x``, no batch dimension, or BatchNorm in training mode.
    """
    x = _check_input(x, "support")
    _check_eval(model, "support")
    graph = trace(model)
    _, recorded, shapes = execute(graph, x, "record")
    layers: dict[str, LayerSupport] = {}
    for node in graph.nodes:
        if node.key is None:
            continue
        sel = recorded[node.key]
        n = x.shape[0]
        if sel.mask is not None:
            m = sel.mask.cpu().numpy().reshape(n, -1)
            layers[node.key] = LayerSupport(node.key, "act", tuple(sel.mask.shape[1:]), sel.in_shape,
                                            np.packbits(m, axis=-1), None, sel.margin.cpu().numpy())
        else:
            layers[node.key] = LayerSupport(node.key, "maxpool", tuple(sel.indices.shape[1:]),
                                            sel.in_shape, None,
                                            sel.indices.cpu().numpy().astype(np.int32),
                                            sel.margin.cpu().numpy())
    return MultiLayerSupport(layers, int(x.shape[0]), tuple(x.shape[1:]), _signature(graph, shapes),
                             _digest(x))


def check_support_for(graph: Graph, S: MultiLayerSupport, where: str) -> None:
    """Raise ValueError unless ``S`` has exactly the selection layers of ``graph``."""
    if not isinstance(S, MultiLayerSupport):
        raise TypeError(f"{where}: support must be a MultiLayerSupport (from altheory.support); "
                        f"got {type(S).__name__}.")
    keys = graph.selection_keys
    if list(S.keys()) != keys:
        raise ValueError(f"{where}: the support is from another model: expected selection layers "
                         f"{keys}; got {list(S.keys())}. Compute it with support(model, x) on this model.")


def gated_forward(model: nn.Module, S: MultiLayerSupport, x) -> torch.Tensor:
    r"""The fixed-support network :math:`f_S(x; W)`: every selection uses ``S``, not its input.

    Differentiable in ``x`` and in the weights; affine in ``x`` and in each layer's weights.
    ``x`` must have the batch size of ``S`` (sample ``i`` of ``x`` uses the support of sample ``i``).

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(3, 4), PHT(tau=0.1), nn.Linear(4, 1)).double()
    >>> x = torch.randn(5, 3, dtype=torch.float64)
    >>> bool(torch.allclose(gated_forward(net, support(net, x), x), net(x)))
    True
    """
    x = _check_input(x, "gated_forward")
    graph = trace(model)
    check_support_for(graph, S, "gated_forward")
    if x.shape[0] != S.n or tuple(x.shape[1:]) != S.input_shape:
        raise ValueError(f"gated_forward: x has shape {tuple(x.shape)} but the support was computed "
                         f"for a batch of shape {(S.n, *S.input_shape)}. Use S.subset(...) or the "
                         "batch the support came from.")
    sels = {k: Selection(None if v.mask is None else v.mask.to(x.device),
                         None if v.indices is None else v.indices.to(x.device), v.margin, v.in_shape)
            for k, v in S.selections().items()}
    out, _ = execute(graph, x, "gated", sels)
    return out


from altheory.nets.activations import PHT  # noqa: E402  (doctest namespace)
