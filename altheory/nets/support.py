r"""The multi-layer support :math:`S = \{s^l_i\}` of a network on a batch, and its algebra.

For a PHT layer :math:`s^l_i = \mathbb{1}[z^l_i > \tau]` (top-k: the kept entries) and
:math:`D^l_i = \mathrm{diag}(s^l_i)`; for a max-pooling layer the support is the selection of
one input per window (argmax indices). LeakyReLU/PReLU have the two-state support
:math:`s = \mathbb{1}[z > 0]`; Hardtanh and ReLU6 a three-state one, stored as the identity
region (``mask``) and the upper-constant region (``upper``); see :mod:`altheory.nets.graph`. With :math:`S` fixed the network is the gated network

.. math:: f_S(x_i; W) = W_L D^{L-1}_i W_{L-1} \cdots D^1_i W_1 x_i + \text{bias terms},

which :func:`gated_forward` evaluates. :math:`S` is *consistent* with :math:`W` when
:math:`S = S(W)`; then :math:`f_S(x_i; W) = f(x_i; W)`. The margin
:math:`\mu = \min_{l,i,j} |z^l_{ij} - \tau|` (generalised to top-k and max pooling as the radius
of the largest :math:`\ell_\infty` ball of pre-activations that keeps the support, see
:class:`altheory.nets.graph.Selection`) measures how far the support is from changing.

Masks are stored bit-packed (``np.packbits``, one bit an entry); max-pool selections as int32
indices.

A support belongs to one model, one set of weights and one batch. It records a fingerprint of
each: the architecture (layer keys, parameter names and shapes), the values of the parameters and
buffers (a hash of their float64 values, so a deep copy, a float32 -> float64 cast or a move to
another device keep it, while any change of a value does not) with the modules' constants (a PHT
threshold, a LeakyReLU slope, Hardtanh bounds, BatchNorm's eps), and the batch. Every consumer
(:func:`gated_forward`, :func:`altheory.linearize`, :func:`altheory.layer_operator`,
:class:`altheory.FixedSupportNetwork`) checks them and raises ``ValueError`` on a mismatch: a
support recorded on other weights gives operators that are silently wrong. To *hold* a support
while the weights change on purpose (alternation, fixed-support descent) say so:
``S.for_any_weights()`` (accepted by every consumer) or ``same_weights=False`` where a function
offers it. The architecture is checked even then.

Only models whose every node has an explicit operator are accepted (the rule of
:func:`altheory.linearize`; :func:`altheory.nets.graph.check_supported`): a GELU, Softmax,
Sigmoid or LayerNorm raises :class:`~altheory.errors.UnsupportedModuleError` naming its type and
its path, here as there, instead of an empty support that would claim the network is affine.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from altheory.nets.activations import PHT
from altheory.nets.graph import Graph, Selection, check_supported, execute, trace

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
    packed : uint8 array (n, ceil(prod(shape)/8)) of packed mask bits, or None. For a
        three-state activation (Hardtanh, ReLU6) the mask is the identity region.
    indices : int32 array (n, *shape) of argmax positions per input channel, or None.
    margin : float64 array (n,), per-sample margin of this layer.
    upper : uint8 array like ``packed``: the packed upper-constant region of a three-state
        activation (entries in neither region are at the lower constant), else None.
    """

    key: str
    kind: str
    shape: tuple[int, ...]
    in_shape: tuple[int, ...]
    packed: np.ndarray | None
    indices: np.ndarray | None
    margin: np.ndarray
    upper: np.ndarray | None = None

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

    def upper_mask(self, i: int | slice | None = None) -> np.ndarray:
        """Boolean upper-constant region, shaped as :meth:`mask` (all False for a two-state
        activation)."""
        if self.upper is None:
            return np.zeros_like(self.mask(i))
        rows = self.upper if i is None else self.upper[i]
        bits = np.unpackbits(rows, axis=-1, count=self.size).astype(bool)
        return bits.reshape(bits.shape[:-1] + self.shape)

    def as_selection(self) -> Selection:
        if self.packed is not None:
            up = None if self.upper is None else torch.from_numpy(self.upper_mask())
            return Selection(torch.from_numpy(self.mask()), None, torch.from_numpy(self.margin),
                             self.in_shape, up)
        return Selection(None, torch.from_numpy(self.indices.astype(np.int64)),
                         torch.from_numpy(self.margin), self.in_shape)

    def flat(self, i: int) -> np.ndarray:
        """The support of sample ``i`` as one flat array: a bool mask (two-state activation),
        int8 states 0 = lower, 1 = identity, 2 = upper (three-state activation), or int
        indices (max pooling)."""
        if self.packed is None:
            return self.indices[i].ravel()
        if self.upper is None:
            return self.mask(i).ravel()
        return (self.mask(i).astype(np.int8) + 2 * self.upper_mask(i).astype(np.int8)).ravel()


