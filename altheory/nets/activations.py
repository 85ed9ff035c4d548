r"""Positive hard thresholding (PHT), the non-linearity whose support makes a CNN linear.

Threshold form, :math:`\tau \ge 0`:

.. math::  \varphi_\tau(z) = z \odot \mathbb{1}[z > \tau]

:math:`\tau = 0` is exactly ReLU (bit for bit: ``z * (z > 0)`` and ``relu(z)`` agree on every
float, signed zeros aside, which compare equal). Unlike :math:`\mathrm{ReLU}(z - \tau)`, PHT keeps
the value :math:`z` above the threshold, so it jumps by :math:`\tau` there.

Top-k form: :math:`\varphi_k(z)` keeps the :math:`k` largest *strictly positive* entries of
:math:`z` along ``dim`` and zeroes the rest; ties are broken deterministically by index (the
lower index wins), so the kept set is a function of :math:`z` alone.

Both forms are available as functions on numpy arrays and torch tensors (:func:`pht`,
:func:`pht_topk`, :func:`pht_mask`, :func:`topk_mask`) and as a torch module (:class:`PHT`).
:func:`replace_relu` swaps every ``nn.ReLU`` of a model for a :class:`PHT`.
"""

from __future__ import annotations

import copy
from typing import overload

import numpy as np
import torch
from torch import nn

__all__ = ["select", "pht", "pht_mask", "pht_topk", "topk_mask", "PHT", "replace_relu"]


def select(z, s):
    r"""Apply the support ``s`` to ``z``: ``z`` where ``s``, else zero.

    Matches ``relu`` bit for bit at ``tau = 0``: a signed zero keeps its sign and NaN propagates,
    as in ``torch.relu``. Works for numpy arrays and torch tensors (differentiable in ``z``, with
    derivative ``s``: zero at ``z = 0`` too, as relu's).
    """
    if isinstance(z, torch.Tensor):
        # signed zeros pass through detached, so the derivative is the mask 1[z > tau] everywhere
        zero = torch.where(z == 0, z.detach(), torch.zeros((), dtype=z.dtype, device=z.device))
        return torch.where(s | torch.isnan(z), z, zero)
    z = np.asarray(z)
    keep = s | (z == 0) | np.isnan(z)
    return np.where(keep, z, np.zeros((), dtype=z.dtype))


def _check_tau(tau: float) -> float:
    if isinstance(tau, bool) or not isinstance(tau, (int, float, np.floating, np.integer)):
        raise TypeError(f"tau must be a real number; got {type(tau).__name__}. Use tau=0.0 for ReLU.")
    tau = float(tau)
    if not np.isfinite(tau) or tau < 0:
        raise ValueError(f"tau must be a finite number >= 0; got tau={tau}. Use tau=0 for ReLU.")
    return tau


def _check_k(k: int) -> int:
    """``k`` is the number of entries kept: a positive int. The threshold form is ``k=None``."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an int >= 1 (entries kept); got {type(k).__name__}. Use "
                        "k=None (PHT's default) for the threshold form.")
    if k < 1:
        raise ValueError(f"k must be >= 1 (entries kept); got k={k}. Use k=None for the threshold "
                         "form (PHT(tau=...)); top-k with k=0 would zero every entry.")
    return int(k)


def _check_dim(dim, ndim: int, shape) -> int:
    """``dim`` as a non-negative axis of a tensor with ``ndim`` dimensions."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"dim must be an int; got {type(dim).__name__}.")
    if not -ndim <= dim < ndim:
        raise ValueError(f"dim is out of range for a tensor of shape {tuple(shape)}: expected "
                         f"{-ndim} <= dim < {ndim}; got dim={dim}. Use dim=1 for features (n, h) "
                         "or channels (n, C, H, W).")
    return int(dim) % ndim


def _check_z(z):
    """``z`` as a tensor, or as a numeric (bool, int or float) numpy array."""
    if isinstance(z, torch.Tensor):
        return z
    if z is None or isinstance(z, (str, bytes, dict)):
        raise TypeError(f"z must be a numpy array or a torch.Tensor of numbers; got "
                        f"{type(z).__name__}.")
    arr = np.asarray(z)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"z must be a numpy array or a torch.Tensor of numbers; got dtype "
                        f"{arr.dtype}. Convert it with np.asarray(z, dtype=float).")
    return arr


