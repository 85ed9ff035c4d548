r"""Training methods: where the support :math:`S` of each step comes from.

With the support held, the network is the gated network of docs/claims.md,

.. math:: f_S(x; W) = W_L D^{L-1}(x) W_{L-1} \cdots D^1(x) W_1 x + \text{bias terms},

linear in its input and, with the other layers fixed, in each layer's weights (C1, C3), so the
loss of a step is convex in every single layer.

``sgd``
    Ordinary training of the PHT network: every forward computes its own support
    :math:`S(W_t, x)` and the gradient flows through the kept entries (the mask is constant
    almost everywhere, so this is the exact gradient of the PHT loss a.e.).
``alt``
    Alternation at scale. A frozen *gate copy* :math:`W_g` of the weights computes the support
    :math:`S(W_g, x)` of every batch (a ``no_grad`` forward, the same step, the same batch); the
    trained network applies it as a fixed mask. The gate is refreshed (:math:`W_g \leftarrow W`)
    every ``alt_every`` optimizer steps (or once an epoch), so between refreshes the weights
    descend the fixed-support objective. With ``alt_every=1`` it is exactly ``sgd`` (tested).
``alt-inner``
    Per batch, the support of the current weights is computed once; then ``inner_steps`` weight
    steps are taken on that batch with the support held. The step budget counts optimizer steps
    for every method, so ``alt-inner`` sees ``1 / inner_steps`` as many batches.

Costs (honest, measured on one H200, bf16, batch 128, 224 px; ``paper_repro/README.md``): the
gate forward is one extra forward pass without autograd — 4.7 ms (5.5 ms recording its masks)
next to a 10.8 ms ResNet-18 ``sgd`` step, so an ``alt`` step costs 1.59x an ``sgd`` step eager
and 1.48x compiled (ResNet-50 eager: 1.67x), above the 1.4x target. The masks are kept as
``bool`` tensors from the gate forward to the backward (1 byte per activation entry; autograd of
the select keeps them instead of a 2-byte copy). ``alt-inner`` pays one gate forward per
``inner_steps`` steps: 1.21x (ResNet-18) and 1.26x (ResNet-50) at ``inner_steps=4``.
``gate_bn="folded"`` removes the normalisation kernels from the gate forward (not yet measured
on a GPU).

Batch norm (docs/claims.md, "Batch norm and the support"): the trained network is in training mode
(batch statistics). The gate uses ``gate_bn="batch"`` (its own batch statistics on the same batch:
the support is exactly the one the PHT network would have with the gate's weights) or
``"running"`` (its running statistics frozen at the refresh: a support that does not depend
on the batch, but differs from the training-mode one), or ``"folded"`` (the same support as
``"running"``, batch norm folded into the convolutions at each refresh: the cheapest gate).
"""

from __future__ import annotations

import contextlib
import copy
from typing import Iterator

import torch
from torch import nn

from altheory.nets.activations import PHT

__all__ = ["GatedPHT", "Gating", "wrap_activations"]


class GatedPHT(nn.Module):
    r"""A PHT (or ReLU) whose support can be recorded or imposed, in call order.

    Modes: ``"free"`` (the activation itself), ``"record"`` (the activation, and its mask
    :math:`\mathbb{1}[z > \tau]` appended to :attr:`masks`) and ``"apply"`` (:math:`z \odot s`
    with ``s`` the next recorded mask, whatever ``z`` is). A module applied several times in one
    forward (torchvision's ``relu``) records and applies one mask per call, in order.

    Examples
    --------
    >>> g = GatedPHT(PHT(tau=0.5)); g.mode = "record"
    >>> g(torch.tensor([0.2, 0.7])).tolist(), g.masks[0].tolist()
    ([0.0, 0.699999988079071], [False, True])
    >>> g.mode = "apply"; g.reset_index(); g(torch.tensor([3.0, -1.0])).tolist()
    [0.0, -1.0]
    """

    def __init__(self, act: nn.Module):
        super().__init__()
        if not isinstance(act, (PHT, nn.ReLU)):
            raise TypeError(f"GatedPHT wraps a PHT or nn.ReLU; got {type(act).__name__}.")
        self.act = act
        self.mode = "free"
        self.masks: list[torch.Tensor] = []
        self._i = 0

    def mask(self, z: torch.Tensor) -> torch.Tensor:
        return self.act.mask(z) if isinstance(self.act, PHT) else z > 0

    def reset_index(self) -> None:
        self._i = 0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.mode == "free":
            return self.act(z)
        if self.mode == "record":  # the gate's forward (no autograd): its output and its support
            s = self.mask(z)
            self.masks.append(s)
            return torch.where(s, z, z.new_zeros(()))
        if self.mode == "apply":
            if self._i >= len(self.masks):
                raise RuntimeError(f"GatedPHT: call {self._i + 1} in this forward but only "
                                   f"{len(self.masks)} masks were recorded; the gate and the trained "
                                   "network must run the same graph.")
            s = self.masks[self._i]
            self._i += 1
            if s.shape != z.shape:
                raise RuntimeError(f"GatedPHT: recorded mask of shape {tuple(s.shape)} for an input of "
                                   f"shape {tuple(z.shape)}; gate and network got different batches.")
            # one fused select; autograd keeps the 1-byte mask (z * s.to(dtype) would keep a
            # 2-byte copy and launch two kernels)
            return torch.where(s, z, z.new_zeros(()))
        raise ValueError(f"GatedPHT.mode must be 'free', 'record' or 'apply'; got {self.mode!r}.")

    def extra_repr(self) -> str:
        return f"mode={self.mode}"