class MultiLayerSupport:
    r"""The multi-layer support of a model on a batch: per selection layer, per sample.

    Build it with :func:`support`. Index it by layer key: ``S["layer1.0.relu"]``.

    Attributes
    ----------
    layers : dict[str, LayerSupport], in execution order.
    n : int, batch size.
    input_shape : per-sample input shape.
    model_signature : str identifying the architecture (layer keys and shapes) it came from.
    input_digest : str, hash of the batch it was computed on (``"subset"`` after :meth:`subset`).
    param_signature : str or None, hash of the parameter and buffer names and shapes.
    weights_digest : str or None, hash of the parameter and buffer values it was computed with;
        None after :meth:`for_any_weights` (held on purpose: any weights are accepted).

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(3, 4), PHT(tau=0.1), nn.Linear(4, 1)).double()
    >>> S = support(net, torch.randn(5, 3, dtype=torch.float64))
    >>> S.n, list(S.keys())
    (5, ['1'])
    """

    def __init__(self, layers: dict[str, LayerSupport], n: int, input_shape: tuple[int, ...],
                 model_signature: str, input_digest: str, *, param_signature: str | None = None,
                 weights_digest: str | None = None):
        self.layers = layers
        self.n = n
        self.input_shape = tuple(input_shape)
        self.model_signature = model_signature
        self.input_digest = input_digest
        self.param_signature = param_signature
        self.weights_digest = weights_digest

    def for_any_weights(self) -> "MultiLayerSupport":
        r"""This support, held fixed while the weights change on purpose.

        Every consumer then accepts it with any weights of the same architecture (the
        architecture is still checked): :math:`f_S(x; W)` for a :math:`W` other than the one
        that produced :math:`S`, as in alternation and fixed-support descent. Without it, a
        support recorded on other weights raises ``ValueError``.

        Examples
        --------
        >>> net = nn.Sequential(nn.Linear(3, 4), PHT(tau=0.1), nn.Linear(4, 1)).double()
        >>> x = torch.randn(5, 3, dtype=torch.float64)
        >>> S = support(net, x)
        >>> with torch.no_grad():
        ...     _ = net[0].weight.mul_(2.0)
        >>> gated_forward(net, S.for_any_weights(), x).shape
        torch.Size([5, 1])
        """
        return MultiLayerSupport(self.layers, self.n, self.input_shape, self.model_signature,
                                 self.input_digest, param_signature=self.param_signature,
                                 weights_digest=None)

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
                diff = a.packed ^ b.packed
                if a.upper is not None or b.upper is not None:  # three states: either bit differs
                    ua = a.upper if a.upper is not None else np.zeros_like(a.packed)
                    ub = b.upper if b.upper is not None else np.zeros_like(b.packed)
                    diff = diff | (ua ^ ub)
                out[key] = int(np.unpackbits(diff, axis=-1, count=a.size).sum())
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
        r"""Whether :math:`S = S(W, x)`: the support ``model`` itself produces on ``x``.

        Raises ValueError for a model of another architecture (not comparable), rather than
        answering False.
        """
        return self.hamming(support(model, x)) == 0

    def sample(self, i: int) -> dict[str, np.ndarray]:
        """The support of sample ``i``: per layer, a flat bool mask, int8 states (three-state
        activations, see :meth:`LayerSupport.flat`) or int index array."""
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
        try:
            picked = np.arange(self.n)[idx]
        except (IndexError, TypeError, ValueError) as exc:
            raise ValueError(f"subset: idx must be a slice or an array of sample indices in "
                             f"[0, {self.n}) (or a boolean mask of length {self.n}); got {idx!r}: "
                             f"{exc}.") from None
        if np.ndim(picked) != 1 or picked.size == 0:
            raise ValueError(f"subset: idx must select at least one sample as a 1-D selection; got "
                             f"{idx!r}.")
        layers = {}
        for k, l in self.layers.items():
            layers[k] = LayerSupport(
                l.key, l.kind, l.shape, l.in_shape,
                None if l.packed is None else l.packed[idx],
                None if l.indices is None else l.indices[idx], l.margin[idx],
                None if l.upper is None else l.upper[idx])
        n = int(next(iter(layers.values())).margin.shape[0]) if layers else len(np.arange(self.n)[idx])
        return MultiLayerSupport(layers, n, self.input_shape, self.model_signature, "subset",
                                 param_signature=self.param_signature,
                                 weights_digest=self.weights_digest)

    def nbytes(self) -> int:
        """Bytes used by the stored masks and indices."""
        return int(sum((l.packed.nbytes if l.packed is not None else l.indices.nbytes)
                       + (l.upper.nbytes if l.upper is not None else 0)
                       for l in self.layers.values()))


