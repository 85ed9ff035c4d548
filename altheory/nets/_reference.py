r"""Slow, obviously correct versions of the fast code, for the tests to compare against.

Nothing here is fast or clever: each function follows its definition literally.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from altheory.nets.support import MultiLayerSupport, gated_forward


def pht_reference(z: np.ndarray, tau: float) -> np.ndarray:
    """:math:`z \\odot 1[z > \\tau]`, one entry at a time."""
    flat = [v if v > tau else 0.0 for v in np.asarray(z, dtype=np.float64).ravel()]
    return np.array(flat, dtype=np.float64).reshape(np.shape(z))


def topk_reference(z: np.ndarray, k: int) -> np.ndarray:
    """Top-k mask of a 1-D array: sort positive entries by (value desc, index asc), keep k."""
    z = np.asarray(z, dtype=np.float64)
    order = sorted((i for i in range(z.size) if z[i] > 0), key=lambda i: (-z[i], i))
    s = np.zeros(z.size, dtype=bool)
    s[order[:k]] = True
    return s


def module_operator_reference(module: nn.Module, in_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Dense matrix and bias of an affine module, column by column: ``M[:, j] = m(e_j) - m(0)``."""
    d = int(np.prod(in_shape))
    with torch.no_grad():
        zero = module(torch.zeros((1, *in_shape), dtype=torch.float64)).reshape(-1).numpy()
        basis = torch.eye(d, dtype=torch.float64).reshape(d, *in_shape)
        cols = module(basis).reshape(d, -1).numpy() - zero
    return cols.T.copy(), zero


def linearize_reference(model: nn.Module, S: MultiLayerSupport, i: int) -> tuple[np.ndarray, np.ndarray]:
    """``A[:, j] = f_S(e_j) - f_S(0)``, ``c = f_S(0)``: the gated network on basis vectors."""
    d = int(np.prod(S.input_shape))
    sub = S.subset([i] * (d + 1))
    with torch.no_grad():
        basis = torch.cat([torch.zeros((1, d), dtype=torch.float64), torch.eye(d, dtype=torch.float64)])
        out = gated_forward(model, sub, basis.reshape(d + 1, *S.input_shape)).reshape(d + 1, -1).numpy()
    c = out[0]
    return (out[1:] - c).T.copy(), c


def maxpool_operator_reference(indices: np.ndarray, in_shape: tuple[int, int, int]) -> np.ndarray:
    """Dense 0/1 matrix of a max pooling with recorded argmax ``indices`` (C, H_out, W_out).

    Row ``(c, o)`` has a single 1, at column ``c*H*W + indices[c, o]``; built one entry at a time.
    """
    C, H, W = in_shape
    flat = np.asarray(indices).reshape(C, -1)
    M = np.zeros((flat.size, C * H * W))
    row = 0
    for c in range(C):
        for o in range(flat.shape[1]):
            M[row, c * H * W + int(flat[c, o])] = 1.0
            row += 1
    return M


def adjoint_reference(M: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Rows times a layer's dense matrix, :math:`R M`, one row at a time (what the adjoint actions
    of :mod:`altheory.nets.operators` compute without forming ``M``)."""
    R = np.asarray(R, dtype=np.float64).reshape(R.shape[0], -1)
    return np.stack([M.T @ r for r in R]) if R.shape[0] else np.zeros((0, M.shape[1]))


def piecewise_reference(z: np.ndarray, kind: str, *, slope: float = 0.0, lo: float = 0.0,
                        hi: float = 6.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A piecewise-linear activation one entry at a time: ``(value, derivative, state)``.

    ``kind="leaky"``: ``z`` if ``z > 0`` else ``slope * z`` (state 1 / 0); ``kind="clamp"``
    (Hardtanh(lo, hi), ReLU6 = clamp 0..6): ``lo`` if ``z <= lo`` (state 0), ``z`` if
    ``lo < z < hi`` (state 1), ``hi`` if ``z >= hi`` (state 2). The derivative is autograd's
    (1 only strictly inside the identity region).
    """
    zf = np.asarray(z, dtype=np.float64).ravel()
    val, der, state = [], [], []
    for v in zf:
        if kind == "leaky":
            on = v > 0
            val.append(v if on else slope * v)
            der.append(1.0 if on else slope)
            state.append(int(on))
        elif kind == "clamp":
            if v <= lo:
                val.append(lo), der.append(0.0), state.append(0)
            elif v >= hi:
                val.append(hi), der.append(0.0), state.append(2)
            else:
                val.append(v), der.append(1.0), state.append(1)
        else:
            raise ValueError(f"kind must be 'leaky' or 'clamp'; got {kind!r}.")
    shape = np.shape(z)
    return (np.array(val).reshape(shape), np.array(der).reshape(shape),
            np.array(state, dtype=np.int8).reshape(shape))


def cat_operator_reference(in_shapes: list[tuple[int, ...]], axis: int) -> list[np.ndarray]:
    """Dense 0/1 blocks of ``torch.cat`` along per-sample ``axis`` (0-based, batch excluded),
    column by column: block ``u`` maps input ``u``'s basis vector to its place in the output."""
    d = [int(np.prod(s)) for s in in_shapes]
    blocks = []
    for u, s in enumerate(in_shapes):
        cols = []
        for j in range(d[u]):
            parts = [torch.zeros((1, *t), dtype=torch.float64) for t in in_shapes]
            parts[u].view(-1)[j] = 1.0
            cols.append(torch.cat(parts, dim=axis + 1).reshape(-1).numpy())
        blocks.append(np.stack(cols, axis=1))
    return blocks