def pht_mask(z, tau: float = 0.0):
    r"""Support of the threshold form, :math:`s = \mathbb{1}[z > \tau]`.

    Parameters
    ----------
    z : ndarray or Tensor of any shape
    tau : float, default 0.0
        Threshold, ``>= 0``.

    Returns
    -------
    s : boolean ndarray or Tensor of the shape of ``z``

    Examples
    --------
    >>> pht_mask(np.array([-1.0, 0.0, 0.5, 2.0]), tau=0.5).tolist()
    [False, False, False, True]
    """
    tau = _check_tau(tau)
    return _check_z(z) > tau


@overload
def pht(z: np.ndarray, tau: float = 0.0) -> np.ndarray: ...
@overload
def pht(z: torch.Tensor, tau: float = 0.0) -> torch.Tensor: ...


def pht(z, tau=0.0):
    r"""Positive hard thresholding, :math:`\varphi_\tau(z) = z \odot \mathbb{1}[z > \tau]`.

    Parameters
    ----------
    z : ndarray or Tensor of any shape
    tau : float, default 0.0
        Threshold, ``>= 0``; ``tau=0`` is ReLU.

    Returns
    -------
    ndarray or Tensor of the shape and dtype of ``z``.

    Examples
    --------
    >>> pht(np.array([-1.0, 0.3, 0.5, 2.0]), tau=0.4).tolist()
    [0.0, 0.0, 0.5, 2.0]
    """
    return select(z, pht_mask(z, tau))  # pht_mask checks z and tau


def topk_mask(z, k: int, dim: int = -1):
    r"""Support of the top-k form: the ``k`` largest strictly positive entries along ``dim``.

    Ties are broken by index: among equal values the lower index is kept. A slice with fewer
    than ``k`` positive entries keeps all of its positive entries.

    Parameters
    ----------
    z : ndarray or Tensor
    k : int
        Entries kept per slice, ``1 <= k <= z.shape[dim]``. ``k`` always means "entries kept":
        the threshold form is ``k=None`` in :class:`PHT`, never ``k=0``.
    dim : int, default -1
        The axis along which the ``k`` entries compete (features for an MLP; channels, ``dim=1``,
        for "per spatial position" in a CNN; flatten first for "per sample").

    Returns
    -------
    s : boolean array of the shape of ``z``

    Raises
    ------
    TypeError
        ``k`` or ``dim`` is not an int, ``z`` is not numeric.
    ValueError
        ``k < 1``; ``dim`` out of range for ``z``; ``k`` larger than ``z.shape[dim]`` (top-k
        would then keep every positive entry, i.e. act as ReLU: use ``PHT(tau=0)`` for that).

    Examples
    --------
    >>> topk_mask(np.array([[3.0, 1.0, 3.0, -2.0]]), k=2).tolist()
    [[True, False, True, False]]
    """
    k = _check_k(k)
    z = _check_z(z)
    is_torch = isinstance(z, torch.Tensor)
    if np.ndim(z) == 0:
        raise ValueError("topk_mask needs at least one dimension; got a scalar.")
    t = z if is_torch else torch.from_numpy(np.array(z, copy=True))
    dim = _check_dim(dim, t.ndim, t.shape)
    size = t.shape[dim]
    if k > size:
        raise ValueError(f"k={k} is larger than the {size} entries along dim={dim} of a tensor of "
                         f"shape {tuple(t.shape)}: top-k would keep every positive entry (ReLU). "
                         f"Use k <= {size}, or PHT(tau=0) for ReLU.")
    if k == size:
        s = t > 0
    else:
        # Stable descending sort: equal values keep index order, so the lower index wins.
        order = torch.sort(t, dim=dim, descending=True, stable=True).indices
        rank = torch.empty_like(order)
        ar = torch.arange(size, device=t.device).view([-1 if i == dim else 1 for i in range(t.ndim)])
        rank.scatter_(dim, order, ar.expand_as(order))
        s = (rank < k) & (t > 0)
    return s if is_torch else s.numpy()


def pht_topk(z, k: int, dim: int = -1):
    r"""Top-k positive hard thresholding: keep the ``k`` largest positive entries along ``dim``.

    .. math:: \varphi_k(z) = z \odot s,\quad s = \text{topk\_mask}(z, k)

    Examples
    --------
    >>> pht_topk(np.array([0.5, -1.0, 2.0, 1.0]), k=2).tolist()
    [0.0, 0.0, 2.0, 1.0]
    """
    return select(z, topk_mask(z, k, dim))