def _signature(graph: Graph, shapes: dict[str, tuple[int, ...]]) -> str:
    parts = [f"{n.kind}:{n.key or n.path}:{shapes.get(n.name, (None,))[1:]}" for n in graph.nodes]
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]


def _digest(x: torch.Tensor) -> str:
    """Hash of a batch's values (as float64, so a float32 batch and its float64 cast agree)."""
    x = torch.as_tensor(x).detach().cpu().to(torch.float64).contiguous()
    return hashlib.sha1(repr(tuple(x.shape)).encode() + x.numpy().tobytes()).hexdigest()[:16]


def _state(model: nn.Module):
    """Floating-point parameters and buffers, by name (shared tensors once)."""
    for name, t in model.named_parameters():
        yield name, t
    for name, t in model.named_buffers():
        if t is not None and t.is_floating_point():
            yield name, t


def _param_signature(model: nn.Module) -> str:
    """Hash of the names and shapes of the parameters and floating buffers (the architecture)."""
    parts = [f"{name}:{tuple(t.shape)}" for name, t in _state(model)]
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]


_BLOCK = 4096
# odd 64-bit multipliers, fixed forever (changing them changes every stored fingerprint)
_ODD = torch.randint(-2**62, 2**62, (_BLOCK,), dtype=torch.int64,
                     generator=torch.Generator().manual_seed(20261201)) | 1


def _weighted_sum(words: torch.Tensor) -> int:
    r""":math:`\sum_r (2r + 1)\, a_r \sum_q a_q\, w_{rB+q} \bmod 2^{64}` over int64 ``words``."""
    n = words.numel()
    if n <= _BLOCK:
        return int((words * _ODD[:n]).sum().item())
    n_full = n // _BLOCK
    rows = torch.mv(words[: n_full * _BLOCK].view(n_full, _BLOCK), _ODD)
    tail = words[n_full * _BLOCK:]
    rows = torch.cat([rows, (tail * _ODD[: tail.numel()]).sum().reshape(1)])
    r = torch.arange(rows.numel(), dtype=torch.int64)
    return int((rows * _ODD[r % _BLOCK] * (2 * r + 1)).sum().item())


