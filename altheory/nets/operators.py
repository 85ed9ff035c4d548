r"""Explicit linear operators of a network with a fixed support (claim C1).

Given the support of sample :math:`i`, every node of the graph is an affine map of its inputs,
:math:`v = \sum_u M_{v,u}\, v_u + b_v`, with :math:`M` built from the weights and the masks:

* ``Linear``: :math:`M = W` (dense); ``Conv2d``: the Toeplitz / im2col matrix of the kernel
  (``scipy.sparse`` CSR, any stride, padding, dilation and groups);
* BatchNorm (eval): :math:`M = \mathrm{diag}(\gamma/\sqrt{\sigma^2+\epsilon})`; average pooling:
  sparse averaging; reshapes, identity, dropout (eval): :math:`M = I`; residual addition:
  :math:`M = I` for both inputs;
* PHT/ReLU: :math:`M = D^l_i = \mathrm{diag}(s^l_i)`; LeakyReLU/PReLU:
  :math:`M = \mathrm{diag}(s + a(1 - s))` with the slope :math:`a` (PReLU: the model's current
  per-channel weight, a constant of the operator); Hardtanh/ReLU6: :math:`M = \mathrm{diag}(s)`
  (identity region) and the bias :math:`b` holds ``hi`` on the upper region and ``lo`` on the
  lower one; max pooling: the 0/1 selection matrix of the recorded argmax positions;
* ``torch.cat``/``torch.stack``: one block of rows per input (a 0/1 placement matrix); its
  transpose action splits the rows (``torch.split`` / ``unbind``) back to the inputs.

Composing them gives :math:`f(x_i) = A_S x_i + c_S` with
:math:`A_S = W_L D^{L-1}_i W_{L-1} \cdots D^1_i W_1` (docs/claims.md C1). :func:`linearize` composes
from the output backwards (reverse mode), starting from :math:`R = I_k` and passing
:math:`R \mapsto R M_{v,u}` through every node, so the running product is always
(output rows) x (layer size) and dense. The bias term is collected on the way,
:math:`c_S = \sum_v R_v b_v` where :math:`R_v = \partial f/\partial v`.

Two ways to apply :math:`R \mapsto R M` (:meth:`Linearization.compose`):

* ``"adjoint"`` (default): the transpose action of each layer on a batch of rows, in torch, from
  the weights and the masks without forming :math:`M` — ``R @ W`` (Linear), a transposed
  convolution (:func:`conv_adjoint`), the BatchNorm scale, the mask :math:`s^l_i` (PHT/ReLU), a
  scatter-add by the recorded argmax (:func:`maxpool_adjoint`), the averaging windows
  (:func:`pool_adjoint`). It is the arithmetic of reverse-mode differentiation, written out from
  the support: there is no autograd graph (nothing is recorded, ``torch.no_grad`` is not
  needed), and the masks come from :math:`S`, not from a forward pass. Rows are processed in
  blocks sized so the dense adjoints stay within about 1 GiB.
* ``"sparse"``: the explicit matrices of :meth:`Linearization.operator` (Toeplitz convolutions
  in ``scipy.sparse`` CSR), multiplied in numpy. Slower — scipy's sparse products are
  single-threaded and re-index the matrix on every use — and kept as an independent
  cross-check of the adjoint actions; :meth:`Linearization.forward` uses the same matrices.

No autograd is involved anywhere; the tests compare both with autograd's Jacobian, with each
other, and each layer's adjoint action with its dense matrix built column by column
(``altheory.nets._reference``), in float64 with relative error <= 1e-10.

:func:`layer_operator` gives the per-layer design matrix: for fixed support and all other
layers, :math:`f_S(x_i) = \Phi_i\,\theta_l + o_i` with :math:`\theta_l = (\mathrm{vec}(W_l), b_l)`
(row-major ``W.ravel()``, then the bias) — the matrix the convex solvers of C3 consume.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from altheory.errors import UnsupportedModuleError
from altheory.nets.graph import (SUPPORTED, Graph, Node, act_bounds, act_kind, act_slope, cat_axis,
                                  execute, trace)
from altheory.nets.support import MultiLayerSupport, _check_eval, _digest, check_support_for

__all__ = ["Linearization", "linearize", "layer_operator", "conv_operator", "pool_operator"]

Matrix = Any  # np.ndarray | scipy.sparse.csr_matrix | None (identity)
ComposeMethod = Literal["adjoint", "sparse"]

# dense adjoints of one block of output rows stay within about this many bytes
_ADJOINT_BUDGET_BYTES = 2**30


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float64).numpy()


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, (int, np.integer)) else (int(v[0]), int(v[1]))


# --------------------------------------------------------------------------------------------
# Convolution and pooling as sparse matrices (index arithmetic, cached per geometry)
# --------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=64)
def _conv_indices(in_shape: tuple[int, int, int], out_hw: tuple[int, int], w_shape: tuple[int, ...],
                  groups: int, stride: tuple[int, int], pad: tuple[int, int],
                  dilation: tuple[int, int]):
    """Index triples of a convolution: output row, input column, weight entry (valid only).

    ``z[co, oh, ow] = sum_{cl, ki, kj} W[co, cl, ki, kj] x[ci, oh*s - p + ki*d, ow*s - p + kj*d]``
    with ``ci = (co // (C_out/groups)) * (C_in/groups) + cl``.
    """
    C, H, W = in_shape
    Ho, Wo = out_hw
    Cout, Cin_g, kh, kw = w_shape
    Cout_g = Cout // groups
    co = np.arange(Cout).reshape(-1, 1, 1, 1, 1, 1)
    oh = np.arange(Ho).reshape(1, -1, 1, 1, 1, 1)
    ow = np.arange(Wo).reshape(1, 1, -1, 1, 1, 1)
    cl = np.arange(Cin_g).reshape(1, 1, 1, -1, 1, 1)
    ki = np.arange(kh).reshape(1, 1, 1, 1, -1, 1)
    kj = np.arange(kw).reshape(1, 1, 1, 1, 1, -1)
    ih = oh * stride[0] - pad[0] + ki * dilation[0]
    iw = ow * stride[1] - pad[1] + kj * dilation[1]
    ci = (co // Cout_g) * Cin_g + cl
    valid = (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
    rows = (co * Ho + oh) * Wo + ow
    cols_in = (ci * H + ih) * W + iw
    cols_w = ((co * Cin_g + cl) * kh + ki) * kw + kj
    shape = np.broadcast_shapes(rows.shape, cols_in.shape, cols_w.shape, valid.shape)
    valid = np.broadcast_to(valid, shape)
    out = tuple(np.broadcast_to(a, shape)[valid].astype(np.int64) for a in (rows, cols_in, cols_w))
    for a in out:
        a.setflags(write=False)
    return out


def _conv_padding(conv: nn.Conv2d, in_hw: tuple[int, int]) -> tuple[int, int]:
    """Leading (top, left) zero padding of a Conv2d, including padding='same'/'valid'."""
    if isinstance(conv.padding, str):
        if conv.padding == "valid":
            return (0, 0)
        # 'same': total = d*(k-1), the extra pixel (if odd) goes to the end
        k, d = _pair(conv.kernel_size), _pair(conv.dilation)
        return tuple((d[i] * (k[i] - 1)) // 2 for i in range(2))  # type: ignore[return-value]
    return _pair(conv.padding)


def conv_operator(conv: nn.Conv2d, in_shape: tuple[int, int, int],
                  out_hw: tuple[int, int] | None = None) -> tuple[sp.csr_matrix, np.ndarray]:
    r"""The convolution as a sparse matrix: :math:`\mathrm{vec}(\mathrm{conv}(x)) = M\,\mathrm{vec}(x) + b`.

    Parameters
    ----------
    conv : nn.Conv2d (zero padding; any stride, padding, dilation, groups)
    in_shape : (C, H, W) of one sample
    out_hw : (H_out, W_out); computed from the conv's geometry when omitted.

    Returns
    -------
    M : csr_matrix of shape (C_out*H_out*W_out, C*H*W), float64, one stored entry per
        (output, kernel tap) pair that falls inside the input (memory proportional to nnz).
    b : ndarray of shape (C_out*H_out*W_out,)
    """
    C, H, W = in_shape
    pad = _conv_padding(conv, (H, W))
    k, s, d = _pair(conv.kernel_size), _pair(conv.stride), _pair(conv.dilation)
    if out_hw is None:
        if isinstance(conv.padding, str) and conv.padding == "same":
            out_hw = (H, W)
        else:
            out_hw = tuple((( (H, W)[i] + 2 * pad[i] - d[i] * (k[i] - 1) - 1) // s[i]) + 1
                           for i in range(2))  # type: ignore[assignment]
    Wt = _np(conv.weight)
    rows, cols_in, cols_w = _conv_indices((C, H, W), tuple(out_hw), Wt.shape, conv.groups, s, pad, d)
    n_out = Wt.shape[0] * out_hw[0] * out_hw[1]
    M = sp.csr_matrix((Wt.ravel()[cols_w], (rows, cols_in)), shape=(n_out, C * H * W))
    b = (np.repeat(_np(conv.bias), out_hw[0] * out_hw[1]) if conv.bias is not None
         else np.zeros(n_out))
    return M, b


def _pool_windows_avg(pool: nn.AvgPool2d, in_shape, out_hw):
    C, H, W = in_shape
    k = _pair(pool.kernel_size)
    s = _pair(pool.stride if pool.stride is not None else pool.kernel_size)
    p = _pair(pool.padding)
    Ho, Wo = out_hw
    oh = np.arange(Ho).reshape(-1, 1, 1, 1)
    ow = np.arange(Wo).reshape(1, -1, 1, 1)
    ki = np.arange(k[0]).reshape(1, 1, -1, 1)
    kj = np.arange(k[1]).reshape(1, 1, 1, -1)
    hs, ws = oh * s[0] - p[0], ow * s[1] - p[1]
    # PyTorch: pool size counts padding but not the part of a ceil-mode window past H + pad
    he, we = np.minimum(hs + k[0], H + p[0]), np.minimum(ws + k[1], W + p[1])
    size_pad = (he - hs) * (we - ws)
    size_valid = (np.minimum(he, H) - np.maximum(hs, 0)) * (np.minimum(we, W) - np.maximum(ws, 0))
    if pool.divisor_override:
        div = np.full_like(size_pad, pool.divisor_override)
    elif pool.count_include_pad:
        div = size_pad
    else:
        div = size_valid
    ih, iw = hs + ki, ws + kj
    valid = (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
    shape = np.broadcast_shapes(ih.shape, iw.shape)
    valid = np.broadcast_to(valid, shape)
    out_pos = np.broadcast_to(oh * Wo + ow, shape)[valid]
    in_pos = np.broadcast_to(ih * W + iw, shape)[valid]
    val = 1.0 / np.broadcast_to(div, shape)[valid]
    return out_pos, in_pos, val


def _pool_windows_adaptive(in_shape, out_hw):
    C, H, W = in_shape
    Ho, Wo = out_hw
    out_pos, in_pos, val = [], [], []
    for oh in range(Ho):
        h0, h1 = (oh * H) // Ho, -((-(oh + 1) * H) // Ho)
        for ow in range(Wo):
            w0, w1 = (ow * W) // Wo, -((-(ow + 1) * W) // Wo)
            hh, ww = np.meshgrid(np.arange(h0, h1), np.arange(w0, w1), indexing="ij")
            cnt = hh.size
            out_pos.append(np.full(cnt, oh * Wo + ow))
            in_pos.append((hh * W + ww).ravel())
            val.append(np.full(cnt, 1.0 / cnt))
    return np.concatenate(out_pos), np.concatenate(in_pos), np.concatenate(val)


def _pool_windows(pool: nn.Module, in_shape, out_hw):
    """(output position, input position, weight) triples of one channel's averaging windows."""
    if isinstance(pool, nn.AvgPool2d):
        return _pool_windows_avg(pool, in_shape, out_hw)
    if isinstance(pool, nn.AdaptiveAvgPool2d):
        return _pool_windows_adaptive(in_shape, out_hw)
    raise TypeError(f"pool must be nn.AvgPool2d or nn.AdaptiveAvgPool2d; got {type(pool).__name__}.")


def pool_operator(pool: nn.Module, in_shape: tuple[int, int, int],
                  out_hw: tuple[int, int]) -> sp.csr_matrix:
    r"""Average pooling (``AvgPool2d`` or ``AdaptiveAvgPool2d``) as a sparse matrix.

    The same windows are applied to each channel: :math:`M = I_C \otimes P` with :math:`P` the
    (H_out W_out) x (H W) averaging matrix, including PyTorch's divisor rules
    (``count_include_pad``, ``divisor_override``, ``ceil_mode``).
    """
    C, H, W = in_shape
    out_pos, in_pos, val = _pool_windows(pool, in_shape, out_hw)
    P = sp.csr_matrix((val, (out_pos, in_pos)), shape=(out_hw[0] * out_hw[1], H * W))
    return sp.kron(sp.identity(C, format="csr"), P, format="csr")


# --------------------------------------------------------------------------------------------
# Transpose (adjoint) actions on a batch of rows, from the weights (torch, no matrix built)
# --------------------------------------------------------------------------------------------

def _conv_pad_end(conv: nn.Conv2d, pad: tuple[int, int]) -> tuple[int, int]:
    """Trailing (bottom, right) zero padding of a Conv2d ('same' puts the odd pixel here)."""
    if isinstance(conv.padding, str) and conv.padding == "same":
        k, d = _pair(conv.kernel_size), _pair(conv.dilation)
        return tuple(d[i] * (k[i] - 1) - pad[i] for i in range(2))  # type: ignore[return-value]
    return pad


def conv_adjoint(conv: nn.Conv2d, R: torch.Tensor, in_shape: tuple[int, int, int]) -> torch.Tensor:
    r"""Rows times the convolution's matrix, :math:`R M`: a transposed convolution of :math:`R`.

    With :math:`M` the matrix of :func:`conv_operator`, row :math:`r` of :math:`RM` is
    :math:`M^\top R_r = \mathrm{conv\_transpose2d}(R_r, W)` with the conv's stride, dilation,
    groups and padding, and the output padding that restores the input size (a strided conv
    drops up to ``stride - 1`` trailing input rows; their adjoint entries are zero). Asymmetric
    padding (``padding='same'`` with an even receptive field) is a transposed convolution of the
    padded input's size, cropped by the leading padding.

    The transposed convolution is computed by ATen's kernel for it,
    ``torch.ops.aten.convolution_backward`` with only the input part requested (the operator's
    ``input`` argument is used for its shape only: a zero-stride scalar is passed). This is a plain
    function of ``R`` and the weights — no autograd graph is built or used — and on the CPU in
    float64 it is about twice as fast as ``F.conv_transpose2d``, which computes the same numbers
    (the tests compare both with the dense matrix).

    Parameters
    ----------
    conv : nn.Conv2d (zero padding)
    R : Tensor of shape (rows, C_out, H_out, W_out), float64
    in_shape : (C, H, W), the conv's per-sample input shape

    Returns
    -------
    Tensor of shape (rows, C, H, W)
    """
    C, H, W = in_shape
    rows = R.shape[0]
    Wt = conv.weight.detach().to(device=R.device, dtype=R.dtype)
    pad = _conv_padding(conv, (H, W))
    end = _conv_pad_end(conv, pad)
    s, d = _pair(conv.stride), _pair(conv.dilation)
    if pad == end:
        shape, padding = (rows, C, H, W), pad
    else:  # pad explicitly (as torch does for this case), no implicit padding, crop below
        shape, padding = (rows, C, H + pad[0] + end[0], W + pad[1] + end[1]), (0, 0)
    like = R.new_zeros(()).expand(shape)
    out = torch.ops.aten.convolution_backward(R, like, Wt, None, s, padding, d, False, (0, 0),
                                              conv.groups, (True, False, False))[0]
    if pad != end:
        out = out[:, :, pad[0]:pad[0] + H, pad[1]:pad[1] + W]
    return out


def conv_adjoint_transpose(conv: nn.Conv2d, R: torch.Tensor, in_shape: tuple[int, int, int]) -> torch.Tensor:
    r"""The same as :func:`conv_adjoint` with ``F.conv_transpose2d`` (slower on the CPU; a check).

    Symmetric padding: ``conv_transpose2d(R, W, stride, padding, output_padding, groups,
    dilation)`` with ``output_padding = H - ((H_out - 1) s - 2p + d(k - 1) + 1)``; asymmetric
    padding: no padding, then crop ``pad`` leading entries and pad/crop the trailing ones.
    """
    C, H, W = in_shape
    Wt = conv.weight.detach().to(device=R.device, dtype=R.dtype)
    pad = _conv_padding(conv, (H, W))
    end = _conv_pad_end(conv, pad)
    k, s, d = _pair(conv.kernel_size), _pair(conv.stride), _pair(conv.dilation)
    Ho, Wo = R.shape[-2:]
    if pad == end:
        op = tuple((H, W)[i] - ((((Ho, Wo)[i] - 1) * s[i] - 2 * pad[i] + d[i] * (k[i] - 1) + 1))
                   for i in range(2))
        if all(0 <= op[i] < max(s[i], d[i]) for i in range(2)):
            return F.conv_transpose2d(R, Wt, None, s, pad, op, conv.groups, d)
    full = F.conv_transpose2d(R, Wt, None, s, 0, 0, conv.groups, d)
    Fh, Fw = full.shape[-2:]
    # input entry j sits at position j + pad of the unpadded transposed output
    return F.pad(full, (-pad[1], pad[1] + W - Fw, -pad[0], pad[0] + H - Fh))


def pool_adjoint(pool: nn.Module, R: torch.Tensor, in_shape: tuple[int, int, int]) -> torch.Tensor:
    r"""Rows times the average pooling's matrix, :math:`R (I_C \otimes P)`, from its windows.

    Each output entry :math:`o` sends :math:`R_{r,c,o} P_{o,j}` back to every input :math:`j` of
    its window (``index_add``; overlapping windows add), with the divisors of :func:`pool_operator`.

    Parameters
    ----------
    pool : nn.AvgPool2d or nn.AdaptiveAvgPool2d
    R : Tensor of shape (rows, C, H_out, W_out)
    in_shape : (C, H, W)

    Returns
    -------
    Tensor of shape (rows, C, H, W)
    """
    C, H, W = in_shape
    rows, Ho, Wo = R.shape[0], R.shape[-2], R.shape[-1]
    out_pos, in_pos, val = _pool_windows(pool, in_shape, (Ho, Wo))
    out_pos = torch.as_tensor(np.ascontiguousarray(out_pos), dtype=torch.int64, device=R.device)
    in_pos = torch.as_tensor(np.ascontiguousarray(in_pos), dtype=torch.int64, device=R.device)
    val = torch.as_tensor(np.ascontiguousarray(val), dtype=R.dtype, device=R.device)
    R2 = R.reshape(rows * C, Ho * Wo)
    out = R2.new_zeros(rows * C, H * W)
    out.index_add_(1, in_pos, R2[:, out_pos] * val)
    return out.reshape(rows, C, H, W)


def maxpool_adjoint(indices: torch.Tensor, R: torch.Tensor, in_shape: tuple[int, int, int]) -> torch.Tensor:
    r"""Rows times the max pooling's 0/1 selection matrix: scatter-add by the stored argmax.

    Row :math:`r` of the result holds :math:`R_{r,c,o}` at the recorded input position of output
    :math:`o` in channel :math:`c`; positions selected by several (overlapping) windows add up.

    Parameters
    ----------
    indices : int64 Tensor of shape (C, H_out, W_out), flat positions in each input channel
    R : Tensor of shape (rows, C, H_out, W_out)
    in_shape : (C, H, W)

    Returns
    -------
    Tensor of shape (rows, C, H, W)
    """
    C, H, W = in_shape
    rows = R.shape[0]
    idx = indices.reshape(1, C, -1).expand(rows, C, -1)
    out = R.new_zeros(rows, C, H * W)
    out.scatter_add_(2, idx, R.reshape(rows, C, -1))
    return out.reshape(rows, C, H, W)


# --------------------------------------------------------------------------------------------
# The linearization of one sample
# --------------------------------------------------------------------------------------------

class Linearization:
    r"""The explicit affine operators of ``model`` for the support of sample ``i`` of ``S``.

    Parameters
    ----------
    model : nn.Module (BatchNorm in eval mode)
    S : MultiLayerSupport
    i : int, the sample whose support is used.

    Methods
    -------
    operator(name)
        ``([(input_name, M), ...], b)`` for one node, M a dense array, a CSR matrix or None (I).
    forward(x, bias=True)
        Values of every node for the flat input ``x`` through the explicit operators.
    compose(keep=(), method="adjoint", max_rows=None)
        ``(A, c, R)`` of the whole network, by reverse accumulation: the layers' transpose
        actions in torch (default) or the sparse matrices of ``operator`` (``method="sparse"``).
    """

    def __init__(self, model: nn.Module, S: MultiLayerSupport, i: int, *, graph: Graph | None = None):
        _check_eval(model, "linearize")
        self.graph = graph if graph is not None else trace(model)
        check_support_for(self.graph, S, "linearize")
        self.i = S._check_index(i)
        self.S = S
        self.sample_support = {k: S[k] for k in S.keys()}
        dtype = next((p.dtype for p in model.parameters()), torch.float64)
        sels = S.subset(slice(self.i, self.i + 1)).selections()
        with torch.no_grad():
            _, shapes = execute(self.graph, torch.zeros((1, *S.input_shape), dtype=dtype), "gated", sels)
        self.shapes = {k: v[1:] for k, v in shapes.items()}
        self.numel = {k: int(np.prod(v)) for k, v in self.shapes.items()}

    # -- one node ----------------------------------------------------------------------------
    def operator(self, name: str) -> tuple[list[tuple[str, Matrix]], np.ndarray | None]:
        """The affine map of node ``name``: list of (input node, matrix or None=I) and bias."""
        return self._build(self.graph.node(name))

    def _unsupported(self, node: Node):
        mod = type(node.module).__name__ if node.module is not None else node.path
        raise UnsupportedModuleError(
            f"cannot linearize {mod} at {node.path!r}: {node.why or 'unsupported operation'}. "
            f"Supported: {SUPPORTED}.")

    def _act_diagonal(self, node: Node) -> np.ndarray:
        r"""Diagonal of :math:`D^l_i` for an activation node, float64 of the per-sample shape:
        the mask :math:`s` (PHT, ReLU; Hardtanh/ReLU6: the identity region), or
        :math:`s + a(1 - s)` (LeakyReLU, PReLU: slope :math:`a` on the off side)."""
        s = self.sample_support[node.key].mask(self.i)
        if act_kind(node) == "leaky":
            a = act_slope(node, torch.zeros((1, *s.shape), dtype=torch.float64))
            a = np.broadcast_to(_np(a.reshape(a.shape[1:]) if a.ndim else a), s.shape)
            return np.where(s, 1.0, a)
        return s.astype(np.float64)

    def _act_bias(self, node: Node) -> np.ndarray | None:
        """The constant part of an activation node, float64 of the per-sample shape, or None:
        ``hi`` on the upper region and ``lo`` on the lower one of a Hardtanh/ReLU6."""
        if act_kind(node) != "clamp":
            return None
        L = self.sample_support[node.key]
        s, up = L.mask(self.i), L.upper_mask(self.i)
        lo, hi = act_bounds(node)
        return np.where(s, 0.0, np.where(up, hi, lo))

    def _cat_blocks(self, node: Node) -> tuple[int, list[int]]:
        """Axis (batched, >= 1) of a cat/stack node and each input's extent along it."""
        axis = cat_axis(node, self.shapes[node.name])
        if node.params["stack"]:
            return axis, [1] * len(node.inputs)
        return axis, [self.shapes[u][axis - 1] for u in node.inputs]

    def _maxpool_indices(self, node: Node) -> np.ndarray:
        """Recorded argmax positions (C, H_out, W_out), int64, flat in each input channel."""
        return self.sample_support[node.key].indices[self.i].astype(np.int64)

    def _bn_affine(self, node: Node) -> tuple[np.ndarray, np.ndarray]:
        r"""Per-channel scale :math:`\gamma/\sqrt{\sigma^2+\epsilon}` and shift of an eval BatchNorm."""
        mod = node.module
        if mod.running_mean is None:
            raise UnsupportedModuleError(
                f"BatchNorm {node.path!r} has track_running_stats=False, so even in eval mode it "
                "normalises with batch statistics and is not affine per sample.")
        var, mean = _np(mod.running_var), _np(mod.running_mean)
        gamma = _np(mod.weight) if mod.weight is not None else np.ones_like(mean)
        beta = _np(mod.bias) if mod.bias is not None else np.zeros_like(mean)
        scale = gamma / np.sqrt(var + mod.eps)
        return scale, beta - mean * scale

    def _build(self, node: Node):
        kind = node.kind
        in_shape = self.shapes.get(node.inputs[0]) if node.inputs else None
        out_shape = self.shapes.get(node.name)
        if kind in ("reshape", "identity"):
            if self.numel[node.inputs[0]] != self.numel[node.name]:
                raise UnsupportedModuleError(
                    f"{node.path!r} changes the per-sample size from {in_shape} to {out_shape}: only "
                    "reshapes that keep the batch dimension are linear per sample.")
            return [(node.inputs[0], None)], None
        if kind == "add":
            a, b = node.inputs
            if self.shapes[a] != self.shapes[b]:
                raise UnsupportedModuleError(
                    f"residual addition {node.name!r} broadcasts {self.shapes[a]} with {self.shapes[b]}; "
                    "only additions of equal shapes are supported.")
            return [(a, None), (b, None)], None
        if kind == "act":
            m = self._act_diagonal(node).ravel()
            b = self._act_bias(node)
            return [(node.inputs[0], sp.diags(m, format="csr"))], None if b is None else b.ravel()
        if kind == "cat":
            axis, sizes = self._cat_blocks(node)
            out_idx = np.arange(self.numel[node.name]).reshape(self.shapes[node.name])
            parts = np.split(out_idx, np.cumsum(sizes)[:-1], axis=axis - 1)
            ops = []
            for u, part in zip(node.inputs, parts):
                rows = part.ravel()  # the input's entries, in its own (C-order) layout
                ops.append((u, sp.csr_matrix((np.ones(rows.size), (rows, np.arange(rows.size))),
                                             shape=(self.numel[node.name], self.numel[u]))))
            return ops, None
        if kind == "maxpool":
            idx = self._maxpool_indices(node)  # (C, Ho, Wo)
            C = idx.shape[0]
            hw = int(np.prod(in_shape[1:]))
            cols = (np.arange(C).reshape(-1, 1, 1) * hw + idx).ravel()
            M = sp.csr_matrix((np.ones(cols.size), (np.arange(cols.size), cols)),
                              shape=(cols.size, self.numel[node.inputs[0]]))
            return [(node.inputs[0], M)], None
        mod = node.module
        if kind == "linear":
            W = _np(mod.weight)
            b = _np(mod.bias) if mod.bias is not None else np.zeros(W.shape[0])
            reps = int(np.prod(in_shape[:-1]))
            if reps == 1:
                return [(node.inputs[0], W)], b
            return [(node.inputs[0], sp.kron(sp.identity(reps), sp.csr_matrix(W), format="csr"))], np.tile(b, reps)
        if kind == "conv":
            if len(in_shape) != 3:
                raise UnsupportedModuleError(f"Conv2d {node.path!r} expects (C, H, W) inputs; got {in_shape}.")
            M, b = conv_operator(mod, tuple(in_shape), tuple(out_shape[1:]))
            return [(node.inputs[0], M)], b
        if kind == "bn":
            scale, shift = self._bn_affine(node)
            rep = int(np.prod(in_shape[1:])) if len(in_shape) > 1 else 1
            return [(node.inputs[0], sp.diags(np.repeat(scale, rep), format="csr"))], np.repeat(shift, rep)
        if kind in ("avgpool", "adaptiveavgpool"):
            return [(node.inputs[0], pool_operator(mod, tuple(in_shape), tuple(out_shape[1:])))], None
        self._unsupported(node)

    # -- compositions ------------------------------------------------------------------------
    def forward(self, x, *, bias: bool = True) -> dict[str, np.ndarray]:
        r"""Every node's value for the flat input ``x`` (shape (d,)), via the explicit operators.

        With ``bias=False`` this is :math:`A_{\le v} x` for every node :math:`v` — the linear part
        only, used by C2 to bound how far a perturbation moves each pre-activation.
        """
        x = np.asarray(x, dtype=np.float64).ravel()
        if x.size != self.numel[self.graph.nodes[0].name]:
            raise ValueError(f"x has {x.size} entries; expected {self.numel[self.graph.nodes[0].name]} "
                             f"(per-sample input shape {self.S.input_shape}).")
        vals: dict[str, np.ndarray] = {}
        need = self._needed()
        for node in self.graph.nodes:
            if node.kind == "input":
                vals[node.name] = x
            elif node.kind == "output":
                vals[node.name] = vals[node.inputs[0]]
            elif node.name in need:
                ops, b = self.operator(node.name)
                v = sum((vals[u] if M is None else M @ vals[u]) for u, M in ops)
                vals[node.name] = v + b if (bias and b is not None) else v
        return vals

    def _needed(self) -> set[str]:
        """Names of the tensor nodes the output depends on."""
        need = {self.graph.output.name}
        for node in reversed(self.graph.nodes):
            if node.name in need:
                need.update(node.inputs)
        return need

    def compose(self, *, keep: tuple[str, ...] = (), method: ComposeMethod = "adjoint",
                max_rows: int | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        r"""Reverse accumulation: :math:`A = \partial f/\partial x`, :math:`c = \sum_v R_v b_v`.

        Starting from :math:`R_{\text{out}} = I_k`, each node :math:`v = \sum_u M_{v,u} v_u + b_v`
        passes :math:`R_v M_{v,u}` to its inputs and adds :math:`R_v b_v` to :math:`c`; at the
        input :math:`R_x = A`. The two methods do the same arithmetic on the same operators:

        * ``"adjoint"`` (default): :math:`R_v M_{v,u}` is the transpose action of the layer applied
          to a batch of rows in torch, from the weights and the masks — ``rows @ W`` (Linear),
          :func:`conv_adjoint` (a transposed convolution), the BatchNorm scale, the mask of
          :math:`s^l_i` (PHT/ReLU), :func:`maxpool_adjoint` (scatter by the recorded argmax),
          :func:`pool_adjoint`; no matrix :math:`M` is formed. The rows are processed in blocks
          of at most ``max_rows`` so that the dense adjoints stay within about 1 GiB.
        * ``"sparse"``: the explicit matrices of :meth:`operator` (scipy CSR), multiplied in
          numpy; slower (scipy's sparse products are single-threaded), kept as an independent
          cross-check of the adjoint actions.

        Parameters
        ----------
        keep : names of nodes whose adjoints to return.
        method : {"adjoint", "sparse"}
        max_rows : int or None
            Output rows per block (``"adjoint"`` only); None sizes the blocks by memory.

        Returns
        -------
        A : ndarray of shape (k, d)
        c : ndarray of shape (k,)
        R : dict of the adjoints :math:`R_v = \partial f / \partial v` (shape (k, numel_v)) of
            the nodes named in ``keep`` (those the output depends on).
        """
        out = self.graph.output
        if len(out.inputs) != 1 or out.inputs[0] not in self.numel:
            raise UnsupportedModuleError("the model must return a single tensor to be linearized.")
        if method == "adjoint":
            if max_rows is not None and (isinstance(max_rows, bool) or not isinstance(max_rows, int)
                                         or max_rows < 1):
                raise ValueError(f"max_rows must be a positive int or None; got max_rows={max_rows!r}.")
            return self._compose_adjoint(tuple(keep), max_rows)
        if method == "sparse":
            return self._compose_sparse(tuple(keep))
        raise ValueError(f"method must be 'adjoint' or 'sparse'; got method={method!r}.")

    def _compose_sparse(self, keep: tuple[str, ...]):
        out = self.graph.output
        k = self.numel[out.inputs[0]]
        R: dict[str, np.ndarray] = {out.inputs[0]: np.eye(k)}
        c = np.zeros(k)
        kept: dict[str, np.ndarray] = {}
        A = None
        for node in reversed(self.graph.nodes[:-1]):
            Rn = R.pop(node.name, None)
            if Rn is None:
                continue
            if node.name in keep:
                kept[node.name] = Rn
            if node.kind == "input":
                A = Rn
                continue
            ops, b = self.operator(node.name)
            if b is not None:
                c += Rn @ b
            for u, M in ops:
                if M is None:
                    contrib = Rn
                elif sp.issparse(M):
                    contrib = np.asarray((M.T @ Rn.T).T)
                else:
                    contrib = Rn @ M
                R[u] = R[u] + contrib if u in R else contrib
        if A is None:  # the output does not depend on the input
            A = np.zeros((k, self.numel[self.graph.nodes[0].name]))
        return A, c, kept

    # -- the adjoint (transpose) actions, in torch -------------------------------------------
    def _device(self) -> torch.device:
        p = next(self.graph.model.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def _adjoint_prep(self, node: Node, dev: torch.device):
        """What the transpose action of ``node`` needs, as float64 tensors on ``dev`` (built once)."""
        kind = node.kind
        f64 = dict(dtype=torch.float64, device=dev)
        if kind == "act":
            b = self._act_bias(node)
            return (torch.from_numpy(self._act_diagonal(node)).to(**f64),
                    None if b is None else torch.from_numpy(b).to(**f64))
        if kind == "cat":
            return self._cat_blocks(node)
        if kind == "maxpool":
            return torch.from_numpy(self._maxpool_indices(node)).to(device=dev)
        if kind == "bn":
            scale, shift = self._bn_affine(node)
            return torch.from_numpy(scale).to(**f64), torch.from_numpy(shift).to(**f64)
        if kind in ("linear", "conv"):
            mod = node.module
            b = None if mod.bias is None else mod.bias.detach().to(**f64)
            return mod.weight.detach().to(**f64), b
        return None

    def _adjoint_step(self, node: Node, Rn: torch.Tensor, prep, c: torch.Tensor):
        """``[(input, R_v M_{v,u}), ...]`` for rows ``Rn`` of shape (rows, *shape_v); adds R_v b_v to c."""
        kind = node.kind
        rows = Rn.shape[0]
        in_shape = self.shapes.get(node.inputs[0]) if node.inputs else None
        if kind in ("reshape", "identity"):
            if self.numel[node.inputs[0]] != self.numel[node.name]:
                self._build(node)  # raises the explanation
            return [(node.inputs[0], Rn.reshape(rows, *in_shape))]
        if kind == "add":
            a, b = node.inputs
            if self.shapes[a] != self.shapes[b]:
                self._build(node)  # raises the explanation
            return [(a, Rn), (b, Rn)]
        if kind == "act":
            diag, b = prep
            if b is not None:
                c += Rn.reshape(rows, -1) @ b.reshape(-1)
            return [(node.inputs[0], Rn * diag)]
        if kind == "cat":
            axis, sizes = prep
            parts = Rn.split(sizes, dim=axis)
            return [(u, part.reshape(rows, *self.shapes[u])) for u, part in zip(node.inputs, parts)]
        if kind == "maxpool":
            return [(node.inputs[0], maxpool_adjoint(prep, Rn, tuple(in_shape)))]
        if kind == "linear":
            W, b = prep
            if b is not None:
                c += Rn.reshape(rows, -1, W.shape[0]).sum(1) @ b
            return [(node.inputs[0], Rn @ W)]
        if kind == "conv":
            if len(in_shape) != 3:
                raise UnsupportedModuleError(f"Conv2d {node.path!r} expects (C, H, W) inputs; got {in_shape}.")
            W, b = prep
            if b is not None:
                c += Rn.sum((2, 3)) @ b
            return [(node.inputs[0], conv_adjoint(node.module, Rn, tuple(in_shape)))]
        if kind == "bn":
            scale, shift = prep
            C = scale.shape[0]
            c += Rn.reshape(rows, C, -1).sum(2) @ shift
            view = (1, C) + (1,) * (len(in_shape) - 1)
            return [(node.inputs[0], Rn * scale.view(view))]
        if kind in ("avgpool", "adaptiveavgpool"):
            return [(node.inputs[0], pool_adjoint(node.module, Rn, tuple(in_shape)))]
        self._unsupported(node)

    def _compose_adjoint(self, keep: tuple[str, ...], max_rows: int | None):
        out = self.graph.output
        first = out.inputs[0]
        k = self.numel[first]
        d = self.numel[self.graph.nodes[0].name]
        need = self._needed()
        nodes = [n for n in reversed(self.graph.nodes[:-1]) if n.name in need]
        if max_rows is None:
            widest = max(self.numel[n.name] for n in nodes if n.name in self.numel)
            # about three live adjoints per row (a residual block holds two branches)
            max_rows = max(1, int(_ADJOINT_BUDGET_BYTES // (3 * 8 * widest)))
        dev = self._device()
        prep = {n.name: self._adjoint_prep(n, dev) for n in nodes}
        A = np.zeros((k, d))
        c = np.zeros(k)
        kept = {v: np.zeros((k, self.numel[v])) for v in keep if v in need and v in self.numel}
        for r0 in range(0, k, max_rows):
            r1 = min(k, r0 + max_rows)
            rows = r1 - r0
            cb = torch.zeros(rows, dtype=torch.float64, device=dev)
            eye = torch.zeros(rows, k, dtype=torch.float64, device=dev)  # rows r0..r1-1 of I_k
            eye[torch.arange(rows, device=dev), torch.arange(r0, r1, device=dev)] = 1.0
            R: dict[str, torch.Tensor] = {first: eye.reshape(rows, *self.shapes[first])}
            del eye
            for node in nodes:
                Rn = R.pop(node.name, None)
                if Rn is None:
                    continue
                if node.name in kept:
                    kept[node.name][r0:r1] = Rn.reshape(rows, -1).cpu().numpy()
                if node.kind == "input":
                    A[r0:r1] = Rn.reshape(rows, -1).cpu().numpy()
                    continue
                for u, contrib in self._adjoint_step(node, Rn, prep[node.name], cb):
                    R[u] = R[u] + contrib if u in R else contrib
                del Rn
            c[r0:r1] = cb.cpu().numpy()
        return A, c, kept


def linearize(model: nn.Module, support: MultiLayerSupport, i: int) -> tuple[np.ndarray, np.ndarray]:
    r"""The affine map of ``model`` on the support of sample ``i``: :math:`f(x_i) = A x_i + c`.

    :math:`A = W_L D^{L-1}_i \cdots D^1_i W_1` is built layer by layer from the weights and the
    masks (never by autograd). THEOREM (C1): when the support is the one the model produces on
    :math:`x_i`, ``model(x_i) == A @ x_i.ravel() + c`` and ``A`` is the Jacobian
    :math:`\partial f / \partial x` at :math:`x_i`; numerical check: relative error <= 1e-10 in
    float64 (tests/test_c1_linearization.py, tests/test_operators.py).

    Cost: one reverse pass over the network on the k output rows — the arithmetic of
    ``torch.func.jacrev``, written out from the weights and the masks (transposed convolutions,
    masks, pooling adjoints; :meth:`Linearization.compose`) — plus one trace of the model and one
    forward pass on zeros for the shapes. Memory: the dense adjoints of one block of rows.

    Parameters
    ----------
    model : nn.Module
        Linear, Conv2d, BatchNorm (eval), AvgPool2d, AdaptiveAvgPool2d, MaxPool2d, Flatten,
        residual additions (torchvision BasicBlock/Bottleneck), ``torch.cat``/``torch.stack``
        (DenseNet), functional forms of these in ``forward``, and every piecewise-linear
        activation: ReLU, PHT, LeakyReLU, PReLU, ReLU6 (mobilenet_v2), Hardtanh
        (:data:`altheory.nets.graph.SUPPORTED`).
    support : MultiLayerSupport
        From :func:`altheory.support` on this model.
    i : int
        Which sample's support to use.

    Returns
    -------
    A : ndarray of shape (k, d), k = output entries per sample, d = input entries per sample.
    c : ndarray of shape (k,)

    Raises
    ------
    UnsupportedModuleError
        A module without an explicit operator; the message names its type and path.
    ValueError
        A support from another model, an index out of range, BatchNorm in training mode.

    Examples
    --------
    >>> from altheory import PHT, support
    >>> net = nn.Sequential(nn.Linear(3, 5), PHT(tau=0.1), nn.Linear(5, 2)).double()
    >>> x = torch.randn(4, 3, dtype=torch.float64)
    >>> A, c = linearize(net, support(net, x), 0)
    >>> bool(np.allclose(A @ x[0].numpy() + c, net(x)[0].detach().numpy()))
    True
    """
    A, c, _ = Linearization(model, support, i).compose()
    return A, c


def layer_operator(model: nn.Module, support: MultiLayerSupport, layer: str | int, X,
                   *, include_bias: bool = True, same_batch: bool = True) -> tuple[np.ndarray, np.ndarray]:
    r"""Design matrix of one layer: :math:`f_S(x_i) = \Phi_i \theta_l + o_i` for every sample.

    With the support and every other layer fixed, the output is affine in
    :math:`\theta_l = (\mathrm{vec}(W_l), b_l)` (docs/claims.md C3). The layers are the Linear
    and Conv2d modules; a PReLU's slope is held fixed like the support (a constant of
    :math:`f_S`, read from the model), and Hardtanh/ReLU6 constants enter the offset. For a dense layer
    :math:`\Phi_i = R_i (I \otimes a_i^\top)`, for a convolution :math:`\Phi_i = R_i J(a_i)` with
    :math:`J` the im2col matrix of its input, where :math:`a_i` is the layer's (gated) input and
    :math:`R_i = \partial f_S / \partial z^l` the downstream operator.

    Parameters
    ----------
    model : nn.Module
    support : MultiLayerSupport, computed on a batch of ``n`` samples.
    layer : str (module path, e.g. ``"fc"`` or ``"2"``) or int (index among Linear/Conv2d layers
        in execution order).
    X : Tensor or ndarray of shape (n, ...), the inputs the support belongs to (sample ``i`` of
        ``X`` uses the support of sample ``i``).
    include_bias : bool, default True
        Append the bias (if the layer has one) to :math:`\theta_l`.
    same_batch : bool, default True
        Require ``X`` to be the very batch the support was computed on (checked by a hash);
        pass False to apply a support to other inputs of the same shape on purpose.

    Returns
    -------
    Phi : ndarray of shape (n*k, p), rows ordered sample-major (sample 0's k outputs first).
    offset : ndarray of shape (n*k,)
        So that ``gated_forward(model, S, X).reshape(-1) == Phi @ theta + offset`` with
        ``theta = concat(W.ravel(), b)``.

    Examples
    --------
    >>> from altheory import PHT, support
    >>> net = nn.Sequential(nn.Linear(3, 5), PHT(), nn.Linear(5, 2)).double()
    >>> X = torch.randn(4, 3, dtype=torch.float64)
    >>> Phi, o = layer_operator(net, support(net, X), "0", X)
    >>> theta = torch.cat([net[0].weight.ravel(), net[0].bias]).detach().numpy()
    >>> bool(np.allclose(Phi @ theta + o, net(X).detach().numpy().ravel()))
    True
    """
    graph = trace(model)
    check_support_for(graph, support, "layer_operator")
    if not isinstance(X, torch.Tensor):
        Xa = np.asarray(X)
        if not np.issubdtype(Xa.dtype, np.number) or np.issubdtype(Xa.dtype, np.complexfloating):
            raise TypeError(f"layer_operator: X must be a real tensor or array of inputs; got "
                            f"{type(X).__name__} of dtype {Xa.dtype}. Pass the batch the support "
                            "was computed on.")
        X = Xa
    Xt = torch.as_tensor(X)
    if Xt.ndim < 2 or Xt.shape[0] != support.n or tuple(Xt.shape[1:]) != support.input_shape:
        raise ValueError(f"layer_operator: X has shape {tuple(Xt.shape)}; expected the batch the "
                         f"support was computed on, of shape {(support.n, *support.input_shape)}.")
    if same_batch and support.input_digest not in ("subset", _digest(Xt)):
        raise ValueError("layer_operator: X is not the batch the support was computed on (same shape "
                         f"{tuple(Xt.shape)}, different values). Recompute support(model, X), or pass "
                         "same_batch=False to apply this support to other inputs on purpose.")
    node = _find_layer(graph, layer)
    mod = node.module
    theta = [_np(mod.weight).ravel()]
    if include_bias and mod.bias is not None:
        theta.append(_np(mod.bias))
    theta = np.concatenate(theta)
    Xn = Xt.detach().cpu().to(torch.float64).numpy().reshape(support.n, -1)
    rows, offs = [], []
    for i in range(support.n):
        lin = Linearization(model, support, i, graph=graph)
        A, c, kept = lin.compose(keep=(node.name,))
        a = lin.forward(Xn[i])[node.inputs[0]]
        J = _weight_jacobian(node, lin, a, include_bias)
        Rl = kept.get(node.name)
        if Rl is None:
            Phi_i = np.zeros((A.shape[0], theta.size))
        else:
            Phi_i = np.asarray((J.T @ Rl.T).T)
        rows.append(Phi_i)
        offs.append(A @ Xn[i] + c - Phi_i @ theta)
    return np.vstack(rows), np.concatenate(offs)


def _find_layer(graph: Graph, layer: str | int) -> Node:
    params = graph.parametric()
    if isinstance(layer, bool) or not isinstance(layer, (str, int, np.integer)):
        raise TypeError(f"layer must be a module path (str) or an index (int); got {type(layer).__name__}.")
    if isinstance(layer, (int, np.integer)):
        if not -len(params) <= layer < len(params):
            raise ValueError(f"layer index {layer} out of range: the model has {len(params)} "
                             f"Linear/Conv2d layers {[p.path for p in params]}.")
        return params[layer]
    matches = [p for p in params if p.path == layer]
    if not matches:
        raise ValueError(f"no Linear/Conv2d layer at path {layer!r}; layers are {[p.path for p in params]}.")
    if len(matches) > 1:
        raise ValueError(f"layer {layer!r} is applied {len(matches)} times (shared weights): the "
                         "output is then not linear in its weights.")
    return matches[0]


def _weight_jacobian(node: Node, lin: Linearization, a: np.ndarray, include_bias: bool) -> sp.csr_matrix:
    """Sparse d z^l / d theta_l at layer input ``a`` (flat)."""
    mod = node.module
    out_shape = lin.shapes[node.name]
    n_out = int(np.prod(out_shape))
    if node.kind == "linear":
        out_f, in_f = mod.weight.shape
        reps = n_out // out_f
        A2 = a.reshape(reps, in_f)
        r = np.arange(n_out)
        rows = np.repeat(r, in_f)
        cols = (np.repeat(r % out_f, in_f) * in_f + np.tile(np.arange(in_f), n_out))
        vals = A2[np.repeat(r // out_f, in_f), np.tile(np.arange(in_f), n_out)]
        J = sp.csr_matrix((vals, (rows, cols)), shape=(n_out, out_f * in_f))
        chan = r % out_f
    else:
        in_shape = tuple(lin.shapes[node.inputs[0]])
        pad = _conv_padding(mod, in_shape[1:])
        rows, cols_in, cols_w = _conv_indices(in_shape, tuple(out_shape[1:]), tuple(mod.weight.shape),
                                              mod.groups, _pair(mod.stride), pad, _pair(mod.dilation))
        J = sp.csr_matrix((a[cols_in], (rows, cols_w)), shape=(n_out, mod.weight.numel()))
        chan = np.arange(n_out) // int(np.prod(out_shape[1:]))
    if include_bias and mod.bias is not None:
        Jb = sp.csr_matrix((np.ones(n_out), (np.arange(n_out), chan)), shape=(n_out, mod.bias.numel()))
        J = sp.hstack([J, Jb], format="csr")
    return J