class PHT(nn.Module):
    r"""Positive hard thresholding as a torch module.

    ``PHT(tau=0.1)`` is the threshold form :math:`z \odot 1[z > \tau]`; ``PHT(k=8, dim=1)`` the
    top-k form. The gradient flows through the kept entries (the mask is treated as constant,
    which is the derivative almost everywhere).

    Parameters
    ----------
    tau : float, default 0.0
        Threshold of the threshold form. The top-k form has none: a non-zero ``tau`` with ``k``
        is refused (it used to be ignored silently).
    k : int >= 1 or None
        Top-k form when given: the number of entries kept, at most the width along ``dim``
        (checked on every call). ``None`` (the default) is the threshold form; ``k=0`` is an
        error, not a synonym for it.
    dim : int, default 1
        Axis of the top-k competition: ``1`` is per sample for ``(n, h)`` activations and per
        spatial position (across channels) for ``(n, C, H, W)`` ones.

    Examples
    --------
    >>> PHT(tau=0.5)(torch.tensor([0.2, 0.7])).tolist()
    [0.0, 0.699999988079071]
    """

    def __init__(self, tau: float = 0.0, *, k: int | None = None, dim: int = 1):
        super().__init__()
        self.tau = _check_tau(tau)
        self.k = None if k is None else _check_k(k)
        if self.k is not None and self.tau != 0.0:
            raise ValueError(f"PHT takes a threshold tau or a top-k count k, not both; got "
                             f"tau={tau!r}, k={k!r}. The top-k form keeps the k largest positive "
                             f"entries and has no threshold: drop tau, or k for the threshold form.")
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise TypeError(f"dim must be an int; got {type(dim).__name__}.")
        self.dim = dim

    def mask(self, z: torch.Tensor) -> torch.Tensor:
        """The support ``s`` of this activation for pre-activation ``z`` (boolean, shape of z)."""
        if self.k is not None:
            return topk_mask(z, self.k, self.dim)
        return z > self.tau

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.k is not None:
            return select(z, self.mask(z))
        # One fused kernel each (and its fused backward): relu is PHT at tau = 0 bit for bit, and
        # F.threshold(z, tau, 0) is z where z > tau, else 0 (a -0.0 below tau comes out +0.0).
        if self.tau == 0.0:
            return torch.nn.functional.relu(z)
        return torch.nn.functional.threshold(z, self.tau, 0.0)

    def extra_repr(self) -> str:
        return f"k={self.k}, dim={self.dim}" if self.k is not None else f"tau={self.tau}"


def replace_relu(model: nn.Module, tau: float = 0.0, *, k: int | None = None, dim: int = 1,
                 inplace: bool = False, relu6: bool = False) -> nn.Module:
    r"""Swap every ``nn.ReLU`` of ``model`` for :class:`PHT` (threshold ``tau`` or top-``k``).

    Works on any model whose ReLUs are modules (every torchvision classifier, ``nn.Sequential``
    stacks). Functional ``F.relu`` calls inside ``forward`` are not modules and are left alone;
    :func:`altheory.support` still records them as ReLU (``tau=0``) supports.

    ``nn.ReLU6`` (mobilenet_v2's activation), ``nn.LeakyReLU``, ``nn.PReLU`` and ``nn.Hardtanh``
    are left alone by default: they are not ReLUs (ReLU6 caps at 6, a third state), and altheory
    represents each of them exactly as it is (three-state and sloped supports,
    :mod:`altheory.nets.graph`). ``relu6=True`` swaps ReLU6 modules for PHT as well, dropping
    the cap — the "PHT mobilenet_v2" of claim C1's thorough profile.

    Parameters
    ----------
    model : nn.Module
    tau, k, dim : see :class:`PHT`
    inplace : bool, default False
        Modify ``model`` itself; otherwise a deep copy is modified and returned.
    relu6 : bool, default False
        Replace ``nn.ReLU6`` modules too (by default they are kept, cap included).

    Returns
    -------
    nn.Module with the same parameters (copied unless ``inplace``).

    Examples
    --------
    >>> net = replace_relu(nn.Sequential(nn.Linear(2, 3), nn.ReLU()), tau=0.1)
    >>> net[1]
    PHT(tau=0.1)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}.")
    PHT(tau, k=k, dim=dim)  # validate the arguments even when the model holds no ReLU
    if not isinstance(relu6, bool):
        raise TypeError(f"relu6 must be a bool; got {type(relu6).__name__}.")
    if not inplace:
        model = copy.deepcopy(model)
    for name, child in list(model.named_children()):
        if isinstance(child, nn.ReLU) or (relu6 and isinstance(child, nn.ReLU6)):
            setattr(model, name, PHT(tau, k=k, dim=dim))
        else:
            replace_relu(child, tau, k=k, dim=dim, inplace=True, relu6=relu6)
    return model