def _tensor_fingerprint(t: torch.Tensor) -> tuple[int, int, int]:
    r"""A position-weighted sum, modulo :math:`2^{64}`, of the float64 bit patterns of ``t``,
    read 4 bytes off their word boundaries; with the first and the last entry's patterns.

    The entries, as float64, are one byte string; :math:`w_k` is the 64-bit word at byte
    :math:`8k + 4`: the high half of entry :math:`k` in its low 32 bits, the low half of entry
    :math:`k+1` in its high 32 bits. In blocks of :math:`B = 4096` (:math:`k = rB + q`) with fixed
    odd 64-bit multipliers :math:`a_q`:

    .. math:: F = \sum_r (2r + 1)\, a_r \sum_q a_q\, w_{rB+q} \pmod{2^{64}}.

    Every multiplier is odd, hence invertible modulo :math:`2^{64}`. A change of *one* entry
    moves one word, or two words by :math:`\delta_1 2^{32}` and :math:`\delta_2`,
    :math:`0 < |\delta_2| < 2^{32}`, which cannot cancel: it always changes :math:`F` or an end
    entry (a tested property, not a probability). Why off the boundaries: aligned, a sign flip
    is a change of :math:`2^{63}`, seen modulo :math:`2^{64}` only through the parity of the
    multipliers, so negating a whole layer could cancel; here the sign bit sits at bit 31, the
    low mantissa at bit 32 and up, and several changes cancel only if a signed sum of
    multipliers vanishes modulo :math:`2^{32}` or more. A check against mistakes, not a
    cryptographic hash. Integer sums are exact and order-free: the result does not depend on
    the number of threads.

    Cost: one int64 matrix-vector product in torch; for ResNet-18 in float64 on one thread
    about a third of SHA-1 over the same bytes (measured side by side).
    """
    x = t.detach().to(torch.float64).cpu().contiguous().view(-1)
    if x.numel() == 0:
        return 0, 0, 0
    aligned = x.view(torch.int64)
    ends = int(aligned[0]), int(aligned[-1])
    if x.numel() == 1:
        return 0, *ends
    try:
        with warnings.catch_warnings():  # frombuffer warns that the buffer is shared: read-only here
            warnings.simplefilter("ignore")
            shifted = torch.frombuffer(memoryview(x.numpy()).cast("B"), dtype=torch.int64,
                                       offset=4, count=x.numel() - 1)
    except RuntimeError:  # no data pointer inside torch.func transforms (jacrev of gated_forward)
        shifted = _shifted_words(x)
    return _weighted_sum(shifted), *ends


def _shifted_words(x: torch.Tensor) -> torch.Tensor:
    """The int64 words at byte offsets ``8k + 4`` of a float64 vector, built from its 32-bit
    halves with torch operations only (no data pointer; the slow path of
    :func:`_tensor_fingerprint`, tested equal to the fast one)."""
    halves = x.view(torch.int32).view(-1, 2).to(torch.int64)  # little-endian: (low, high)
    return (halves[:-1, 1] & 0xFFFFFFFF) | (halves[1:, 0] << 32)


def _constants(model: nn.Module):
    """The values that define a network's support or :math:`f_S` without being parameters or
    buffers, by module name: PHT's threshold and top-k, LeakyReLU's slope, Hardtanh's (ReLU6's)
    bounds, BatchNorm's eps. (Changed after :func:`support`, they made a stale support look
    current: a PHT threshold raised from 0.1 to 0.3 was accepted by every consumer.)"""
    for name, m in model.named_modules():
        if isinstance(m, PHT):
            yield name, (m.tau, m.k, m.dim)
        elif isinstance(m, nn.LeakyReLU):
            yield name, (float(m.negative_slope),)
        elif isinstance(m, nn.Hardtanh):
            yield name, (float(m.min_val), float(m.max_val))
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            yield name, (float(m.eps),)


def _weights_digest(model: nn.Module) -> str:
    """Fingerprint of the values of the parameters and floating buffers, as float64, and of the
    modules' constants (:func:`_constants`).

    Robust to a deep copy, a float32 -> float64 cast (exact) and a device move; a change of any
    single value changes it (see :func:`_tensor_fingerprint`). Cost: one pass over the weights,
    every time a consumer checks a support: 14 ms for ResNet-18 in float64 on one thread (SHA-1
    over the same bytes: 48 ms); in float32 the cast to float64 comes on top.
    """
    h = hashlib.sha1()
    for name, t in _state(model):
        h.update(f"{name}:{tuple(t.shape)}:{_tensor_fingerprint(t)};".encode())
    for name, values in _constants(model):
        h.update(f"{name}:{values!r};".encode())
    return h.hexdigest()[:16]


def _check_input(x, where: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{where}: x must be a torch.Tensor or numpy array; got {type(x).__name__}.")
    if x.ndim < 2:
        raise ValueError(f"{where}: x must be a batch of shape (n, ...); got shape {tuple(x.shape)}. "
                         "Add a batch dimension with x[None].")
    if x.shape[0] == 0:
        raise ValueError(f"{where}: x must hold at least one sample; got shape {tuple(x.shape)}.")
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{where}: x has {bad} NaN or Inf entries (shape {tuple(x.shape)}); "
                         "supports are only defined for finite inputs.")
    return x