def wrap_activations(model: nn.Module) -> nn.Module:
    """Replace every PHT / nn.ReLU module of ``model`` (in place) by a :class:`GatedPHT` around it."""
    for name, child in list(model.named_children()):
        if isinstance(child, (PHT, nn.ReLU)):
            setattr(model, name, GatedPHT(child))
        elif not isinstance(child, GatedPHT):
            wrap_activations(child)
    return model


def _gated(model: nn.Module) -> list[GatedPHT]:
    return [m for m in model.modules() if isinstance(m, GatedPHT)]


def _bns(model: nn.Module) -> Iterator[nn.modules.batchnorm._BatchNorm]:
    return (m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))


def _conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(conv path, bn path) for every Conv2d registered right before a BatchNorm2d of its width
    in the same parent (conv1/bn1, downsample.0/downsample.1 in the ResNets of this trainer)."""
    pairs = []
    for pname, parent in model.named_modules():
        kids = list(parent.named_children())
        for (a, ca), (b, cb) in zip(kids, kids[1:]):
            if (isinstance(ca, nn.Conv2d) and isinstance(cb, nn.modules.batchnorm._BatchNorm)
                    and cb.num_features == ca.out_channels):
                pre = f"{pname}." if pname else ""
                pairs.append((pre + a, pre + b))
    return pairs


class Gating:
    r"""The gate copy of a model and the plumbing that imposes its support on the model.

    Parameters
    ----------
    model : nn.Module whose activations were wrapped by :func:`wrap_activations` (the bare
        module, not its DDP wrapper).
    gate_bn : ``"batch"``, ``"running"`` or ``"folded"`` (see the module docstring; ``"folded"``
        is ``"running"`` with each batch norm folded into the convolution before it at every
        refresh, so the gate's forward runs no normalisation kernels; checked against the
        unfolded eval-mode forward on the first batch).

    Examples
    --------
    >>> from altheory.train.models import build_model
    >>> net = wrap_activations(build_model("resnet8", num_classes=2, width=4, tau=0.1))
    >>> gating = Gating(net)
    >>> x = torch.randn(4, 3, 8, 8)
    >>> _ = gating.compute(x)                   # the gate's support on x, imposed on net
    >>> out = net(x); gating.check_consumed()
    >>> gating.release()                        # net computes its own support again
    """

    def __init__(self, model: nn.Module, gate_bn: str = "batch"):
        if gate_bn not in ("batch", "running", "folded"):
            raise ValueError(f"gate_bn must be 'batch', 'running' or 'folded'; got {gate_bn!r}.")
        self.model = model
        self.gate_bn = gate_bn
        self.gate = copy.deepcopy(model)
        for p in self.gate.parameters():
            p.requires_grad_(False)
        if gate_bn == "batch":
            for bn in _bns(self.gate):  # batch statistics always, and no running-stat updates
                bn.track_running_stats = False
                bn.running_mean = None
                bn.running_var = None
                bn.num_batches_tracked = None
            self.gate.train()
        elif gate_bn == "running":
            self.gate.eval()
        else:
            self._fold_init()
        self._gate_call = self.gate
        self._fresh = False
        self.model_acts = _gated(model)
        self.gate_acts = _gated(self.gate)
        if not self.model_acts:
            raise ValueError("Gating: the model has no wrapped activations; call wrap_activations(model) first.")
        self.refreshes = 0

    def compile(self, **kwargs) -> "Gating":
        """Run the gate's forward through ``torch.compile`` (as the trained model's is, when compiled)."""
        self._gate_call = torch.compile(self.gate, **kwargs)
        return self

    def _fold_init(self) -> None:
        self.pairs = _conv_bn_pairs(self.model)
        if not self.pairs:
            raise ValueError("gate_bn='folded': no Conv2d followed by a BatchNorm2d found; use 'running'.")
        gmods = dict(self.gate.named_modules())
        for conv_path, bn_path in self.pairs:
            conv = gmods[conv_path]
            if conv.bias is None:
                conv.bias = nn.Parameter(torch.zeros(conv.out_channels, dtype=conv.weight.dtype,
                                                     device=conv.weight.device), requires_grad=False)
            parent, _, name = bn_path.rpartition(".")
            setattr(gmods[parent] if parent else self.gate, name, nn.Identity())
        self.gate.eval()
        self._verified = self._fresh = False

    @torch.no_grad()
    def _fold_refresh(self) -> None:
        mmods, gmods = dict(self.model.named_modules()), dict(self.gate.named_modules())
        folded = set()
        for conv_path, bn_path in self.pairs:
            conv, bn, g = mmods[conv_path], mmods[bn_path], gmods[conv_path]
            scale = torch.rsqrt(bn.running_var + bn.eps)
            if bn.affine:
                scale = scale * bn.weight
            shift = -bn.running_mean * scale + (bn.bias if bn.affine else 0.0)
            if conv.bias is not None:
                shift = shift + conv.bias * scale
            g.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
            g.bias.copy_(shift)
            folded.update({f"{conv_path}.weight", f"{conv_path}.bias"})
        params = dict(self.model.named_parameters())
        for name, pg in self.gate.named_parameters():
            if name not in folded:
                pg.copy_(params[name])

    @torch.no_grad()
    def _fold_verify(self, x: torch.Tensor) -> None:
        """Once: the folded gate equals the unfolded network in eval mode on ``x``."""
        was = self.model.training
        self.model.eval()
        try:
            with self.paused():
                ref = self.model(x)
        finally:
            self.model.train(was)
        out = self.gate(x)
        low = out.dtype in (torch.bfloat16, torch.float16) or torch.is_autocast_enabled()
        tol = 1e-6 if out.dtype == torch.float64 else (1e-1 if low else 1e-3)
        err = float((out.float() - ref.float()).abs().max() / ref.float().abs().max().clamp_min(1e-12))
        if not err <= tol:
            raise ValueError(f"gate_bn='folded': the folded gate differs from the eval-mode network "
                             f"(relative error {err:.2e} > {tol}); its Conv2d/BatchNorm2d pairs are not "
                             "consecutive in the data flow. Use gate_bn='running'.")
        self._verified = True

    @torch.no_grad()
    def refresh(self) -> None:
        r""":math:`W_g \leftarrow W` (parameters; running statistics too for ``gate_bn="running"``;
        batch norm folded into the convolutions for ``"folded"``)."""
        if self.gate_bn == "folded":
            self._fold_refresh()
            self.refreshes += 1
            self._fresh = True
            return
        for pg, pm in zip(self.gate.parameters(), self.model.parameters()):
            pg.copy_(pm)
        if self.gate_bn == "running":
            for bg, bm in zip(_bns(self.gate), _bns(self.model)):
                bg.running_mean.copy_(bm.running_mean)
                bg.running_var.copy_(bm.running_var)
        self.refreshes += 1

    @torch.no_grad()
    def record(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """The gate's support on ``x``: per wrapped activation, one bool mask per call."""
        if self.gate_bn == "folded" and not self._verified and self._fresh:
            self._fold_verify(x)  # once, right after a refresh (the gate equals the model then)
        self._fresh = False
        for g in self.gate_acts:
            g.mode, g.masks = "record", []
        self._gate_call(x)
        out = [g.masks for g in self.gate_acts]
        for g in self.gate_acts:
            g.mode, g.masks = "free", []
        return out

    def impose(self, masks: list[list[torch.Tensor]]) -> None:
        """Make the model apply ``masks`` (from :meth:`record`) in its next forwards."""
        for m, s in zip(self.model_acts, masks):
            m.mode, m.masks = "apply", s
            m.reset_index()

    def compute(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """:meth:`record` then :meth:`impose`; returns the masks."""
        masks = self.record(x)
        self.impose(masks)
        return masks

    def check_consumed(self) -> None:
        """After a forward: every recorded mask was used exactly once; rewinds for the next forward."""
        for m in self.model_acts:
            if m._i != len(m.masks):
                raise RuntimeError(f"GatedPHT: {m._i} of {len(m.masks)} recorded masks used in the "
                                   "forward; gate and network ran different graphs.")
            m.reset_index()

    @contextlib.contextmanager
    def paused(self):
        """Let the model compute its own support inside the block (evaluation, head features),
        then impose the held masks again (alt-inner keeps a batch's support across steps)."""
        saved = [(m.mode, m._i) for m in self.model_acts]
        for m in self.model_acts:
            m.mode = "free"
        try:
            yield
        finally:
            for m, (mode, i) in zip(self.model_acts, saved):
                m.mode, m._i = mode, i

    def release(self) -> None:
        for m in self.model_acts:
            m.mode, m.masks = "free", []
            m.reset_index()

    @staticmethod
    def flips(a: list[list[torch.Tensor]], b: list[list[torch.Tensor]]) -> tuple[int, int]:
        """(entries whose support differs between two recorded supports, entries in total)."""
        diff = total = 0
        for la, lb in zip(a, b):
            for sa, sb in zip(la, lb):
                diff += int((sa != sb).sum())
                total += sa.numel()
        return diff, total