def _check_model(model, where: str) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{where}: model must be a torch.nn.Module; got {type(model).__name__}.")


def _check_eval(model: nn.Module, where: str) -> None:
    _check_model(model, where)
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training:
            raise ValueError(
                f"{where}: BatchNorm {name!r} is in training mode, where the support of a sample "
                "depends on its batch (docs/claims.md, 'Batch norm and the support'). Call model.eval() "
                "to use running statistics.")
        if isinstance(m, nn.modules.dropout._DropoutNd) and m.training and m.p > 0:
            raise ValueError(
                f"{where}: Dropout {name!r} (p={m.p}) is in training mode, where it zeroes random "
                "entries and the support is a random draw. Call model.eval().")


def _check_matches(model: nn.Module, x: torch.Tensor, where: str) -> None:
    """``x`` has the dtype and device of the model's parameters."""
    p = next((t for t in model.parameters() if t.is_floating_point()), None)
    if p is None:
        if not x.is_floating_point():
            raise TypeError(f"{where}: x must be a floating-point batch; got dtype {x.dtype}. "
                            "Use x.double().")
        return
    if x.dtype != p.dtype:
        raise TypeError(f"{where}: x has dtype {x.dtype} but the model's parameters are {p.dtype}. "
                        f"Convert one of them: x.to({p.dtype}) or model.to({x.dtype}).")
    if x.device != p.device:
        raise ValueError(f"{where}: x is on {x.device} but the model's parameters are on "
                         f"{p.device}. Move one of them: x.to({str(p.device)!r}).")


def _run(graph: Graph, x: torch.Tensor, where: str, *args):
    """``execute``, with torch's shape errors said as a ValueError about ``x``."""
    try:
        return execute(graph, x, *args)
    except RuntimeError as exc:
        raise ValueError(f"{where}: the model could not run on x of shape {tuple(x.shape)}: {exc} "
                         "Give x the per-sample shape the model expects.") from exc


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
    TypeError
        ``model`` is not an ``nn.Module``; ``x`` is not a tensor or has another dtype than the
        model's parameters.
    UnsupportedModuleError
        A node the output depends on has no explicit operator (GELU, Softmax, Sigmoid,
        LayerNorm, BatchNorm without running statistics, ...): its type and path are named.
    ValueError
        NaN/Inf in ``x``, no batch dimension, a shape the model cannot run, or BatchNorm or
        Dropout in training mode.
    """
    _check_model(model, "support")
    x = _check_input(x, "support")
    _check_eval(model, "support")
    graph = trace(model)
    check_supported(graph, "support")
    _check_matches(model, x, "support")
    _, recorded, shapes = _run(graph, x, "support", "record")
    layers: dict[str, LayerSupport] = {}
    for node in graph.nodes:
        if node.key is None:
            continue
        sel = recorded[node.key]
        n = x.shape[0]
        if sel.mask is not None:
            m = sel.mask.cpu().numpy().reshape(n, -1)
            up = (None if sel.upper is None
                  else np.packbits(sel.upper.cpu().numpy().reshape(n, -1), axis=-1))
            layers[node.key] = LayerSupport(node.key, "act", tuple(sel.mask.shape[1:]), sel.in_shape,
                                            np.packbits(m, axis=-1), None, sel.margin.cpu().numpy(),
                                            up)
        else:
            layers[node.key] = LayerSupport(node.key, "maxpool", tuple(sel.indices.shape[1:]),
                                            sel.in_shape, None,
                                            sel.indices.cpu().numpy().astype(np.int32),
                                            sel.margin.cpu().numpy())
    return MultiLayerSupport(layers, int(x.shape[0]), tuple(x.shape[1:]), _signature(graph, shapes),
                             _digest(x), param_signature=_param_signature(model),
                             weights_digest=_weights_digest(model))


def check_support_for(graph: Graph, S: MultiLayerSupport, where: str, *,
                      same_weights: bool = True) -> None:
    """Raise unless ``S`` is a support of ``graph.model`` as it is now.

    Checks, in order: ``S`` is a :class:`MultiLayerSupport` (TypeError); every node the output
    depends on has an explicit operator (UnsupportedModuleError); ``S`` has exactly the selection
    layers and the parameter shapes of the model (ValueError); and, unless ``same_weights`` is
    False or ``S`` came from :meth:`MultiLayerSupport.for_any_weights`, it was recorded with the
    model's current parameter and buffer values (ValueError).
    """
    if not isinstance(S, MultiLayerSupport):
        raise TypeError(f"{where}: support must be a MultiLayerSupport (from altheory.support); "
                        f"got {type(S).__name__}.")
    if not isinstance(same_weights, bool):
        raise TypeError(f"{where}: same_weights must be a bool; got {type(same_weights).__name__}.")
    check_supported(graph, where)
    keys = graph.selection_keys
    if list(S.keys()) != keys:
        raise ValueError(f"{where}: the support is from another model: expected selection layers "
                         f"{keys}; got {list(S.keys())}. Compute it with support(model, x) on this model.")
    model = graph.model
    if S.param_signature is not None and S.param_signature != _param_signature(model):
        raise ValueError(f"{where}: the support is from another architecture: the same selection "
                         f"layers {keys}, but other parameter names or shapes. Compute it with "
                         "support(model, x) on this model.")
    if same_weights and S.weights_digest is not None:
        now = _weights_digest(model)
        if now != S.weights_digest:
            raise ValueError(
                f"{where}: the support was recorded with other weights (fingerprint "
                f"{S.weights_digest}; the model's weights now: {now}); its operators would be "
                "silently wrong for these. Recompute support(model, x) with the current weights, "
                "or hold it on purpose with S.for_any_weights() (same_weights=False where offered).")


def gated_forward(model: nn.Module, S: MultiLayerSupport, x, *,
                  same_weights: bool = True) -> torch.Tensor:
    r"""The fixed-support network :math:`f_S(x; W)`: every selection uses ``S``, not its input.

    Differentiable in ``x`` and in the weights; affine in ``x`` and in each layer's weights.
    ``x`` must have the batch size of ``S`` (sample ``i`` of ``x`` uses the support of sample ``i``);
    it may be another batch than the one ``S`` came from (:math:`f_S` is defined for any input).

    Parameters
    ----------
    model : nn.Module, in eval mode, of the architecture ``S`` came from.
    S : MultiLayerSupport
    x : Tensor or ndarray of shape (S.n, *S.input_shape)
    same_weights : bool, default True
        Require the model's weights to be those ``S`` was recorded with (a fingerprint); pass
        False to evaluate :math:`f_S` at other weights on purpose (as ``S.for_any_weights()``).

    Raises
    ------
    UnsupportedModuleError
        A node without an explicit operator (as :func:`support`).
    ValueError
        ``S`` from another architecture or (unless ``same_weights=False``) other weights; ``x`` of
        another shape; BatchNorm or Dropout in training mode.

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(3, 4), PHT(tau=0.1), nn.Linear(4, 1)).double()
    >>> x = torch.randn(5, 3, dtype=torch.float64)
    >>> bool(torch.allclose(gated_forward(net, support(net, x), x), net(x)))
    True
    """
    _check_model(model, "gated_forward")
    x = _check_input(x, "gated_forward")
    _check_eval(model, "gated_forward")
    graph = trace(model)
    check_support_for(graph, S, "gated_forward", same_weights=same_weights)
    _check_matches(model, x, "gated_forward")
    if x.shape[0] != S.n or tuple(x.shape[1:]) != S.input_shape:
        raise ValueError(f"gated_forward: x has shape {tuple(x.shape)} but the support was computed "
                         f"for a batch of shape {(S.n, *S.input_shape)}. Use S.subset(...) or the "
                         "batch the support came from.")
    sels = {k: Selection(None if v.mask is None else v.mask.to(x.device),
                         None if v.indices is None else v.indices.to(x.device), v.margin, v.in_shape,
                         None if v.upper is None else v.upper.to(x.device))
            for k, v in S.selections().items()}
    out, _ = _run(graph, x, "gated_forward", "gated", sels)
    return out

