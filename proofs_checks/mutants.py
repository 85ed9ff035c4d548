r"""Mutation suite: every check of the project must be able to fail (docs/claims.md).

Each mutant is a realistic bug in the code under test, applied *in process* by replacing a
function object wherever the package (and any imported test module) holds it — no file is
edited — in a forked child, so a patch never outlives its run. Two kinds:

``verify``
    Bugs in what the claims compute (operators and their adjoint composition, margins, solvers,
    the fast solver's certificate, enumeration, closed forms, the lifted bound, alternation
    steps, end-point classification), run against the claims they touch on the quick profile,
    exactly as ``altheory verify --claims ...`` runs them (:func:`altheory.claims.report.run_claims`,
    strict exit status). Killed when that exit status is non-zero; the line names the claim whose
    verdict killed it (FAIL, ERROR or UNVERIFIED).
``tests``
    Bugs in guards that ``altheory verify`` does not exercise (refusals of bad input,
    fingerprints, checkpoint safety, resume, atomic writes, and A_S computed by autograd, whose
    numbers are right): the patch is applied, then ``pytest.main([node ids..., "-x", "-q"])`` runs
    in the same child. The test modules are imported by that pytest run, after the patch, so a
    test's ``from altheory.x import f`` binds the mutant (modules of ``tests/`` imported earlier
    are dropped from ``sys.modules`` first, and their globals are patched too). Killed only when
    pytest exits 1 because a test call failed; exit 2 and above (collection error, unknown node
    id) is an ERROR line. The line names the failing test and the first lines of its message.

Not expressible in process (so not registered): SIGINT not handled by the trainer
(tests/test_certify_run.py::test_sigint_writes_a_checkpoint runs ``altheory.train.cli`` in a
subprocess, which no in-process patch reaches).

Usage::

    python proofs_checks/mutants.py [--kind verify|tests|all] [--only NAME,...] [--jobs 2]
                                    [--list] [--no-baseline]

One line per mutant, then ``killed K/N`` and the wall time (with the load average); exit status
0 only when every mutant is killed and the unmutated baselines are green (the claims pass, and
every test a mutant names passes). :func:`applied` restores the originals for in-process use
(tests); :func:`run_in_child` runs one mutant in a forked child.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = ["Mutant", "MUTANTS", "QUICK_SUBSET", "applied", "run_mutant", "run_tests_mutant", "run_in_child",
           "main"]


# --------------------------------------------------------------------------------------------
# patching
# --------------------------------------------------------------------------------------------

def _resolve(path: str):
    import importlib

    mod, _, attr = path.rpartition(".")
    module = importlib.import_module(mod)
    return module, attr, getattr(module, attr)


_REPO = Path(__file__).resolve().parents[1]
_TESTS = _REPO / "tests"


def _is_test_module(m) -> bool:
    f = getattr(m, "__file__", None)
    try:
        return f is not None and Path(f).resolve().is_relative_to(_TESTS)
    except (OSError, ValueError):
        return False


def _patch_everywhere(path: str, make: Callable, undo: list) -> None:
    """Replace the object at ``path`` (``"pkg.module.name"``) by ``make(original)`` in its module
    and in every ``altheory`` module, and every module of ``tests/`` already imported, that
    imported it by name; record how to undo it. (The test-killed mutants apply their patches
    before pytest imports the test modules, so a ``from altheory.x import f`` at a test module's
    import time binds the patched ``f``; walking the test modules covers one imported earlier.)"""
    module, attr, orig = _resolve(path)
    new = make(orig)
    for name, m in list(sys.modules.items()):
        if m is None or not (name == "altheory" or name.startswith("altheory.") or _is_test_module(m)):
            continue
        for k, v in list(vars(m).items()):
            if v is orig:
                undo.append((m, k, orig))
                setattr(m, k, new)
    if getattr(module, attr) is not new:
        undo.append((module, attr, orig))
        setattr(module, attr, new)


def _patch_method(path: str, make: Callable, undo: list) -> None:
    """Replace a method ``pkg.module.Class.method`` by ``make(original)``."""
    import importlib

    mod, cls_name, meth = path.rsplit(".", 2)
    cls = getattr(importlib.import_module(mod), cls_name)
    orig = cls.__dict__[meth]
    undo.append((cls, meth, orig))
    setattr(cls, meth, make(orig))


def _patch_local(path: str, make: Callable, undo: list) -> None:
    """Replace the name ``pkg.module.name`` in that one module only (a module that stops calling
    a helper it imported; other modules keep the original)."""
    module, attr, orig = _resolve(path)
    undo.append((module, attr, orig))
    setattr(module, attr, make(orig))


@dataclass
class Mutant:
    """One realistic bug: ``patches`` is a list of ``(kind, path, make)`` with kind ``"func"``
    (a module-level function or constant, replaced wherever it is held), ``"local"`` (the name in
    one module only) or ``"method"``.

    Kind ``verify`` (``killed_by_tests`` empty): killed when ``altheory verify --claims claims``
    (quick) exits non-zero. Kind ``tests``: killed when one of the pytest node ids
    ``killed_by_tests`` fails with the patch applied (a guard ``verify`` does not exercise).
    """

    name: str
    claims: tuple[str, ...]
    description: str
    patches: list
    killed_by_tests: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        return "tests" if self.killed_by_tests else "verify"


@contextlib.contextmanager
def applied(mutant: Mutant):
    """Apply ``mutant`` in this process; restore every original on exit."""
    _import_all()
    undo: list = []
    try:
        for kind, path, make in mutant.patches:
            if kind == "func":
                _patch_everywhere(path, make, undo)
            elif kind == "method":
                _patch_method(path, make, undo)
            elif kind == "local":
                _patch_local(path, make, undo)
            else:
                raise ValueError(f"patch kind must be 'func', 'local' or 'method'; got {kind!r}.")
        yield mutant
    finally:
        for obj, attr, orig in reversed(undo):
            setattr(obj, attr, orig)


def _import_all() -> None:
    """Import every module a mutant may patch, so that name-imports are found and patched."""
    import importlib

    from altheory.claims import registry

    registry()
    for m in ("altheory.nets.graph", "altheory.nets.operators", "altheory.nets.support",
              "altheory.solvers.fast", "altheory.solvers.convex", "altheory.solvers.arrangements",
              "altheory.solvers.problems", "altheory.solvers.dispatch",
              "altheory.certificates.certificates", "altheory.certificates.conditions",
              "altheory.descent.descent",
              "altheory.descent.endpoints", "altheory.alternation.alternation", "altheory.claims._descent",
              "altheory.nets.activations", "altheory.solvers.softmax_head", "altheory.io",
              "altheory.train.checkpoint", "altheory.train.loop", "altheory.train.runs",
              "altheory.train.certify"):
        importlib.import_module(m)


# --------------------------------------------------------------------------------------------
# the mutants
# --------------------------------------------------------------------------------------------

def _scale_result(factor: float):
    def make(orig):
        def f(*a, **k):
            return orig(*a, **k) * factor
        return f
    return make


def _convex_objective(delta_fn):
    """Wrap a ConvexResult-returning function: objective -> delta_fn(objective, args)."""
    def make(orig):
        def f(*a, **k):
            r = orig(*a, **k)
            return dataclasses.replace(r, objective=delta_fn(r.objective, a, k))
        return f
    return make


def _linearize_no_bias(orig):
    def f(model, S, i):
        A, c = orig(model, S, i)
        return A, np.zeros_like(c)
    return f


def _linearize_scaled(orig):
    def f(model, S, i):
        A, c = orig(model, S, i)
        return A * (1 + 1e-7), c
    return f


def _pool_windows_divisor(orig):
    def f(*a, **k):
        out_pos, in_pos, val = orig(*a, **k)
        return out_pos, in_pos, val * 0.99
    return f


def _bn_no_eps(orig):
    def f(self, node):
        mod = node.module
        if mod.running_mean is None:
            return orig(self, node)
        var = mod.running_var.detach().double().numpy()
        mean = mod.running_mean.detach().double().numpy()
        gamma = mod.weight.detach().double().numpy() if mod.weight is not None else np.ones_like(mean)
        beta = mod.bias.detach().double().numpy() if mod.bias is not None else np.zeros_like(mean)
        scale = gamma / np.sqrt(var)
        return scale, beta - mean * scale
    return f


def _act_next_sample(orig):
    def f(self, node):
        S = self.sample_support[node.key]
        return S.mask((self.i + 1) % S.n).astype(np.float64)
    return f


def _rank_bound_ignores_widths(orig):
    def f(X, Y, widths, **k):
        conds = orig(X, Y, widths, **k)
        d, kk = np.asarray(X).shape[1], np.asarray(Y).reshape(len(X), -1).shape[1]
        return [dataclasses.replace(c, value=min(d, kk)) if c.name.startswith("rank bound") else c
                for c in conds]
    return f


def _layer_operator_offset(orig):
    def f(*a, **k):
        Phi, off = orig(*a, **k)
        return Phi, off * 0.99
    return f


def _relu_program_objective(orig):
    def f(*a, **k):
        r = orig(*a, **k)
        return dataclasses.replace(r, objective=r.objective * 0.9)
    return f


def _pe_dual_bound_low(orig):
    """The certified Pilanci-Ergen solve reports a dual bound 1e-3 below its value (and still
    says optimal): a certificate that claims more than it proves."""
    def f(*a, **k):
        r = orig(*a, **k)
        return dataclasses.replace(r, dual_objective=r.objective - 1e-3 * abs(r.objective))
    return f


def _program_to_network_no_sqrt(orig):
    def f(V, W, **k):
        W1, w2 = orig(V, W, **k)
        s = np.sqrt(np.abs(w2))
        return W1 * s[:, None], np.sign(w2)
    return f


def _balanced_unbalanced(orig):
    def f(U):
        U = np.asarray(U, np.float64)
        nrm = np.linalg.norm(U, axis=1)
        W1 = np.zeros_like(U)
        nz = nrm > 0
        W1[nz] = U[nz] / nrm[nz, None]
        return W1, nrm
    return f


def _enumerate_drops_one(orig):
    def f(X, **k):
        P = orig(X, **k)
        return dataclasses.replace(P, G=P.G[:, :-1])
    return f


def _prune_drops_largest(orig):
    def f(X, G, V, W, **k):
        Vp, Wp = orig(X, G, V, W, **k)
        Vp, Wp = np.array(Vp, copy=True), np.array(Wp, copy=True)
        j = int(np.argmax(np.linalg.norm(Vp, axis=1) + np.linalg.norm(Wp, axis=1)))
        Vp[j] = 0.0
        Wp[j] = 0.0
        return Vp, Wp
    return f


def _lifted_patterns_drop_one(orig):
    def f(masks):
        P = orig(masks)
        return P[:, :-1] if P.shape[1] > 1 else P
    return f


def _rrr_rank(delta: int):
    def make(orig):
        def f(X, Y, r):
            return orig(X, Y, max(0, r + delta))
        return f
    return make


def _hessian_negated(orig):
    def f(*a, **k):
        lo, hi = orig(*a, **k)
        return -hi, -lo
    return f


def _classify_no_curvature(orig):
    def f(grad_norm, min_eig, *, tol_g, tol_h):
        return orig(grad_norm, abs(min_eig), tol_g=tol_g, tol_h=tol_h)
    return f


def _tolerances_scaled(g: float, h: float = 1.0):
    def make(orig):
        def f(F0, max_eig, *, rtol_g=1e-7, rtol_h=1e-6):
            return orig(F0, max_eig, rtol_g=rtol_g * g, rtol_h=rtol_h * h)
        return f
    return make


def _objective_offset(rel: float):
    """A constant ``rel * F(0)`` added to the descent objective (a loss normalisation bug)."""
    def make_call(orig):
        def f(self, theta, idx=None):
            return orig(self, theta, idx) + rel * self.zero_objective()
        return f

    def make_vg(orig):
        def f(self, theta, idx=None, *, need_grad=True):
            v, g = orig(self, theta, idx, need_grad=need_grad)
            return v + rel * self.zero_objective(), g
        return f
    return make_call, make_vg


def _grad_lam_doubled(orig):
    def f(self, theta, idx=None, *, need_grad=True):
        v, g = orig(self, theta, idx, need_grad=need_grad)
        if g is not None and self.lam > 0:
            th = theta.detach().cpu().numpy() if hasattr(theta, "detach") else np.asarray(theta)
            W = []
            off = 0
            for t in self.trainable:
                sz = int(np.prod(self.shapes[t]))
                W.append(th[off:off + sz])
                off += sz
                if self.fixed_b is not None:
                    W.append(np.zeros(self.shapes[t][0]))
                    off += self.shapes[t][0]
            g = g + self.lam * np.concatenate(W)
        return v, g
    return f


def _sp_no_slack(orig):
    def f(*a, tau, epsilon=1e-3, **k):
        return orig(*a, tau=tau, epsilon=0.0 if tau > 0 else epsilon, **k)
    return f


def _sp_unconstrained(orig):
    def f(Ws, bs, X, Y, masks, l, *, tau, loss="squared", lam=0.0, epsilon=1e-3, solver="clarabel"):
        from altheory.alternation import alternation as A

        return A.exact_layer_step(Ws, bs, X, Y, masks, l, loss=loss, lam=lam, solver=solver)
    return f


def _descent_step_no_lam(orig):
    def f(*a, lam=0.0, **k):
        return orig(*a, lam=0.0, **k)
    return f


def _exact_layer_perturbed(orig):
    def f(Ws, bs, X, Y, masks, l, **k):
        Ws2, bs2, info = orig(Ws, bs, X, Y, masks, l, **k)
        if Ws2 is not Ws:
            Ws2 = list(Ws2)
            Ws2[l] = Ws2[l] * 1.01
        return Ws2, bs2, info
    return f


def _fast_layer_one_step(orig):
    def f(*a, **k):
        r = orig(*a, **{**k, "max_iter": 1})
        return dataclasses.replace(r, status="optimal")
    return f


def _fast_gl_loose(orig):
    def f(*a, **k):
        return orig(*a, **{**k, "tol": 1e-3})
    return f


def _threshold_margin_no_abs(orig):
    def f(z, tau):
        return (z.detach().double() - tau).flatten(1).amin(1)
    return f


def _group_lasso_lam_halved(orig):
    def f(X, G, y, lam, **k):
        return orig(X, G, y, 0.5 * lam, **k)
    return f


def _group_lasso_problem_lam_halved(orig):
    def f(P, **k):
        from altheory.solvers.problems import TwoLayerFixedSupport

        return orig(TwoLayerFixedSupport(P.X, P.G, P.y, P.loss, 0.5 * P.lam), **k)
    return f


def _per_layer_high(orig):
    def f(*a, **k):
        r = orig(*a, **k)
        return dataclasses.replace(r, objective=r.objective + 1e-3 * max(1.0, abs(r.objective)))
    return f


# -- C1: the adjoint (fast) composition of A_S and c_S (killed by C1's verdict) --------------

def _conv_adjoint_no_output_padding(orig):
    """conv_transpose2d with output_padding 0, the missing trailing rows filled with zeros."""
    import torch.nn.functional as F

    from altheory.nets.operators import _conv_pad_end, _conv_padding, _pair

    def f(conv, R, in_shape):
        C, H, W = in_shape
        pad = _conv_padding(conv, (H, W))
        if pad != _conv_pad_end(conv, pad):
            return orig(conv, R, in_shape)
        Wt = conv.weight.detach().to(R.dtype)
        out = F.conv_transpose2d(R, Wt, None, _pair(conv.stride), pad, 0, conv.groups,
                                 _pair(conv.dilation))
        return F.pad(out, (0, W - out.shape[-1], 0, H - out.shape[-2]))
    return f


class _ConvView:
    """A Conv2d seen with some attributes replaced (the kernel flipped, the dilation forgotten)."""

    def __init__(self, conv, **over):
        self._conv, self._over = conv, over

    def __getattr__(self, name):
        over = self.__dict__["_over"]
        return over[name] if name in over else getattr(self.__dict__["_conv"], name)


def _conv_adjoint_flipped(orig):
    """The transposed convolution with the kernel flipped (a correlation/convolution mix-up)."""
    def f(conv, R, in_shape):
        return orig(_ConvView(conv, weight=conv.weight.detach().flip(2, 3)), R, in_shape)
    return f


def _conv_adjoint_no_dilation(orig):
    """The transposed convolution run with dilation 1 (the conv's dilation forgotten)."""
    def f(conv, R, in_shape):
        return orig(_ConvView(conv, dilation=(1, 1)), R, in_shape)
    return f


def _conv_adjoint_same_crop_at_end(orig):
    """Asymmetric 'same' padding cropped from the trailing side instead of the leading one."""
    import torch

    from altheory.nets.operators import _conv_pad_end, _conv_padding, _pair

    def f(conv, R, in_shape):
        C, H, W = in_shape
        pad = _conv_padding(conv, (H, W))
        end = _conv_pad_end(conv, pad)
        if pad == end:
            return orig(conv, R, in_shape)
        like = R.new_zeros(()).expand(R.shape[0], C, H + pad[0] + end[0], W + pad[1] + end[1])
        out = torch.ops.aten.convolution_backward(
            R, like, conv.weight.detach().to(R.dtype), None, _pair(conv.stride), (0, 0),
            _pair(conv.dilation), False, (0, 0), conv.groups, (True, False, False))[0]
        return out[:, :, end[0]:end[0] + H, end[1]:end[1] + W]
    return f


def _maxpool_adjoint_overwrites(orig):
    """scatter_ instead of scatter_add_: an input picked by two overlapping windows gets one."""
    def f(indices, R, in_shape):
        C, H, W = in_shape
        rows = R.shape[0]
        out = R.new_zeros(rows, C, H * W)
        out.scatter_(2, indices.reshape(1, C, -1).expand(rows, C, -1), R.reshape(rows, C, -1))
        return out.reshape(rows, C, H, W)
    return f


def _pool_adjoint_no_divisor(orig):
    """The average-pool adjoint sums its windows without dividing by their sizes."""
    import torch

    from altheory.nets.operators import _pool_windows

    def f(pool, R, in_shape):
        C, H, W = in_shape
        rows, Ho, Wo = R.shape[0], R.shape[-2], R.shape[-1]
        out_pos, in_pos, _ = _pool_windows(pool, in_shape, (Ho, Wo))
        out_pos = torch.as_tensor(np.ascontiguousarray(out_pos), dtype=torch.int64, device=R.device)
        in_pos = torch.as_tensor(np.ascontiguousarray(in_pos), dtype=torch.int64, device=R.device)
        R2 = R.reshape(rows * C, Ho * Wo)
        out = R2.new_zeros(rows * C, H * W)
        out.index_add_(1, in_pos, R2[:, out_pos])
        return out.reshape(rows, C, H, W)
    return f


def _step_override(kind: str, fn):
    """``Linearization._adjoint_step`` with the action of one node kind replaced by ``fn``."""
    def make(orig):
        def f(self, node, Rn, prep, c):
            if node.kind == kind:
                return fn(orig, self, node, Rn, prep, c)
            return orig(self, node, Rn, prep, c)
        return f
    return make


def _zeros_like(c):
    import torch

    return torch.zeros_like(c)


def _compose_adjoint_blocks_from_row_0(orig):
    """The adjoint composition with every block of rows seeded from row 0 of I_k (the block
    offset forgotten): right for one block, wrong as soon as ``max_rows < k``."""
    def f(self, keep, max_rows):
        import torch

        from altheory.nets.operators import _ADJOINT_BUDGET_BYTES

        out = self.graph.output
        first = out.inputs[0]
        k = self.numel[first]
        d = self.numel[self.graph.nodes[0].name]
        need = self._needed()
        nodes = [n for n in reversed(self.graph.nodes[:-1]) if n.name in need]
        if max_rows is None:
            widest = max(self.numel[n.name] for n in nodes if n.name in self.numel)
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
            eye = torch.zeros(rows, k, dtype=torch.float64, device=dev)
            eye[torch.arange(rows, device=dev), torch.arange(0, rows, device=dev)] = 1.0  # the bug
            R = {first: eye.reshape(rows, *self.shapes[first])}
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
            c[r0:r1] = cb.cpu().numpy()
        return A, c, kept
    return f


def _resume_without_epoch_sums(orig):
    """On a mid-epoch resume the epoch's running sums are not restored (they start at zero; its
    steps and flips are)."""
    def f(*a, **k):
        ck = orig(*a, **k)
        part = ck.get("epoch_partial") if isinstance(ck, dict) else None
        if part is not None:
            ck = {**ck, "epoch_partial": {**part, "sums": part["sums"] * 0}}
        return ck
    return f


def _compose_by_jacrev(orig):
    """A_S computed by ``torch.func.jacrev`` of the gated network (right numbers, but autograd:
    not C1's composition from weights and masks)."""
    def f(self, *, keep=(), method="adjoint", max_rows=None):
        import torch

        from altheory.nets.support import gated_forward

        A, c, kept = orig(self, keep=keep, method=method, max_rows=max_rows)
        model, Si = self.graph.model, self.S.subset([self.i])
        p = next(model.parameters())
        x0 = torch.zeros(Si.input_shape, dtype=p.dtype, device=p.device)
        gated_forward(model, Si, x0[None])  # the support checks, outside the transform
        J = torch.func.jacrev(lambda v: gated_forward(model, Si, v[None], same_weights=False)[0]
                              .reshape(-1))(x0)
        return J.reshape(A.shape).detach().double().cpu().numpy(), c, kept
    return f


# -- nets: supports, fingerprints, refusals (killed by tests) ----------------------------------

def _force_kw(name: str, value):
    def make(orig):
        def f(*a, **k):
            k[name] = value
            return orig(*a, **k)
        return f
    return make


def _const(value):
    def make(orig):
        def f(*a, **k):
            return value
        return f
    return make


def _noop(orig):
    def f(*a, **k):
        return None
    return f


def _for_any_weights_keeps_digest(orig):
    def f(self):
        from altheory.nets.support import MultiLayerSupport

        return MultiLayerSupport(self.layers, self.n, self.input_shape, self.model_signature,
                                 self.input_digest, param_signature=self.param_signature,
                                 weights_digest=self.weights_digest)
    return f


def _fingerprint_aligned_words(orig):
    def f(t):
        import torch

        from altheory.nets.support import _weighted_sum

        x = t.detach().to(torch.float64).cpu().contiguous().view(-1)
        return _weighted_sum(x.view(torch.int64)), 0, 0
    return f


def _mask_any_values(orig):
    def f(m, l, shape):
        import numpy as np

        m = np.asarray(m)
        if m.shape != shape:
            return orig(m, l, shape)
        return m
    return f


def _shifted_words_swapped(orig):
    def f(x):
        import torch

        halves = x.view(torch.int32).view(-1, 2).to(torch.int64)
        return (halves[1:, 0] & 0xFFFFFFFF) | (halves[:-1, 1] << 32)
    return f


def _scheduler_any_address(orig):
    def f(scheduler):
        s = scheduler.strip()
        if s.startswith("local") or not s or ("://" not in s and ":" not in s):
            return orig(scheduler)
        return s, None
    return f


def _state_without_buffers(orig):
    def f(model):
        yield from model.named_parameters()
    return f


def _digest_raw_dtype(orig):
    def f(x):
        import hashlib

        import torch

        x = torch.as_tensor(x).detach().cpu().contiguous()
        return hashlib.sha1(repr(tuple(x.shape)).encode() + x.numpy().tobytes()).hexdigest()[:16]
    return f


def _check_supported_skips_other(orig):
    """check_supported without its ``kind == "other"`` branch (only BatchNorm without running
    statistics is refused)."""
    def f(graph, where):
        from altheory.errors import UnsupportedModuleError
        from altheory.nets.graph import SUPPORTED

        need = {graph.output.name}
        for node in reversed(graph.nodes):
            if node.name in need:
                need.update(node.inputs)
        for node in graph.nodes:
            if node.name in need and node.kind == "bn" and node.module.running_mean is None:
                raise UnsupportedModuleError(f"{where}: cannot represent BatchNorm at {node.path!r}. "
                                             f"Supported: {SUPPORTED}.")
    return f


def _check_eval_no_dropout(orig):
    def f(model, where):
        from torch import nn

        from altheory.nets.support import _check_model

        _check_model(model, where)
        for name, m in model.named_modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training:
                raise ValueError(f"{where}: BatchNorm {name!r} is in training mode. Call model.eval().")
    return f


def _check_k_allows_zero(orig):
    def f(k):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"k must be an int >= 1 (entries kept); got {type(k).__name__}.")
        if k < 0:
            raise ValueError(f"k must be >= 1 (entries kept); got k={k}.")
        return int(k)
    return f


def _check_dim_no_range(orig):
    def f(dim, ndim, shape):
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
            raise TypeError(f"dim must be an int; got {type(dim).__name__}.")
        return int(dim) % ndim
    return f


def _topk_no_width_check(orig):
    """topk_mask without its ``k > size`` refusal (top-k silently becomes ReLU)."""
    def f(z, k, dim=-1):
        import torch

        from altheory.nets.activations import _check_dim, _check_k, _check_z

        k = _check_k(k)
        z = _check_z(z)
        is_torch = isinstance(z, torch.Tensor)
        if np.ndim(z) == 0:
            raise ValueError("topk_mask needs at least one dimension; got a scalar.")
        t = z if is_torch else torch.from_numpy(np.array(z, copy=True))
        dim = _check_dim(dim, t.ndim, t.shape)
        size = t.shape[dim]
        order = torch.sort(t, dim=dim, descending=True, stable=True).indices
        rank = torch.empty_like(order)
        ar = torch.arange(size, device=t.device).view([-1 if i == dim else 1 for i in range(t.ndim)])
        rank.scatter_(dim, order, ar.expand_as(order))
        s = (rank < k) & (t > 0)
        return s if is_torch else s.numpy()
    return f


def _is_consistent_by_eq(orig):
    def f(self, model, x):
        from altheory.nets.support import support

        return self == support(model, x)
    return f


def _fsn_same_batch_ignored(orig):
    def f(self, same_weights=True, same_batch=True):
        return orig(self, same_weights, False)
    return f


# -- the softmax head's certificate, checkpoints, resume, certify (killed by tests) -----------

def _dual_point_not_rescaled(orig):
    def f(Phi, Y, W, b, lam_b):
        import torch

        from altheory.solvers.softmax_head import _logits

        return torch.softmax(_logits(Phi, W, b), 1)
    return f


def _head_certificate_gap_flipped(orig):
    def f(*a, **k):
        c = orig(*a, **k)
        return {**c, "gap": c["dual"] - c["primal"]}
    return f


def _dual_quarter_lambda(orig):
    """The dual's quadratic term divided by 4 lambda instead of 2 lambda."""
    def f(Phi, Y, A, lam, lam_b):
        return orig(Phi, Y, A, 2.0 * lam, lam_b)
    return f


def _status_always_optimal(orig):
    def f(*a, **k):
        r = orig(*a, **k)
        return dataclasses.replace(r, status="optimal")
    return f


def _load_checkpoint_copy(*, weights_only: bool = True, check_keys: bool = True):
    """``load_checkpoint`` with ``torch.load(weights_only=...)`` and/or without the key check."""
    def make(orig):
        def f(path, map_location="cpu"):
            import pickle
            import zipfile
            from pathlib import Path

            import torch

            from altheory.train.checkpoint import CHECKPOINT_KEYS

            path = Path(path)
            if not path.is_file():
                raise FileNotFoundError(f"no checkpoint at {path}")
            try:
                state = torch.load(path, map_location=map_location, weights_only=weights_only)
            except pickle.UnpicklingError as exc:
                raise ValueError(f"checkpoint {path} holds objects other than tensors: {exc}") from None
            except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError) as exc:
                raise ValueError(f"checkpoint {path} is truncated or not a torch checkpoint "
                                 f"({type(exc).__name__})") from None
            if check_keys and (not isinstance(state, dict) or any(k not in state for k in CHECKPOINT_KEYS)):
                raise ValueError(f"{path} is a torch file but not a checkpoint of altheory train")
            return state
        return f
    return make


def _load_run_without_mean(orig):
    """load_run reads the preprocessing under another key: the saved channel means are lost."""
    def f(*a, **k):
        run = orig(*a, **k)
        pre = {key: v for key, v in run.preprocessing.items() if key != "mean"}
        try:
            return dataclasses.replace(run, preprocessing=pre)
        except TypeError:
            run.preprocessing = pre
            return run
    return f


# -- io (killed by tests/test_io.py) -----------------------------------------------------------

def _output_path_accepts_non_regular(orig):
    def f(path, *, create_parent=True):
        from pathlib import Path

        from altheory.io import check_output_dir

        p = Path(path)
        check_output_dir(p.parent if str(p.parent) else Path("."), create=create_parent)
        return p
    return f


def _atomic_write_leaves_temp(orig):
    def f(path, data):
        import tempfile

        from altheory.io import check_output_path

        p = check_output_path(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
        return p
    return f


_OFF_CALL, _OFF_VG = _objective_offset(1e-3)
_STEP = "altheory.nets.operators.Linearization._adjoint_step"
_OPS = "tests/test_operators.py"
_BAD = "tests/test_bad_inputs.py::test_bad_call_raises_with_fix"
_CERT = "tests/test_certify_run.py"

# fast solver: checks guarded by tests/test_fast_solver.py and tests/test_arrangements.py
def _certificate_gap_tenth(orig):
    """The group-lasso certificate reports a tenth of its duality gap."""
    def f(*a, **k):
        primal, dual, gap, scores = orig(*a, **k)
        return primal, primal - gap / 10, gap / 10, scores
    return f


def _cone_bound_low(orig):
    """The Pilanci-Ergen cone term bounded at 0.9 of its value (no longer an upper bound)."""
    def f(*a, **k):
        return 0.9 * orig(*a, **k)
    return f


def _project_identity(orig):
    """The projection onto the pattern cone returns the point unchanged."""
    def f(C, v):
        return v
    return f


def _threads_always_all(orig):
    """The thread rule ignores the work size and the probe: always every thread."""
    def f(work, dev="cpu", **k):
        import os as _os
        return int(_os.cpu_count() or 1)
    return f


# -- the fast solver's Newton inner solve (killed by tests/test_fast_precond.py) -------------

def _edited(old: str, new: str):
    """A mutant made by editing the original function's source (``old`` must be in it: when a
    refactor removes the guarded line, the mutant errors instead of passing unnoticed)."""
    def make(orig):
        import inspect
        import textwrap

        src = textwrap.dedent(inspect.getsource(orig))
        if old not in src:
            raise RuntimeError(f"the mutant's edit no longer applies to {orig.__qualname__}: {old!r}")
        ns: dict = {}
        exec(compile(src.replace(old, new), inspect.getsourcefile(orig) or "<mutant>", "exec"),
             orig.__globals__, ns)
        return ns[orig.__name__]
    return make


def _woodbury_no_correction(orig):
    """The sample-space preconditioner applies only R~^{-1} (its Woodbury correction dropped)."""
    def f(self, v):
        return self._rinv(v)
    return f


def _pcg_always_converged(orig):
    """The preconditioned CG reports convergence whatever its residual."""
    def f(*a, **k):
        x, it, _ = orig(*a, **k)
        return x, it, True
    return f


# the projected Newton line search accepts the point with crossing groups zeroed unchecked
_newton_projection_unchecked = _edited(
    "            if Fc <= F + 1e-4 * a * slope and not Fn < Fc:\n                state[\"step_length\"] = a\n"
    "                return uc, zc, Fc, k, True",
    "            state[\"step_length\"] = a\n            return uc, zc, Fc, k, True")


def _pe_batched_bounds_low(orig):
    """The batched Pilanci-Ergen cone bounds at 0.9 of their value (no longer upper bounds)."""
    def f(*a, **k):
        return 0.9 * orig(*a, **k)
    return f


# the lazy refinement of the Pilanci-Ergen scores stops at the first pattern (no exact maximum)
_pe_lazy_stops_at_once = _edited(
    "        neg, i, exact = heapq.heappop(heap)\n        if not exact:",
    "        neg, i, exact = heapq.heappop(heap)\n        break\n        if not exact:")


# NNLS keeps SciPy's answer without checking its optimality conditions
_nnls_trusts_scipy = _edited("    if x is None or _kkt(A, b, x) > _KKT_RTOL:", "    if x is None:")

# the restricted Pilanci-Ergen program never notices a block violating a row it was not given
_pe_cuts_ignored = _edited("                offenders = True", "                offenders = False")

# the multipliers found on the facet rows are kept without the Moreau check
_pe_exact_mu_unchecked = _edited(
    "        if (C @ p).min() >= -1e-9 * float(np.abs(C).max()) * float(np.linalg.norm(x)):",
    "        if True:")

# the facet-row greedy of the batched bounds takes negative steps too (no longer a bound)
_pe_facet_greedy_signed = _edited(
    "        mu = np.maximum(-v[m_idx, r], 0.0)                               # >= 0",
    "        mu = -v[m_idx, r]")

# the sample-space preconditioner solves with the Cholesky factor once, not with L and L^T
_chol_solve_one_triangle = _edited(
    "    return torch.linalg.solve_triangular(L.mT, torch.linalg.solve_triangular(L, b, upper=False),\n"
    "                                         upper=True)",
    "    return torch.linalg.solve_triangular(L, b, upper=False)")


def _pht_tau_and_k(orig):
    """PHT keeps a threshold it then ignores beside a top-k count (the old behaviour)."""
    def f(self, tau=0.0, *, k=None, dim=1):
        orig(self, 0.0 if k is not None else tau, k=k, dim=dim)
        self.tau = float(tau)
    return f


# the train config keeps a threshold beside topk (the model would then refuse it, or drop it)
_config_tau_and_topk = _edited("    if self.topk is not None and self.tau != 0:", "    if False:")

# the closed-form small solves never flag a singular system
_small_solve_unflagged = _edited("    return mu, np.abs(det) > 1e-10 * diag", "    return mu, np.ones(det.shape, bool)")

# the cycle test's support digest skips the upper region of a three-state activation
_digest_ignores_upper = _edited(
    "        if layer.upper is not None:  # a three-state activation: its upper region is support too",
    "        if False:")

# the batched cone projection takes active sets with negative multipliers too (a point of a
# larger cone's boundary, not the projection)
_pe_projection_signed = _edited(
    "        good = valid & (mu >= -1e-12 * xn[todo, None, None]).all(2) \\\n",
    "        good = valid & True \\\n")

# the certificate trusts a batched projection onto the facet rows without checking every row
_pe_batched_projection_unchecked = _edited("            ok &= (c_all >= ", "            _ = (c_all >= ")

# the certificate ignores the interior-point dual and uses the gradient of the primal point
_pe_theta_from_gradient = _edited("ws=ws, theta=theta,", "ws=ws, theta=None,")


def _pe_dual_unscaled(orig):
    """The Pilanci-Ergen certificate takes the dual value at the unscaled theta (the restricted
    program's dual, infeasible for patterns outside the working set): a false lower bound, the
    first restricted optimum is labelled optimal."""
    def f(g, smax, y, loss):
        return orig(g, min(smax, 1.0), y, loss)
    return f


# C5's cross-check against cvxpy measures nothing (its violation always 0)
_c5_cross_check_blind = _edited("    viol = max(res.solver_value - ref.objective,",
                                "    viol = 0.0 * max(res.solver_value - ref.objective,")


# the feasibility step trusts its greedy steps: no exact projection of a block still outside
_pe_feasible_no_fallback = _edited(
    "            cur[j] = _pe_project(Bi[j][:, None] * X, M[idx[j]])",
    "            pass")


# the batched projections of the feasibility step are kept where the enumeration found none
_pe_feasible_batch_unchecked = _edited(
    "ok = found & (pc.min(axis=1) >= -1e-15 * np.abs(pc).max(axis=1))",
    "ok = np.ones_like(found)")


# the batched projections of the feasibility step land inside the cone but not at the
# projection (feasible, so only a check of the point itself sees it)
_pe_feasible_batch_shrunk = _edited("cur[bad[ok]] = p[ok]", "cur[bad[ok]] = 0.9 * p[ok]")


def _flip_facets_drop_last(orig):
    """The facets read off the pattern set miss each cone's last one."""
    def f(self, i):
        return orig(self, i)[:-1]
    return f


def _subset_gathers_wrong_rows(orig):
    """The transposed design's subset gathers the gate columns in sorted order, not idx's."""
    def f(self, idx, **kw):
        import torch

        return orig(self, torch.sort(idx).values, **kw)
    return f


def _blas3_ignores_load(orig):
    """The dense blocks of the Newton phase take every thread even beside busy processes."""
    def enter(self):
        import torch

        from altheory.solvers import fast

        self.saved = torch.get_num_threads()
        if fast._threads.pool is not None and self.flops >= fast._BLAS3_MIN_FLOPS:
            torch.set_num_threads(fast._threads.pool)
        return self
    return enter


def _pcg_no_time_budget(orig):
    """CG ignores its time budget (a stale preconditioner is rented without limit)."""
    def f(hv, b, Minv, tol, max_iter, time_budget=math.inf, min_iter=4):
        return orig(hv, b, Minv, tol, max_iter)
    return f


def _flip_facets_memo_stale(orig):
    """A row added to a pattern's facets never reaches the kept answer."""
    def add(self, i, rows):
        kept = self.memo.get(i)
        orig(self, i, rows)
        if kept is not None:
            self.memo[i] = kept
    return add


MUTANTS: list[Mutant] = [
    # C1: linearization (operators)
    Mutant("linearize-drops-bias", ("C1",), "linearize returns c_S = 0 (biases forgotten)",
           [("func", "altheory.nets.operators.linearize", _linearize_no_bias)]),
    Mutant("linearize-scaled-1e-7", ("C1",), "A_S off by a relative 1e-7 (a float32 accumulation)",
           [("func", "altheory.nets.operators.linearize", _linearize_scaled)]),
    Mutant("pool-windows-divisor", ("C1",), "average-pooling windows divided by k^2 / 0.99",
           [("func", "altheory.nets.operators._pool_windows", _pool_windows_divisor)]),
    Mutant("bn-affine-ignores-eps", ("C1",), "eval batch norm scaled by gamma/sqrt(var), no eps",
           [("method", "altheory.nets.operators.Linearization._bn_affine", _bn_no_eps)]),
    Mutant("act-diagonal-wrong-sample", ("C1",), "the mask D_i taken from the next sample",
           [("method", "altheory.nets.operators.Linearization._act_diagonal", _act_next_sample)]),
    # C2: margins
    Mutant("maxpool-margin-x4", ("C2",), "max-pool margin inflated 4x (once survived verify)",
           [("func", "altheory.nets.graph._maxpool_margin", _scale_result(4.0))]),
    Mutant("maxpool-margin-x0.25", ("C2",), "max-pool margin deflated 4x",
           [("func", "altheory.nets.graph._maxpool_margin", _scale_result(0.25))]),
    Mutant("threshold-margin-x2", ("C2",), "threshold margin doubled",
           [("func", "altheory.nets.graph._threshold_margin", _scale_result(2.0))]),
    Mutant("threshold-margin-no-abs", ("C2",), "threshold margin min(z - tau) without |.|",
           [("func", "altheory.nets.graph._threshold_margin", _threshold_margin_no_abs)]),
    # C3: per-layer operator and solvers
    Mutant("layer-operator-offset", ("C3",), "the per-layer offset o_i scaled by 0.99",
           [("func", "altheory.nets.operators.layer_operator", _layer_operator_offset)]),
    Mutant("per-layer-optimum-high", ("C3",), "the per-layer convex optimum reported 1e-3 too high",
           [("func", "altheory.solvers.dispatch.per_layer", _per_layer_high)]),
    Mutant("fast-layer-one-newton-step", ("C3",), "fast per-layer solve stopped after one Newton "
           "step and labelled optimal",
           [("func", "altheory.solvers.fast.solve_layer", _fast_layer_one_step)]),
    # C4: two layers, fixed support
    Mutant("balanced-factors-unbalanced", ("C4",), "factors w1 = u/|u|, w2 = |u| (not balanced)",
           [("func", "altheory.solvers.problems.balanced_factors", _balanced_unbalanced)]),
    Mutant("group-lasso-lam-halved", ("C4",), "the convex program solved with lambda/2",
           [("func", "altheory.solvers.convex.group_lasso_problem", _group_lasso_problem_lam_halved)]),
    Mutant("fast-group-lasso-stops-1e-3", ("C4",), "fast solver stops at a relative gap of 1e-3 "
           "and labels it optimal",
           [("func", "altheory.solvers.fast.solve_group_lasso", _fast_gl_loose)]),
    Mutant("c4-local-min-gap-1e-3-strict-tol", ("C4",), "every local minimum 1e-3 F(0) above the "
           "optimum while tol_g is 1e5x too strict (once survived verify)",
           [("method", "altheory.descent.descent.MLPObjective.__call__", _OFF_CALL),
            ("method", "altheory.descent.descent.MLPObjective.value_and_grad", _OFF_VG),
            ("func", "altheory.descent.endpoints.tolerances", _tolerances_scaled(1e-5))]),
    Mutant("grad-decay-doubled", ("C4",), "the weight-decay term counted twice in the gradient",
           [("method", "altheory.descent.descent.MLPObjective.value_and_grad", _grad_lam_doubled)]),
    # end-point classification (C3, C4, C6)
    Mutant("hessian-eigs-negated", ("C4",), "the extreme Hessian eigenvalues returned negated",
           [("func", "altheory.descent.endpoints.hessian_extreme_eigs", _hessian_negated)]),
    Mutant("classify-ignores-curvature", ("C6",), "end points with a small gradient all called "
           "local minima (the smallest Hessian eigenvalue ignored)",
           [("func", "altheory.descent.endpoints.classify", _classify_no_curvature)]),
    Mutant("endpoint-tol-g-loose", ("C4",), "tol_g 1e5x too loose (non-stationary points certified)",
           [("func", "altheory.descent.endpoints.tolerances", _tolerances_scaled(1e5))]),
    Mutant("rank-bound-ignores-widths", ("C6",), "the rank bound r = min(d, k), hidden widths "
           "forgotten", [("func", "altheory.certificates.conditions.shared_support_conditions",
                          _rank_bound_ignores_widths)]),
    # C5: exact convex program
    Mutant("enumerate-drops-pattern", ("C5",), "the arrangement enumeration loses one pattern",
           [("func", "altheory.solvers.arrangements.enumerate_patterns", _enumerate_drops_one)]),
    Mutant("pe-dual-bound-low", ("C5",), "the certified Pilanci-Ergen dual bound 1e-3 too low, "
           "labelled optimal", [("func", "altheory.solvers.pilanci_ergen.solve_pilanci_ergen",
                                 _pe_dual_bound_low)]),
    Mutant("relu-program-objective-low", ("C5",), "the convex program's objective reported 10% low",
           [("func", "altheory.solvers.arrangements.relu_program", _relu_program_objective)]),
    Mutant("program-to-network-no-sqrt", ("C5",), "the map to a network without the sqrt balance",
           [("func", "altheory.solvers.arrangements.program_to_network", _program_to_network_no_sqrt)]),
    Mutant("prune-drops-largest-block", ("C5",), "pruning drops the largest block",
           [("func", "altheory.solvers.arrangements.prune_blocks", _prune_drops_largest)]),
    # C6: closed form
    Mutant("reduced-rank-plus-one", ("C6",), "reduced-rank regression with rank r + 1",
           [("func", "altheory.solvers.convex.reduced_rank_regression", _rrr_rank(+1))]),
    Mutant("reduced-rank-minus-one", ("C6",), "reduced-rank regression with rank r - 1",
           [("func", "altheory.solvers.convex.reduced_rank_regression", _rrr_rank(-1))]),
    # C7: lifted bound
    Mutant("lifted-bound-halved", ("C7",), "the lifted lower bound halved (once survived verify)",
           [("func", "altheory.certificates.certificates.lifted_bound",
             _convex_objective(lambda v, a, k: 0.5 * v))]),
    Mutant("lifted-bound-raised", ("C7",), "the lifted bound raised by 0.05 F(0)",
           [("func", "altheory.certificates.certificates.lifted_bound",
             _convex_objective(lambda v, a, k: v + 0.05 * float(np.mean(np.asarray(a[2]) ** 2)) / 2))]),
    Mutant("lifted-patterns-drop-one", ("C7",), "one combined path pattern forgotten",
           [("func", "altheory.certificates.certificates.lifted_patterns", _lifted_patterns_drop_one)]),
    # C8: global given the support
    Mutant("c8-group-lasso-lam-halved", ("C8",), "C8's joint optimum solved with lambda/2",
           [("func", "altheory.solvers.convex.group_lasso", _group_lasso_lam_halved)]),
    Mutant("descent-step-ignores-lam", ("C8",), "the alternation's descent step drops weight decay",
           [("func", "altheory.alternation.alternation.descent_step", _descent_step_no_lam)]),
    Mutant("exact-layer-step-off", ("C8",), "the exact per-layer step returns W_l * 1.01",
           [("func", "altheory.alternation.alternation.exact_layer_step", _exact_layer_perturbed)]),
    # C9: alternation
    Mutant("support-preserving-no-slack", ("C9",), "no slack at tau > 0 (once survived verify)",
           [("func", "altheory.alternation.alternation.support_preserving_layer_step", _sp_no_slack)]),
    Mutant("support-preserving-unconstrained", ("C9",), "the support-preserving step solves the "
           "unconstrained layer problem",
           [("func", "altheory.alternation.alternation.support_preserving_layer_step", _sp_unconstrained)]),
    # C1: the adjoint (fast) composition, per node kind and per adjoint kernel
    Mutant("adjoint-mask-dropped", ("C1",), "the transpose of PHT/ReLU passes the rows unmasked",
           [("method", _STEP, _step_override("act", lambda o, s, n, R, p, c: [(n.inputs[0], R)]))]),
    Mutant("adjoint-residual-one-branch", ("C1",), "a residual addition sends its adjoint to one "
           "input only", [("method", _STEP, _step_override("add", lambda o, s, n, R, p, c: [(n.inputs[0], R)]))]),
    Mutant("adjoint-bn-shift-forgotten", ("C1",), "c_S misses the eval batch-norm shifts",
           [("method", _STEP, _step_override("bn", lambda o, s, n, R, p, c: o(s, n, R, p, _zeros_like(c))))]),
    Mutant("adjoint-conv-bias-forgotten", ("C1",), "c_S misses the convolution biases",
           [("method", _STEP, _step_override("conv", lambda o, s, n, R, p, c: o(s, n, R, p, _zeros_like(c))))]),
    Mutant("conv-adjoint-no-output-padding", ("C1",), "strided conv adjoint with output_padding 0 "
           "(zeros where the last input rows are read)",
           [("func", "altheory.nets.operators.conv_adjoint", _conv_adjoint_no_output_padding)]),
    Mutant("conv-adjoint-flipped-kernel", ("C1",), "transposed convolution with the kernel flipped",
           [("func", "altheory.nets.operators.conv_adjoint", _conv_adjoint_flipped)]),
    Mutant("conv-adjoint-same-crop-at-end", ("C1",), "asymmetric 'same' padding cropped from the "
           "wrong side", [("func", "altheory.nets.operators.conv_adjoint", _conv_adjoint_same_crop_at_end)]),
    Mutant("maxpool-adjoint-overwrites", ("C1",), "max-pool adjoint scatter_ instead of scatter_add_",
           [("func", "altheory.nets.operators.maxpool_adjoint", _maxpool_adjoint_overwrites)]),
    # C1/C2: piecewise-linear activations beyond PHT and torch.cat
    Mutant("clamp-margin-lower-breakpoint-only", ("C2",), "Hardtanh/ReLU6 margin |z - lo| only "
           "(the upper breakpoint forgotten)",
           [("func", "altheory.nets.graph._clamp_margin",
             lambda orig: (lambda z, lo, hi: orig(z, lo, float("inf"))))]),
    Mutant("leaky-slope-dropped-in-operator", ("C1",), "LeakyReLU/PReLU linearized as ReLU: D = "
           "diag(s), the off-side slope a forgotten",
           [("method", "altheory.nets.operators.Linearization._act_diagonal",
             lambda orig: (lambda self, node: self.sample_support[node.key].mask(self.i).astype(np.float64)))]),
    Mutant("cat-adjoint-offset-forgotten", ("C1",), "the adjoint of torch.cat sends every input the "
           "first block of rows (split offsets forgotten)",
           [("method", _STEP, _step_override("cat", lambda o, s, n, R, p, c: [
               (u, R.narrow(p[0], 0, size).reshape(R.shape[0], *s.shapes[u])) for u, size in zip(n.inputs, p[1])]))]),
    Mutant("clamp-upper-constant-not-in-c", ("C1",), "c_S misses the upper constant hi of "
           "Hardtanh/ReLU6 (0 on the upper region)",
           [("method", "altheory.nets.operators.Linearization._act_bias",
             lambda orig: (lambda self, node: None if (b := orig(self, node)) is None else np.where(
                 self.sample_support[node.key].upper_mask(self.i), 0.0, b)))]),
    # ---- kind "tests": guards that altheory verify does not exercise; a named test kills them ----
    # operators (tests/test_operators.py)
    Mutant("A-by-jacrev", (), "A_S computed with torch.func.jacrev instead of the composition "
           "(right numbers: C1's verdict passes; the no-autograd test kills it)",
           [("method", "altheory.nets.operators.Linearization.compose", _compose_by_jacrev)],
           killed_by_tests=(f"{_OPS}::test_c1_adjoint_composition_uses_no_autograd",)),
    Mutant("maxpool-adjoint-scatter-tested", (), "max-pool adjoint scatter_ instead of scatter_add_ "
           "(the test imports maxpool_adjoint by name: proves patches reach test modules)",
           [("func", "altheory.nets.operators.maxpool_adjoint", _maxpool_adjoint_overwrites)],
           killed_by_tests=(f"{_OPS}::test_c1_maxpool_adjoint_adds_when_two_windows_pick_the_same_input",)),
    Mutant("avgpool-adjoint-no-divisor", (), "the average-pool adjoint without the window divisors",
           [("func", "altheory.nets.operators.pool_adjoint", _pool_adjoint_no_divisor)],
           killed_by_tests=(f"{_OPS}::test_c1_avgpool_adjoint_is_rows_times_the_pool_matrix",)),
    Mutant("conv-adjoint-ignores-dilation", (), "conv_adjoint runs with dilation 1",
           [("func", "altheory.nets.operators.conv_adjoint", _conv_adjoint_no_dilation)],
           killed_by_tests=(f"{_OPS}::test_c1_conv_adjoint_geometries_that_need_care",)),
    Mutant("row-blocks-from-row-0", (), "every block of rows of the adjoint composition seeded "
           "from row 0 (the block offset forgotten)",
           [("method", "altheory.nets.operators.Linearization._compose_adjoint", _compose_adjoint_blocks_from_row_0)],
           killed_by_tests=(f"{_OPS}::test_c1_row_blocks_and_kept_adjoints_do_not_change_the_result",)),
    # nets: fingerprints and refusals (tests/test_bad_inputs.py, tests/test_support.py)
    Mutant("support-check-skips-fingerprint", (), "check_support_for never compares the weights "
           "fingerprint (a support from other weights accepted)",
           [("func", "altheory.nets.support.check_support_for", _force_kw("same_weights", False))],
           killed_by_tests=(f"{_BAD}[gated-other-weights]",)),
    Mutant("support-check-ignores-same-weights", (), "check_support_for ignores same_weights=False "
           "(the opt-out refused)",
           [("func", "altheory.nets.support.check_support_for", _force_kw("same_weights", True))],
           killed_by_tests=("tests/test_bad_inputs.py::test_fingerprint_opt_out_holds_a_support_while_weights_change",)),
    Mutant("param-signature-dropped", (), "the parameter-signature check never fires (a constant "
           "architecture hash)", [("func", "altheory.nets.support._param_signature", _const("arch"))],
           killed_by_tests=(f"{_BAD}[gated-other-arch]",)),
    Mutant("for-any-weights-keeps-digest", (), "S.for_any_weights() keeps the weights digest",
           [("method", "altheory.nets.support.MultiLayerSupport.for_any_weights", _for_any_weights_keeps_digest)],
           killed_by_tests=("tests/test_bad_inputs.py::test_fingerprint_opt_out_holds_a_support_while_weights_change",)),
    Mutant("fingerprint-leaves-out-buffers", (), "the weights fingerprint hashes parameters only "
           "(BatchNorm running statistics ignored)",
           [("func", "altheory.nets.support._state", _state_without_buffers)],
           killed_by_tests=("tests/test_support.py::test_fingerprint_follows_values_not_objects",)),
    Mutant("fingerprint-aligned-words", (), "the weights fingerprint sums the float64 words on "
           "their boundaries (a sign flip is 2^63: an even number of them cancels)",
           [("func", "altheory.nets.support._tensor_fingerprint", _fingerprint_aligned_words)],
           killed_by_tests=("tests/test_support.py::test_fixed_support_network_checks_then_holds",
                            "tests/test_fingerprint.py::test_fingerprint_sees_a_negated_or_rescaled_layer")),
    Mutant("fingerprint-slow-path-halves-swapped", (), "the fingerprint's torch-only shifted "
           "words (used inside torch.func) put the halves the other way round",
           [("func", "altheory.nets.support._shifted_words", _shifted_words_swapped)],
           killed_by_tests=("tests/test_fingerprint.py::test_shifted_words_slow_path_equals_the_buffer_view",)),
    Mutant("scheduler-any-address", (), "parse_scheduler passes any address on (an unknown "
           "scheme ends in dask's traceback)",
           [("func", "altheory.experiments.cluster.parse_scheduler", _scheduler_any_address)],
           killed_by_tests=("tests/test_bad_inputs_cli.py::test_bad_call_is_refused_with_one_line[verify --scheduler bogus://x]",)),
    Mutant("layer-operator-any-X", (), "layer_operator passes a non-numeric X on to torch (its raw "
           "message instead of the fix)",
           [("func", "altheory.nets.operators.layer_operator",
             _edited("if not np.issubdtype(Xa.dtype, np.number) or np.issubdtype(Xa.dtype, np.complexfloating):",
                     "if False:"))],
           killed_by_tests=(f"{_BAD}[layer-operator-X-string]",)),
    Mutant("objective-mask-any-values", (), "MLPObjective takes any numbers as a mask (a "
           "pre-activation passed as its support)",
           [("func", "altheory.descent.descent._check_mask", _mask_any_values)],
           killed_by_tests=("tests/test_descent.py::test_objective_bad_calls",)),
    Mutant("batch-digest-raw-dtype", (), "the batch digest hashes the raw dtype bytes (a float32 "
           "batch differs from its float64 cast)",
           [("func", "altheory.nets.support._digest", _digest_raw_dtype)],
           killed_by_tests=("tests/test_support.py::test_float32_batch_is_the_same_batch_in_float64",)),
    Mutant("check-supported-skips-other", (), "check_supported skips kind == 'other' (GELU run as is)",
           [("func", "altheory.nets.graph.check_supported", _check_supported_skips_other)],
           killed_by_tests=(f"{_BAD}[support-GELU]",)),
    Mutant("support-without-check-supported", (), "altheory.nets.support never calls "
           "check_supported (support() and check_support_for)",
           [("local", "altheory.nets.support.check_supported", _noop)],
           killed_by_tests=(f"{_BAD}[support-GELU]",)),
    Mutant("check-eval-no-dropout", (), "_check_eval without its Dropout branch",
           [("func", "altheory.nets.support._check_eval", _check_eval_no_dropout)],
           killed_by_tests=(f"{_BAD}[support-dropout-training]",)),
    Mutant("topk-k-zero-allowed", (), "_check_k tests k < 0 instead of k < 1",
           [("func", "altheory.nets.activations._check_k", _check_k_allows_zero)],
           killed_by_tests=(f"{_BAD}[topk-k-zero]",)),
    Mutant("topk-dim-no-range-check", (), "_check_dim wraps any dim modulo ndim",
           [("func", "altheory.nets.activations._check_dim", _check_dim_no_range)],
           killed_by_tests=(f"{_BAD}[topk-dim-out-of-range]",)),
    Mutant("topk-k-above-width-allowed", (), "topk_mask without its k > width refusal",
           [("func", "altheory.nets.activations.topk_mask", _topk_no_width_check)],
           killed_by_tests=(f"{_BAD}[topk-k-above-width]",)),
    Mutant("is-consistent-by-eq", (), "S.is_consistent is self == support(model, x) (False, not "
           "ValueError, for another architecture)",
           [("method", "altheory.nets.support.MultiLayerSupport.is_consistent", _is_consistent_by_eq)],
           killed_by_tests=(f"{_BAD}[S-is-consistent-other-arch]",)),
    Mutant("fsn-ignores-batch-digest", (), "FixedSupportNetwork never compares the batch digest",
           [("method", "altheory.solvers.problems.FixedSupportNetwork.__post_init__", _fsn_same_batch_ignored)],
           killed_by_tests=(f"{_BAD}[fsn-other-batch]",)),
    # the softmax head's certificate (tests/test_certify_run.py)
    Mutant("dual-point-not-rescaled", (), "the dual point is the softmax, not rescaled to the class "
           "frequencies (D = -inf with an unpenalised bias)",
           [("func", "altheory.solvers.softmax_head._dual_point", _dual_point_not_rescaled)],
           killed_by_tests=(f"{_CERT}::test_dual_point_is_feasible",)),
    Mutant("head-gap-sign-flipped", (), "head_certificate's gap = D - P",
           [("func", "altheory.solvers.softmax_head.head_certificate", _head_certificate_gap_flipped)],
           killed_by_tests=(f"{_CERT}::test_certificate_bounds_true_suboptimality",)),
    Mutant("dual-quarter-lambda", (), "the dual's quadratic term over 4 lambda, not 2 lambda",
           [("func", "altheory.solvers.softmax_head._dual", _dual_quarter_lambda)],
           killed_by_tests=(f"{_CERT}::test_dual_at_the_optimum_is_the_optimum",)),
    Mutant("head-status-always-optimal", (), "the head solver reports 'optimal' whatever its gap",
           [("func", "altheory.solvers.softmax_head.solve_softmax_head", _status_always_optimal)],
           killed_by_tests=(f"{_CERT}::test_certify_main_exit_statuses",)),
    Mutant("certify-ignores-saved-mean", (), "load_run loses the saved channel means, so certify "
           "never compares them with the data found",
           [("func", "altheory.train.runs.load_run", _load_run_without_mean)],
           killed_by_tests=(f"{_CERT}::test_certify_refuses_other_data",)),
    # checkpoints and resume (tests/test_certify_run.py)
    Mutant("checkpoint-unpickles-anything", (), "load_checkpoint with torch.load(weights_only=False)",
           [("func", "altheory.train.checkpoint.load_checkpoint", _load_checkpoint_copy(weights_only=False))],
           killed_by_tests=(f"{_CERT}::test_crafted_checkpoint_is_refused_without_running_code",)),
    Mutant("checkpoint-keys-unchecked", (), "load_checkpoint accepts any torch file (no key check)",
           [("func", "altheory.train.checkpoint.load_checkpoint", _load_checkpoint_copy(check_keys=False))],
           killed_by_tests=(f"{_CERT}::test_truncated_or_foreign_checkpoint_one_line",)),
    Mutant("resume-config-diff-ignored", (), "--resume accepts a changed config",
           [("func", "altheory.train.loop._check_resume", _noop)],
           killed_by_tests=(f"{_CERT}::test_resume_refuses_changes_with_one_line",)),
    Mutant("resume-forgets-epoch-sums", (), "a mid-epoch resume restarts the epoch's loss and "
           "accuracy sums at zero (steps and flips restored)",
           [("local", "altheory.train.loop.load_checkpoint", _resume_without_epoch_sums)],
           killed_by_tests=(f"{_CERT}::test_mid_epoch_resume_metrics",)),
    # io (tests/test_io.py)
    Mutant("output-path-accepts-non-regular", (), "check_output_path accepts a folder, FIFO or "
           "socket as the target",
           [("func", "altheory.io.check_output_path", _output_path_accepts_non_regular)],
           killed_by_tests=("tests/test_io.py::test_check_output_path_refuses_non_regular_targets",)),
    Mutant("atomic-write-leaves-temp", (), "write_bytes_atomic leaves its temp file on an error",
           [("func", "altheory.io.write_bytes_atomic", _atomic_write_leaves_temp)],
           killed_by_tests=("tests/test_io.py::test_atomic_write_replaces_and_removes_its_temp_file_on_error",)),
    Mutant("fast-certificate-gap-tenth", (), "the group-lasso duality gap reported 10x too small",
           [("func", "altheory.solvers.fast._certificate", _certificate_gap_tenth)],
           killed_by_tests=("tests/test_fast_solver.py::test_certificate_bounds_true_gap_of_any_point",)),
    Mutant("pe-cone-bound-low", (), "the Pilanci-Ergen cone bound 10% below the support function",
           [("func", "altheory.solvers.pilanci_ergen._pe_cone_bound", _cone_bound_low)],
           killed_by_tests=("tests/test_arrangements.py::test_cone_bound_is_the_support_function",)),
    Mutant("pe-project-identity", (), "the projection onto the pattern cone does nothing",
           [("func", "altheory.solvers.pilanci_ergen._pe_project", _project_identity)],
           killed_by_tests=("tests/test_arrangements.py::test_projection_lands_in_the_cone_and_is_nearest",)),
    Mutant("threads-large-ignores-busy", (), "the thread rule gives a large solve every thread "
           "even when other processes are running",
           [("func", "altheory.solvers.fast.solver_threads",
             _edited("work >= _LARGE_WORK and _busy_cpus() == 0", "work >= _LARGE_WORK"))],
           killed_by_tests=("tests/test_fast_solver.py::test_solver_threads_rule",)),
    Mutant("probe-memo-ignores-background", (), "the thread probe's reused choice ignores a "
           "change in the number of other running processes",
           [("func", "altheory.solvers.fast._probed",
             _edited("min(_busy_cpus(samples=3, pause=0.0005), most))", "0)"))],
           killed_by_tests=("tests/test_fast_solver.py::test_probe_choice_is_reused_for_one_shape_and_background",)),
    Mutant("probe-memo-never-expires", (), "the thread probe's choice is reused forever",
           [("func", "altheory.solvers.fast._probed",
             _edited("now - hit[0] <= _PROBE_TTL", "True"))],
           killed_by_tests=("tests/test_fast_solver.py::test_probe_choice_is_reused_for_one_shape_and_background",)),
    Mutant("newton-hess32-no-fallback", (), "a Newton step misled by float32 Hessian products "
           "is not retried with float64 ones",
           [("func", "altheory.solvers.fast._newton", _edited("if not ok and hess32:", "if False:"))],
           killed_by_tests=("tests/test_fast_solver.py::test_float64_newton_uses_float32_hessian_products_and_falls_back_when_they_mislead",)),
    Mutant("threads-always-all", (), "the solver's thread rule always takes every thread",
           [("func", "altheory.solvers.fast.solver_threads", _threads_always_all)],
           killed_by_tests=("tests/test_fast_solver.py::test_solver_threads_rule",)),
    Mutant("fast-woodbury-no-correction", (), "the sample-space Newton preconditioner without "
           "its Woodbury correction (R~^{-1} alone)",
           [("method", "altheory.solvers.fast._SampleSpacePrecond.__call__", _woodbury_no_correction)],
           killed_by_tests=("tests/test_fast_precond.py::test_sample_space_preconditioner_is_the_inverse_of_its_matrix",)),
    Mutant("fast-pcg-always-converged", (), "the Newton CG says it converged whatever its residual",
           [("func", "altheory.solvers.fast._pcg", _pcg_always_converged)],
           killed_by_tests=("tests/test_fast_precond.py::test_pcg_solves_the_newton_system_and_reports_convergence_honestly",)),
    Mutant("fast-newton-projection-unchecked", (), "the Newton line search takes the point with "
           "its crossing groups zeroed without the sufficient-decrease test",
           [("func", "altheory.solvers.fast._newton_step", _newton_projection_unchecked)],
           killed_by_tests=("tests/test_fast_precond.py::test_newton_step_is_a_descent_step_and_its_objective_is_exact",)),
    Mutant("pe-batched-bounds-low", (), "the batched cone bounds of the Pilanci-Ergen certificate "
           "10% below their value",
           [("func", "altheory.solvers.pilanci_ergen._pe_cone_bounds_batched", _pe_batched_bounds_low),
            ("func", "altheory.solvers.pilanci_ergen._pe_greedy_bounds", _pe_batched_bounds_low)],
           killed_by_tests=("tests/test_fast_pe_certificate.py::test_batched_cone_bounds_are_upper_bounds_and_never_worse_than_the_norm",)),
    Mutant("pe-lazy-refinement-stops-at-once", (), "the Pilanci-Ergen certificate refines no "
           "score exactly (its maximum stays a loose upper bound)",
           [("func", "altheory.solvers.pilanci_ergen._pe_certificate", _pe_lazy_stops_at_once)],
           killed_by_tests=("tests/test_fast_pe_certificate.py::test_lazy_certificate_equals_the_all_exact_one",)),
    Mutant("nnls-trusts-scipy", (), "non-negative least squares keeps SciPy's answer unchecked "
           "(wrong on some cone projections)",
           [("func", "altheory.solvers.nnls.solve_checked", _nnls_trusts_scipy)],
           killed_by_tests=("tests/test_nnls.py::test_scipy_failure_case_is_solved",)),
    Mutant("pe-missing-facets-unnoticed", (), "the restricted Pilanci-Ergen program keeps a "
           "solution that violates rows it was not given",
           [("func", "altheory.solvers.pilanci_ergen._pe_restricted_facets", _pe_cuts_ignored)],
           killed_by_tests=("tests/test_fast_pe_certificate.py::test_restricted_program_adds_the_facets_it_was_not_given",)),
    Mutant("pe-facet-multipliers-unchecked", (), "the cone multipliers found on a cone's facet "
           "rows are kept even when the point misses a row (a looser bound)",
           [("func", "altheory.solvers.pilanci_ergen._pe_exact_mu", _pe_exact_mu_unchecked)],
           killed_by_tests=("tests/test_fast_pe_certificate.py::test_exact_multipliers_on_facet_rows_equal_the_full_nnls",)),
    Mutant("pe-facet-greedy-signed", (), "the facet-row greedy of the batched cone bounds takes "
           "steps of either sign (its points are no longer bounds)",
           [("func", "altheory.solvers.pilanci_ergen._pe_greedy_bounds", _pe_facet_greedy_signed)],
           killed_by_tests=("tests/test_fast_pe_certificate.py::test_batched_bounds_on_facet_rows_are_upper_bounds",)),
    Mutant("chol-solve-one-triangle", (), "the sample-space preconditioner applies L^{-1} "
           "only, not (L L^T)^{-1}",
           [("func", "altheory.solvers.fast._chol_solve", _chol_solve_one_triangle)],
           killed_by_tests=("tests/test_fast_precond.py::test_cholesky_pair_of_triangular_solves_equals_cholesky_solve",
                            "tests/test_fast_precond.py::test_sample_space_preconditioner_is_the_inverse_of_its_matrix")),
    Mutant("pht-tau-and-k-accepted", (), "PHT(tau=0.1, k=2) silently drops the threshold",
           [("method", "altheory.nets.activations.PHT.__init__", _pht_tau_and_k)],
           killed_by_tests=(f"{_BAD}[PHT-tau-and-k]",)),
    Mutant("config-tau-and-topk-accepted", (), "the train config accepts tau beside topk",
           [("method", "altheory.train.config.TrainConfig.validate", _config_tau_and_topk)],
           killed_by_tests=("tests/test_certify_run.py::test_topk_config_has_one_meaning",)),
    Mutant("small-solve-singular-unflagged", (), "the closed-form 2x2/3x3 solves of the batched "
           "cone projection take a singular system as solved",
           [("func", "altheory.solvers.pilanci_ergen._small_spd_solve", _small_solve_unflagged)],
           killed_by_tests=("tests/test_fast_pe_certificate.py::test_small_closed_form_solves_equal_lapack_and_flag_singular_systems",)),
    Mutant("support-digest-ignores-upper", (), "the alternation's cycle test hashes a support "
           "without the upper region of a three-state activation",
           [("func", "altheory.alternation.alternation._support_digest", _digest_ignores_upper)],
           killed_by_tests=("tests/test_alternation.py::test_support_digest_sees_every_part_of_the_support",)),
    Mutant("pe-projection-signed", (), "the batched cone projection accepts an active set with a "
           "negative multiplier (not the projection: an inexact score taken as exact)",
           [("func", "altheory.solvers.pilanci_ergen._pe_project_batched", _pe_projection_signed)],
           killed_by_tests=("tests/test_fast_pe_certificate.py::test_batched_projection_equals_the_nnls_projection",)),
    Mutant("pe-batched-projection-unchecked", (), "the certificate takes a projection onto a "
           "cone's facet rows as exact without checking it against every row",
           [("func", "altheory.solvers.pilanci_ergen._pe_certificate", _pe_batched_projection_unchecked)],
           killed_by_tests=("tests/test_fast_pe_certificate.py::test_certificate_with_facets_missing_falls_back_to_every_row",)),
    Mutant("pe-theta-from-gradient", (), "the Pilanci-Ergen certificate uses the gradient of the "
           "primal point instead of the interior-point dual (stalls near the square root of "
           "the solver's accuracy)",
           [("func", "altheory.solvers.pilanci_ergen.solve_pilanci_ergen", _pe_theta_from_gradient)],
           killed_by_tests=("tests/test_fast_pe_certificate.py::test_dual_point_of_the_restricted_solver_certifies_tightly",)),
    Mutant("pe-dual-unscaled", ("C5",), "the Pilanci-Ergen dual value at the restricted "
           "program's dual point, not scaled to be feasible for every pattern (only the cvxpy "
           "cross-check sees it)",
           [("local", "altheory.solvers.pilanci_ergen._dual_on_ray", _pe_dual_unscaled)]),
    Mutant("c5-cross-check-blind", (), "C5's cross-check of the certified solver against "
           "cvxpy measures nothing",
           [("func", "altheory.claims.c5_relu_convex_program._cross_check", _c5_cross_check_blind)],
           killed_by_tests=("tests/test_c3_c7_claims.py::test_C5_cross_check_against_cvxpy_can_fail",)),
    Mutant("pe-feasible-no-fallback", (), "the Pilanci-Ergen feasibility step keeps a block "
           "its greedy steps left outside its cone",
           [("func", "altheory.solvers.pilanci_ergen._pe_feasible", _pe_feasible_no_fallback)],
           killed_by_tests=("tests/test_fast_pe_certificate.py::test_feasibility_step_makes_every_block_feasible_and_moves_it_little",)),
    Mutant("pe-feasible-batch-unchecked", (), "the Pilanci-Ergen feasibility step keeps the "
           "batched projections that were not found (the block unmoved, outside its cone)",
           [("func", "altheory.solvers.pilanci_ergen._pe_feasible", _pe_feasible_batch_unchecked)],
           killed_by_tests=("tests/test_fast_pe_certificate.py::test_feasibility_step_makes_every_block_feasible_and_moves_it_little",)),
    Mutant("pe-feasible-batch-shrunk", (), "the Pilanci-Ergen feasibility step's batched "
           "projections are feasible points short of the projection",
           [("func", "altheory.solvers.pilanci_ergen._pe_feasible", _pe_feasible_batch_shrunk)],
           killed_by_tests=("tests/test_fast_pe_certificate.py::test_feasibility_step_makes_every_block_feasible_and_moves_it_little",)),
    Mutant("pe-flip-facets-drop-last", (), "the facets read off the pattern set miss one per cone",
           [("method", "altheory.solvers.pilanci_ergen._PeFlipFacets.__call__", _flip_facets_drop_last)],
           killed_by_tests=("tests/test_fast_pe_certificate.py::test_flip_facets_are_the_geometric_facets_of_a_complete_enumeration",)),
    Mutant("masked-subset-sorted", (), "the design restricted to groups idx holds them in "
           "sorted order (ids and columns disagree)",
           [("method", "altheory.solvers.fast.MaskedDesign.subset", _subset_gathers_wrong_rows)],
           killed_by_tests=("tests/test_fast_solver.py::test_masked_design_subset_matches_the_dense_columns",)),
    Mutant("blas3-threads-under-load", (), "the Woodbury build widens to every thread beside "
           "busy processes",
           [("method", "altheory.solvers.fast._blas3_threads.__enter__", _blas3_ignores_load)],
           killed_by_tests=("tests/test_fast_solver.py::test_blas3_threads_widen_only_inside_an_auto_solve_on_an_idle_machine",)),
    Mutant("pe-flip-facets-memo-stale", (), "a row added to a pattern's facets after a point "
           "violated it is lost to the kept rows",
           [("method", "altheory.solvers.pilanci_ergen._PeFlipFacets.add", _flip_facets_memo_stale)],
           killed_by_tests=("tests/test_fast_pe_certificate.py::test_flip_facets_remember_their_rows_until_a_row_is_added",)),
    Mutant("newton-never-hands-back", (), "the Newton polish keeps taking 1/16-long steps on a "
           "wide design instead of handing back to the first-order pass",
           [("func", "altheory.solvers.fast._SHORT_STEPS", lambda orig: 10 ** 9)],
           killed_by_tests=("tests/test_fast_precond.py::test_newton_hands_back_when_its_steps_stay_short",)),
    Mutant("pcg-no-time-budget", (), "CG rents a stale preconditioner past its time budget",
           [("func", "altheory.solvers.fast._pcg", _pcg_no_time_budget)],
           killed_by_tests=("tests/test_fast_solver.py::test_pcg_stops_unconverged_past_its_time_budget",)),
]

# -- checks proven by bugs nobody wrote down: one block per part of that work, so that work on
# -- one part never edits another's lines.
# §1 the float-comparison rule and §3 the solver evidence of the claims
_FLOATS = "tests/test_floats.py"


def _floats_slack_without_scale(orig):
    """The slack ignores ``scale``: values near 0 through cancellation get no rounding."""
    def f(*values, scale=0.0, kappa=64.0, dtype=np.float64):
        return orig(*values, scale=0.0, kappa=kappa, dtype=dtype)
    return f


def _floats_slack_of_infinities(orig):
    """The slack from every magnitude, infinities included (the rule as first written)."""
    def f(*values, scale=0.0, kappa=64.0, dtype=np.float64):
        if kappa < 0 or not np.isfinite(kappa):
            raise ValueError(f"kappa must be a finite number >= 0; got kappa={kappa!r}.")
        mags = [abs(float(scale))] + [float(np.max(np.abs(np.asarray(v, dtype=np.float64))))
                                      for v in values if np.size(v)]
        return float(kappa) * float(np.finfo(dtype).eps) * max(mags)
    return f


def _floats_nan_passes(orig):
    def f(a, b, **kw):
        if np.isnan(np.asarray(a, dtype=np.float64)).any() or np.isnan(np.asarray(b, dtype=np.float64)).any():
            return True
        return orig(a, b, **kw)
    return f


def _head_gap_unclamped(orig):
    """head_gap as first written: F_star the solver's F, F_lower its bound, unclamped."""
    def f(*a, **k):
        r = orig(*a, **k)
        s = r["solution"]
        return {**r, "F_star": s.F, "F_lower": s.F_lower, "gap": (r["F_sgd"] - s.F) / r["F0"],
                "gap_certified": (r["F_sgd"] - s.F_lower) / r["F0"]}
    return f


def _pe_projection_leaves_points_in_the_cone(orig):
    """The batched projection never accepts the empty active set: a point already in K (on a
    face) is left to the NNLS, as at the apex, though it is found in exact arithmetic."""
    def f(U, x):
        p, found = orig(U, x)
        inside = (np.einsum("mfd,md->mf", U, x) >= -1e-9 * np.linalg.norm(x, axis=1)[:, None]).all(1)
        p, found = p.copy(), found & ~inside
        p[inside] = x[inside]
        return p, found
    return f


MUTANTS += [
    Mutant("floats-slack-ignores-scale", (), "altheory.floats' slack ignores the scale (a bound "
           "3e-16 above a value near 0 by cancellation fails)",
           [("func", "altheory.floats.slack", _floats_slack_without_scale)],
           killed_by_tests=(f"{_FLOATS}::test_scale_is_the_magnitude_of_the_inputs",)),
    Mutant("floats-leq-sides-swapped", (), "leq(a, b) tests b <= a",
           [("func", "altheory.floats.leq", lambda orig: lambda a, b, **kw: orig(b, a, **kw))],
           killed_by_tests=(f"{_FLOATS}::test_leq_geq_close_true_within_the_slack_false_just_beyond",)),
    Mutant("floats-nan-passes", (), "leq passes a comparison with a NaN",
           [("func", "altheory.floats.leq", _floats_nan_passes)],
           killed_by_tests=(f"{_FLOATS}::test_nan_never_passes",)),
    Mutant("floats-slack-of-infinities", (), "an infinite value makes the slack infinite "
           "(leq(inf, 1) true)",
           [("func", "altheory.floats.slack", _floats_slack_of_infinities)],
           killed_by_tests=(f"{_FLOATS}::test_infinities_compare_as_infinities",)),
    Mutant("head-dual-not-clamped", (), "the softmax head reports a dual bound above its primal "
           "value (a negative gap) instead of min(D, F)",
           [("func", "altheory.solvers.softmax_head._certified_bracket",
             lambda orig: lambda primal, dual, *, scale: (dual, primal - dual))],
           killed_by_tests=(f"{_CERT}::test_head_dual_above_the_primal_by_rounding_is_clamped",)),
    Mutant("head-dual-clamped-beyond-rounding", (), "a dual bound above the primal value by more "
           "than rounding is clamped silently (a broken certificate reported as a closed gap)",
           [("func", "altheory.solvers.softmax_head._certified_bracket",
             lambda orig: lambda primal, dual, *, scale: (min(dual, primal), primal - min(dual, primal)))],
           killed_by_tests=(f"{_CERT}::test_certified_bracket_clamps_within_the_slack_only",)),
    Mutant("certify-bracket-unclamped", (), "certify's bracket is the solver's (primal, dual) "
           "as first written: neither the trained head's bounds nor the clamp",
           [("func", "altheory.train.certify._bracket",
             lambda orig: lambda cert, sol, F0: (sol.primal, sol.dual))],
           killed_by_tests=(f"{_CERT}::test_certify_bracket_takes_the_best_bounds_and_clamps",)),
    Mutant("head-gap-unclamped", (), "the trainer's head_gap reports the solver's F as F* "
           "(a gap of -2e-16 when the SGD head is optimal)",
           [("func", "altheory.train.head.head_gap", _head_gap_unclamped)],
           killed_by_tests=("tests/test_train.py::test_head_gap_is_never_negative_when_the_solver_rounds_above_the_trained_head",)),
    Mutant("pe-projection-leaves-points-in-the-cone", (), "the batched cone projection leaves "
           "every point already in its cone to the NNLS (allowed only at the apex)",
           [("func", "altheory.solvers.pilanci_ergen._pe_project_batched",
             _pe_projection_leaves_points_in_the_cone)],
           killed_by_tests=("tests/test_fast_pe_certificate.py::test_batched_projection_equals_the_nnls_projection",)),
    Mutant("pe-never-certifies", ("C5",), "the certified Pilanci-Ergen solver never certifies "
           "(max_iter): relu_program falls back to Clarabel, C5's certificate and cross-check "
           "are never counted (the claim passed on its other checks before solver evidence)",
           [("func", "altheory.solvers.pilanci_ergen.solve_pilanci_ergen",
             lambda orig: lambda *a, **k: dataclasses.replace(orig(*a, **k), status="max_iter"))]),
    Mutant("fast-layer-never-certifies", ("C3",), "the fast per-layer solver never certifies "
           "(max_iter): every fast-vs-cvxpy instance of C3 is solver-max_iter",
           [("func", "altheory.solvers.fast.solve_layer",
             lambda orig: lambda *a, **k: dataclasses.replace(orig(*a, **k), status="max_iter"))]),
    Mutant("fast-group-lasso-never-certifies", ("C4",), "the fast group-lasso solver never "
           "certifies (max_iter): every fast-vs-cvxpy instance of C4 is solver-max_iter",
           [("func", "altheory.solvers.fast.solve_problem",
             lambda orig: lambda *a, **k: dataclasses.replace(orig(*a, **k), status="max_iter"))]),
    Mutant("c3-solver-minimum-unchecked", (), "C3 states no minimum of counted fast-vs-cvxpy "
           "instances",
           [("local", "altheory.claims.c3_per_layer.require_solver_checks",
             lambda orig: lambda *a, **k: None)],
           killed_by_tests=("tests/test_solver_evidence.py::test_C3_fast_solver_that_never_certifies_leaves_the_claim_unverified",)),
    Mutant("c4-solver-minimum-unchecked", (), "C4 states no minimum of counted solver instances",
           [("local", "altheory.claims.c4_two_layer_fixed_support.require_solver_checks",
             lambda orig: lambda *a, **k: None)],
           killed_by_tests=("tests/test_solver_evidence.py::test_C4_fast_solver_that_never_certifies_leaves_the_claim_unverified",)),
    Mutant("c5-solver-minimum-unchecked", (), "C5 states no minimum of counted certificate, "
           "cross-check and map instances",
           [("local", "altheory.claims.c5_relu_convex_program.require_solver_checks",
             lambda orig: lambda *a, **k: None)],
           killed_by_tests=("tests/test_solver_evidence.py::test_C5_certified_solver_falling_back_is_counted_and_leaves_the_claim_unverified",)),
    Mutant("c8-joint-minimum-unchecked", (), "C8 states no minimum of counted joint optima",
           [("local", "altheory.claims.c8_global_given_support.require_joint_solves",
             lambda orig: lambda *a, **k: None)],
           killed_by_tests=("tests/test_solver_evidence.py::test_C8_joint_solver_that_never_answers_leaves_the_claim_unverified",)),
    Mutant("c5-fallback-skips-certificate", (), "where the certified solver fell back, C5 skips "
           "its certificate and cross-check instead of recording them uncounted",
           [("local", "altheory.claims.c5_relu_convex_program._not_certified",
             lambda orig: lambda *a, **k: [])],
           killed_by_tests=("tests/test_solver_evidence.py::test_C5_certified_solver_not_run_is_recorded_not_skipped",)),
    Mutant("solver-minimum-one", (), "a solver check needs one counted instance, however many "
           "were planned (a broken path among several passes)",
           [("local", "altheory.claims._solver.solver_minimum", lambda orig: lambda a: 1)],
           killed_by_tests=("tests/test_solver_evidence.py::test_C5_one_broken_path_of_two_is_enough_to_leave_it_unverified",)),
    Mutant("solver-minimum-one-in-two", (), "half of a solver check's instances may go uncounted",
           [("local", "altheory.claims._solver.MISS_ONE_IN", lambda orig: 2)],
           killed_by_tests=("tests/test_solver_evidence.py::test_require_solver_checks_states_the_minimum_per_kind",)),
    Mutant("fallback-not-recorded", (), "the claims record no fallback (fallback_of sees none)",
           [("func", "altheory.claims._solver.fallback_of", lambda orig: lambda *a, **k: None)],
           killed_by_tests=("tests/test_solver_evidence.py::test_C3_C4_reference_fallback_is_recorded_on_every_instance_resting_on_it",)),
    Mutant("fallbacks-not-counted", (), "the report counts no fallback",
           [("method", "altheory.claims.ClaimReport.fallbacks", lambda orig: property(lambda self: {}))],
           killed_by_tests=("tests/test_solver_evidence.py::test_C3_C4_reference_fallback_is_recorded_on_every_instance_resting_on_it",)),
    Mutant("per-layer-fallback-silent", (), "dispatch.per_layer falls back from the fast solver "
           "to cvxpy without listing the fast attempt",
           [("func", "altheory.solvers.dispatch.per_layer",
             lambda orig: lambda *a, **k: (lambda r: dataclasses.replace(
                 r, attempts=[t for t in r.attempts if t[0] != "altheory-fast"])
                 if hasattr(r, "attempts") else r)(orig(*a, **k)))],
           killed_by_tests=("tests/test_solver_evidence.py::test_per_layer_fallback_from_the_fast_solver_is_in_the_attempts",)),
]
# §2 bounds and certificates away from the optimum (tests/test_bounds_off_optimum.py)
MUTANTS += [
    Mutant("bounds-dual-ray-1pc-high-off-optimum", (), "the group-lasso dual value raised by 1% "
           "wherever the gradient's ray leaves the dual feasible set (s_max > 1): right at the "
           "optimum, wrong away from it",
           [("func", "altheory.solvers.fast._dual_on_ray",
             lambda orig: lambda g, smax, y, loss: (
                 lambda v: v + 0.01 * abs(v) if smax > 1 + 1e-6 and math.isfinite(v) else v)(
                 orig(g, smax, y, loss)))],
           killed_by_tests=("tests/test_bounds_off_optimum.py::test_C4_group_lasso_dual_bound_off_optimum",)),
    Mutant("bounds-dual-ray-unclipped", (), "the squared loss's best point of the ray is not "
           "clipped to |alpha| <= 1/s_max: the dual feasibility scaling skipped",
           [("func", "altheory.solvers.fast._dual_on_ray",
             _edited("        a = min(max(a, -amax), amax)\n", "        a = a\n"))],
           killed_by_tests=("tests/test_bounds_off_optimum.py::test_C4_group_lasso_dual_bound_at_any_dual_point",
                            "tests/test_bounds_off_optimum.py::test_C4_group_lasso_dual_bound_off_optimum")),
    Mutant("bounds-refined-gap-of-the-polished-point", (), "the refined group-lasso certificate "
           "reports the gap of the polished point, not of the U it was given",
           [("func", "altheory.solvers.fast.group_lasso_certificate",
             _edited("        gap = primal - dual\n", "        gap = polished.objective - dual\n"))],
           killed_by_tests=("tests/test_bounds_off_optimum.py::test_C4_group_lasso_dual_bound_off_optimum",)),
    Mutant("bounds-layer-dual-unprojected", (), "the per-layer dual point is not projected onto "
           "{Phi_b^T alpha = 0}: exact at the optimum (the gradient is orthogonal there), not a "
           "bound away from it",
           [("func", "altheory.solvers.fast.solve_layer",
             _edited("            a = a - Q @ (Q.T @ a)", "            a = a"))],
           killed_by_tests=("tests/test_bounds_off_optimum.py::test_C3_per_layer_dual_bound_off_optimum",)),
    Mutant("bounds-pe-cone-score-one-side", (), "the exact cone scores of the Pilanci-Ergen "
           "certificate forget the w_i side, sigma_K(-X^T D_i theta): only violated patterns "
           "(away from the optimum) are scored low",
           [("func", "altheory.solvers.pilanci_ergen._pe_certificate",
             _edited("max(_pe_cone_bound(C, a[i], mp), _pe_cone_bound(C, -a[i], mm)) / lam",
                     "_pe_cone_bound(C, a[i], mp) / lam"))],
           killed_by_tests=("tests/test_bounds_off_optimum.py::test_C5_pilanci_ergen_dual_bound_off_optimum",)),
    Mutant("bounds-group-nuclear-frobenius", (), "the vector-output lower bound penalises "
           "Frobenius norms instead of nuclear norms (a bound, but not the program's optimum "
           "and not attained)",
           [("func", "altheory.solvers.convex.group_nuclear",
             _edited("obj = obj + lam * sum(cp.normNuc(U) for U in Us)",
                     "obj = obj + lam * sum(cp.norm(U, 'fro') for U in Us)"))],
           killed_by_tests=("tests/test_bounds_off_optimum.py::test_C4_group_nuclear_lower_bound_off_optimum",)),
    Mutant("bounds-certify-factors-as-convex", (), "certify scores factors (W1, w2) with the "
           "convex objective of U = w1 w2 (lam sum |u_j|, below the weight decay they pay)",
           [("func", "altheory.certificates.certificates.certify",
             lambda orig: lambda problem, weights=None, **k: orig(
                 problem, __import__("altheory.solvers.problems", fromlist=["_"]).factors_to_U(
                     *weights) if isinstance(weights, tuple) else weights, **k))],
           killed_by_tests=("tests/test_bounds_off_optimum.py::test_C4_certify_two_layer_gap_off_optimum",)),
    Mutant("bounds-lifted-sum-not-mean", (), "C7's lifted bound not divided by n (the loss "
           "summed over samples, not averaged): above the network's objective",
           [("func", "altheory.certificates.certificates.lifted_bound",
             _convex_objective(lambda v, a, k: v * len(a[2])))],
           killed_by_tests=("tests/test_bounds_off_optimum.py::test_C7_lifted_lower_bound_off_optimum",)),
    Mutant("bounds-softmax-dual-drops-bias-penalty", (), "the softmax head's dual drops the bias "
           "penalty's term -|mean(A - Y)|^2/(2 lam_b)",
           [("func", "altheory.solvers.softmax_head._dual",
             _edited("        D = D - (gb * gb).sum() / (2 * lam_b)", "        D = D"))],
           killed_by_tests=("tests/test_bounds_off_optimum.py::test_C8_softmax_head_dual_bound_off_optimum",)),
    Mutant("bounds-head-strong-convexity-loose", (), "the trainer's exact head bounds F* by "
           "F - |grad|^2/(8 l2): right at the optimum (grad = 0), above F* away from it",
           [("func", "altheory.train.head.solve_head",
             lambda orig: _edited("F - gnorm ** 2 / (2 * l2)", "F - gnorm ** 2 / (8 * l2)")(
                 orig.__wrapped__))],  # the function under torch.no_grad's wrapper
           killed_by_tests=("tests/test_bounds_off_optimum.py::test_C8_head_strong_convexity_bound_off_optimum",)),
    Mutant("bounds-head-gradient-without-bias", (), "the trainer's exact head measures the "
           "gradient of W only (the bias's part dropped from the strong-convexity bound)",
           [("func", "altheory.train.head.solve_head",
             lambda orig: _edited("    gnorm = float(G.norm())\n    F = float(F)",
                                  "    gnorm = float(G[:, :p].norm())\n    F = float(F)")(
                 orig.__wrapped__))],
           killed_by_tests=("tests/test_bounds_off_optimum.py::test_C8_head_strong_convexity_bound_off_optimum",)),
    Mutant("bounds-certify-run-lower-is-the-solver-value", (), "certify_run's lower end of the "
           "bracket is the solver's objective (F* only once the solver has converged)",
           [("func", "altheory.train.certify.certify_run",
             lambda orig: lambda *a, **k: (lambda r: dataclasses.replace(
                 r, F_star_lower=r.F_star_upper, gap_certified=r.gap_lower))(orig(*a, **k)))],
           killed_by_tests=("tests/test_bounds_off_optimum.py::test_C8_certify_run_bracket_off_optimum",)),
]
# §4 verdict and evidence logic on every path (tests/test_verdict_paths.py)
MUTANTS += [
    Mutant("timer-never-counts", (), "Timer records the start time twice: every claim's "
           "wall time reads 0 s",
           [("method", "altheory.claims.Timer.__exit__", lambda orig: lambda self, *exc: (
               setattr(self, "seconds", 0.0), False)[1])],
           killed_by_tests=("tests/test_verdict_paths.py::test_error_report_and_timer",)),
    Mutant("verdict-error-before-fail", (), "a crash beside a finding reads ERROR, not FAIL",
           [("method", "altheory.claims.ClaimReport.verdict", lambda orig: property(
               lambda self: "ERROR" if (self.error is not None or self.counts["error"])
               else orig.fget(self)))],
           killed_by_tests=("tests/test_verdict_paths.py::test_verdict_table",)),
    Mutant("verdict-pass-ignores-evidence", (), "PASS on one counted pass, minimum evidence unread",
           [("method", "altheory.claims.ClaimReport.verdict", lambda orig: property(
               lambda self: "PASS" if (self.asserted and self.n_pass and not self.n_fail
                                       and self.error is None and not self.counts["error"])
               else orig.fget(self)))],
           killed_by_tests=("tests/test_verdict_paths.py::test_evidence_met_in_one_group_and_not_in_another_is_unverified_until_both_are",)),
    Mutant("worst-nan-order-dependent", (), "the worst counted value is Python's max, which keeps "
           "or drops a NaN by instance order",
           [("method", "altheory.claims.ClaimReport.worst", lambda orig: property(
               lambda self: max([i.value for i in self.instances if i.status in ("pass", "fail")
                                 and i.value is not None] or [math.nan])))],
           killed_by_tests=("tests/test_verdict_paths.py::test_a_nan_counted_value_is_never_hidden_by_a_finite_one",)),
    Mutant("exit-code-non-strict-forgives-fail", (), "--allow-unverified lets a FAIL exit 0",
           [("func", "altheory.claims.report.exit_code", lambda orig: lambda reports, *, strict=True:
             orig(reports, strict=strict) if strict else
             (2 if not list(reports) else int(any(r.verdict == "ERROR" for r in reports))))],
           killed_by_tests=("tests/test_verdict_paths.py::test_exit_code_of_mixed_and_empty_runs",)),
    Mutant("require-accepts-any-minimum", (), "ClaimReport.require records a minimum of 0 and an "
           "unknown kind",
           [("method", "altheory.claims.ClaimReport.require", lambda orig:
             lambda self, group, required, counted, runs=0, *, kind="certified local minima":
             self.evidence.append(__import__("altheory.claims", fromlist=["Evidence"]).Evidence(
                 group, required, int(counted), int(runs), kind)) or self.evidence[-1])],
           killed_by_tests=("tests/test_verdict_paths.py::test_require_refuses_a_minimum_that_verifies_nothing",)),
    Mutant("evidence-json-without-kind", (), "the report's JSON leaves out what an evidence counts",
           [("method", "altheory.claims.ClaimReport.to_dict", lambda orig: lambda self: {
               **orig(self), "evidence": [{k: v for k, v in e.items() if k != "kind"}
                                          for e in orig(self)["evidence"]]})],
           killed_by_tests=("tests/test_verdict_paths.py::test_json_round_trip_keeps_every_field",)),
    Mutant("table-evidence-kinds-lumped", (), "the summary table counts evidence groups of both "
           "kinds together",
           [("local", "altheory.claims.report._evidence_cell", lambda orig: lambda r:
             f"{sum(e.met for e in r.evidence)}/{len(r.evidence)} groups" if r.evidence else "—")],
           killed_by_tests=("tests/test_verdict_paths.py::test_summary_table_renders_every_cell",)),
    Mutant("run-claims-fallbacks-unprinted", (), "altheory verify prints no line for the solver "
           "fallbacks of a claim",
           [("local", "altheory.claims.report.fallback_line", lambda orig: lambda r: "")],
           killed_by_tests=("tests/test_verdict_paths.py::test_run_claims_prints_evidence_fallbacks_notes_and_writes_json",)),
    Mutant("zero-hessian-eigs-nan", (), "a zero Hessian has NaN extreme eigenvalues (an affine "
           "objective is never classified)",
           [("func", "altheory.descent.endpoints.symmetric_extreme_eigs", lambda orig: lambda H:
             (math.nan, math.nan) if not np.abs(np.asarray(H, dtype=np.float64)).max(initial=0.0)
             else orig(H))],
           killed_by_tests=("tests/test_verdict_paths.py::test_classify_endpoint_of_an_objective_with_a_zero_hessian",)),
    Mutant("judge-lower-bound-as-optimum", (), "an end point above a lower bound is judged as if "
           "the bound were the optimum",
           [("func", "altheory.descent.endpoints.judge_endpoint", lambda orig:
             lambda *a, **k: orig(*a, **{**k, "star_kind": "global"}))],
           killed_by_tests=("tests/test_verdict_paths.py::test_judge_endpoint_every_branch",)),
    Mutant("raw-end-point-below-unchecked", (), "a raw end point below the optimum passes when "
           "its polished point does not lie below",
           [("func", "altheory.claims._descent.run_endpoint", lambda orig: lambda *a, **k: (
               lambda r: ("pass", 0.0, r[2]) if "raw end point lies below" in r[2].get("why", "")
               else r)(orig(*a, **k)))],
           killed_by_tests=("tests/test_verdict_paths.py::test_run_endpoint_raw_point_below_the_optimum_fails_even_when_the_polish_is_above",)),
    Mutant("c8-verdict-one-sided", (), "C8 judges the absolute gap: weights below an exact "
           "optimum of their support pass",
           [("local", "altheory.claims.c8_global_given_support._verdict", lambda orig:
             lambda ep, gaps, detail: orig(ep, {**gaps, "joint_gap": None if gaps.get("joint_gap") is None
                                                else abs(gaps["joint_gap"]),
                                                "layer_gaps": {k: None if v is None else abs(v)
                                                               for k, v in gaps["layer_gaps"].items()}},
                                           detail))],
           killed_by_tests=("tests/test_verdict_paths.py::test_C8_verdict_of_a_classified_end_point",)),
    Mutant("c9-slack-unchecked", (), "C9's support-preserving verdict never reads the slack",
           [("local", "altheory.claims.c9_alternation._support_preserving_verdict", lambda orig:
             lambda bad, inc, inv: orig(bad, inc, {**inv, "slack_violation": 0.0}))],
           killed_by_tests=("tests/test_verdict_paths.py::test_C9_support_preserving_verdict_every_branch",)),
]
# §5 sharp checks where the code grew new paths (tests/test_sharp_checks.py)
_SHARP = "tests/test_sharp_checks.py"
_SHARP_POOL = f"{_SHARP}::test_C2_maxpool_margin_is_sharp_after_each_activation"
_SHARP_EDIT = f"{_SHARP}::test_C1_every_consumer_refuses_a_support_whose_weights_were_edited"
_SHARP_RESUME = f"{_SHARP}::test_resumed_run_logs_every_row_and_column_of_the_uninterrupted_run"


def _sharp_pool_margin(scale_free: float, drop_dominant: bool):
    """The max-pool margin scaled by ``scale_free`` where no activation's support holds entries
    out of the competition (after LeakyReLU/PReLU), or computed without the upper region."""
    def make(orig):
        def f(x, mod, out_hw, held=None, dominant=None):
            r = orig(x, mod, out_hw, held, None if drop_dominant else dominant)
            return r * scale_free if held is None else r
        return f
    return make


def _sharp_digest_by_version(orig):
    """The weights fingerprint cached per tensor storage and autograd version counter: an edit
    through ``.data`` or a numpy view moves neither."""
    from altheory.nets.support import _state

    memo: dict = {}

    def f(model):
        key = tuple((name, t.data_ptr(), t._version) for name, t in _state(model))
        if key not in memo:
            memo[key] = orig(model)
        return memo[key]
    return f


def _sharp_trim_old_columns(orig):
    """The resume's CSV trim rewrites the file with the columns of an older version (no
    head_grad_norm): rows written after the resume no longer match the header."""
    def f(path, key, last):
        import csv

        if not path.is_file():
            return
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        keep = [r for r in rows if r.get(key) not in (None, "") and float(r[key]) <= last]
        if len(keep) != len(rows):
            with open(path, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=[k for k in rows[0] if k != "head_grad_norm"],
                                   extrasaction="ignore")
                w.writeheader()
                w.writerows(keep)
    return f


def _sharp_restore_forgets(what: str):
    """The resume restores everything but the flips counted in the interrupted epoch
    (``flips``) or the gate's refresh count (``refreshes``: the first refresh after a resume
    then counts no flips)."""
    def make(orig):
        def f(run, ckpt):
            orig(run, ckpt)
            if what == "flips":
                run.stepper.flips = [0, 0]
            elif run.gating is not None:
                run.gating.refreshes = 0
        return f
    return make


def _sharp_certify_no_lam_b(orig):
    def f(*a, **k):
        k["lam_b"] = 0.0
        return orig(*a, **k)
    return f


def _sharp_rows_drop_margins(orig):
    def f(self, decode=()):
        out = orig(self, decode)
        for r in out.values():
            if isinstance(r.get("run"), dict):
                r["run"].pop("margin", None)
        return out
    return f


def _sharp_pe_add_a_tenth(orig):
    def f(V, W):
        return max(1, orig(V, W) // 10)
    return f


MUTANTS += [
    Mutant("maxpool-margin-leaky-half", (), "the max-pool margin after LeakyReLU/PReLU is half "
           "the half-gap (valid but loose)",
           [("func", "altheory.nets.graph._maxpool_margin", _sharp_pool_margin(0.5, False))],
           killed_by_tests=(f"{_SHARP_POOL}[leaky]", f"{_SHARP_POOL}[prelu]")),
    Mutant("maxpool-margin-ignores-upper", (), "the max-pool margin after ReLU6/Hardtanh lets "
           "the entries under an upper constant compete (too small where they tie)",
           [("func", "altheory.nets.graph._maxpool_margin", _sharp_pool_margin(1.0, True))],
           killed_by_tests=(f"{_SHARP_POOL}[relu6]", f"{_SHARP_POOL}[hardtanh]")),
    Mutant("fingerprint-misses-data-edits", (), "the weights fingerprint is cached per storage "
           "and version counter, which .data.copy_ and numpy-view edits do not move",
           [("func", "altheory.nets.support._weights_digest", _sharp_digest_by_version)],
           killed_by_tests=(f"{_SHARP_EDIT}[data-copy_]", f"{_SHARP_EDIT}[numpy-view]")),
    Mutant("resume-drops-a-metric-column", (), "the resume's CSV trim rewrites metrics.csv "
           "without the head_grad_norm column",
           [("func", "altheory.train.loop._trim_csv", _sharp_trim_old_columns)],
           killed_by_tests=(f"{_SHARP_RESUME}[sgd]",)),
    Mutant("resume-forgets-flips", (), "a mid-epoch resume drops the support flips counted "
           "before the interruption (flip_frac of that epoch)",
           [("func", "altheory.train.loop._restore", _sharp_restore_forgets("flips"))],
           killed_by_tests=(f"{_SHARP_RESUME}[alt]",)),
    Mutant("resume-resets-gate-refreshes", (), "a resume restarts the gate's refresh count, so "
           "the first refresh after it counts no flips",
           [("func", "altheory.train.loop._restore", _sharp_restore_forgets("refreshes"))],
           killed_by_tests=(f"{_SHARP_RESUME}[alt-inner]",)),
    Mutant("certify-ignores-lam-b", (), "certify_run solves and certifies the head without the "
           "bias penalty it reports",
           [("func", "altheory.train.certify._certify_head", _sharp_certify_no_lam_b)],
           killed_by_tests=(f"{_SHARP}::test_C8_certify_run_brackets_the_head_optimum_with_a_bias_penalty[0.05]",)),
    Mutant("fast-screening-10x-longer", (), "the fast solver's screening passes run 10x the "
           "FISTA iterations (only costs time)",
           [("local", "altheory.solvers.fast._SCREEN_MAX", lambda orig: 10 * orig)],
           killed_by_tests=(f"{_SHARP}::test_C4_fast_solver_rounds_and_iterations_stay_at_todays_counts[600x5x300-squared-0.02]",)),
    Mutant("pe-rounds-add-a-tenth", (), "Pilanci-Ergen's working set grows by a tenth of the "
           "violators a round (3x the rounds; only costs time)",
           [("func", "altheory.solvers.pilanci_ergen._pe_n_add", _sharp_pe_add_a_tenth)],
           killed_by_tests=(f"{_SHARP}::test_C5_pilanci_ergen_rounds_and_nnls_calls_stay_at_todays_counts[40x3-0.001]",)),
    Mutant("pe-feasible-unbatched", (), "Pilanci-Ergen's feasibility step projects every "
           "infeasible block by its own NNLS (only costs time)",
           [("local", "altheory.solvers.pilanci_ergen._PE_FEAS_BATCH", lambda orig: 10 ** 9)],
           killed_by_tests=(f"{_SHARP}::test_C5_pilanci_ergen_rounds_and_nnls_calls_stay_at_todays_counts[40x3-0.001]",)),
    Mutant("fingerprint-ignores-module-constants", (), "the weights fingerprint holds parameters "
           "and buffers only: a PHT threshold changed after support() passes",
           [("func", "altheory.nets.support._constants", lambda orig: (lambda model: iter(())))],
           killed_by_tests=(f"{_SHARP}::test_C1_consumers_refuse_a_support_recorded_with_other_module_constants[PHT-tau]",)),
    Mutant("alternate-resume-drops-margins", (), "altheory alternate --resume reads the finished "
           "runs back from runs.csv without their per-round margins",
           [("method", "altheory.experiments.store.ResultStore.rows", _sharp_rows_drop_margins)],
           killed_by_tests=(f"{_SHARP}::test_alternate_resume_writes_the_files_of_the_uninterrupted_run",)),
]
# §6 survivors of the mutation tool, each killed by a test (tests/test_mutation_survivors.py)
_SURV = "tests/test_mutation_survivors.py"


def _surv_judge_pass_strict(orig):
    """judge_endpoint's pass test written gap < tol_gap (mutmut's survivor of the boundary)."""
    def judge_endpoint(ep, F, F_star, F0, **kw):
        status, gap, why = orig(ep, F, F_star, F0, **kw)
        if status == "pass" and gap == kw.get("tol_gap", 1e-6):
            return "fail", gap, why
        return status, gap, why
    return judge_endpoint


def _surv_tolerances_curvature_one(orig):
    """A diverged point (non-finite max eigenvalue) counted as curvature 1, not 0."""
    def tolerances(F0, max_eig, *, rtol_g=1e-7, rtol_h=1e-6):
        return orig(F0, max_eig if math.isfinite(max_eig) else 1.0, rtol_g=rtol_g, rtol_h=rtol_h)
    return tolerances


def _surv_eigs_in_float32(orig):
    """The Hessian's extreme eigenvalues in its own dtype (np.asarray(H) without float64)."""
    def symmetric_extreme_eigs(H):
        H = np.asarray(H)
        if H.dtype != np.float32 or not np.all(np.isfinite(H)) or not np.abs(H).max() > 0:
            return orig(H)
        scale = float(np.abs(H).max())
        ev = np.linalg.eigvalsh(0.5 * (H + H.T) / scale)
        return float(ev[0]) * scale, float(ev[-1]) * scale
    return symmetric_extreme_eigs


def _surv_eigs_default_driver(orig):
    """The syev fallback asks scipy for its default driver (mutmut: driver="ev" dropped)."""
    import scipy.linalg

    def symmetric_extreme_eigs(H):
        eigh = scipy.linalg.eigh

        def default_driver(*a, **k):
            k.pop("driver", None)
            return eigh(*a, **k)
        scipy.linalg.eigh = default_driver
        try:
            return orig(H)
        finally:
            scipy.linalg.eigh = eigh
    return symmetric_extreme_eigs


def _surv_dual_on_ray_sign(orig):
    """The classical point's value +f*(g / max(1, smax)) (mutmut: the unary minus flipped)."""
    from altheory.solvers.fast import _conj

    def _dual_on_ray(g, smax, y, loss):
        return max(orig(g, smax, y, loss), float(_conj(g / max(1.0, smax), y, loss)))
    return _dual_on_ray


def _surv_softmax_k_from_labels(orig):
    """The softmax head's k from the labels (num_classes dropped: max(y) + 1)."""
    def _check(Phi, y, num_classes, lam, lam_b):
        return orig(Phi, y, None, lam, lam_b)
    return _check


def _surv_dual_point_nan_ratio(orig):
    """_dual_point with ``pbar >= 0``: a class with probability 0 and frequency 0 gives 0/0."""
    import torch

    from altheory.solvers.softmax_head import _logits

    def _dual_point(Phi, Y, W, b, lam_b):
        if lam_b > 0:
            return orig(Phi, Y, W, b, lam_b)
        A = torch.softmax(_logits(Phi, W, b), 1)
        pbar, ybar = A.mean(0), Y.mean(0)
        ratio = torch.where(pbar >= 0, ybar / pbar, torch.full_like(pbar, math.inf))
        theta = max(0.0, 1.0 - float(ratio.min()))
        if theta <= 0.0:
            return A
        q = ((ybar - (1 - theta) * pbar) / theta).clamp_min(0)
        return (1 - theta) * A + theta * (q / q.sum())
    return _dual_point


def _surv_topk_margin_doubled(orig):
    """The top-k margin with (kept_min - dropped_max) x 2 for a full slice (mutmut: / 2 -> * 2)."""
    import torch

    def _topk_margin(z, s, k, dim):
        m = orig(z, s, k, dim)
        zz = z.detach().double().movedim(dim, -1)
        ss = s.movedim(dim, -1)
        inf = torch.tensor(math.inf, dtype=zz.dtype)
        gap = torch.where(ss, zz, inf).amin(-1) - torch.where(~ss, zz, -inf).amax(-1)
        full = (ss.sum(-1) >= k) & torch.isfinite(gap)
        r = torch.where(full, torch.minimum(torch.where(ss, zz, inf).amin(-1), 2 * gap), inf)
        r = r.flatten(1).amin(1) if r.ndim > 1 else r
        return torch.where(torch.isfinite(r), torch.maximum(m, r), m)
    return _topk_margin


def _surv_certify_unverified_certified(orig):
    """certify reports 'certified', with a gap, whatever the solver's status (mutmut: the
    condition ``res.verified`` or True)."""
    import dataclasses

    from altheory.solvers.losses import normalised_gap

    def certify(problem, weights=None, **kw):
        c = orig(problem, weights, **kw)
        if c.status == "certified" or c.result is None:
            return c
        F0 = problem.zero_objective()
        return dataclasses.replace(c, status="certified",
                                   gap=normalised_gap(c.objective, c.bound, F0))
    return certify


def _surv_head_gap_loose_tol(orig):
    """head_gap's default tol 1.00000001 (mutmut: 1e-8 + 1): the exact head stops at once."""
    def head_gap(Phi, y, head, *, l2, tol=1.00000001):
        return orig(Phi, y, head, l2=l2, tol=tol)
    return head_gap


MUTANTS += [
    Mutant("surv-judge-endpoint-pass-strict", (), "a local minimum whose gap equals tol_gap "
           "fails (gap < tol_gap; docs/claims.md: passes at gap <= tol_gap)",
           [("func", "altheory.descent.endpoints.judge_endpoint", _surv_judge_pass_strict)],
           killed_by_tests=(f"{_SURV}::test_C4_judge_endpoint_boundaries_are_the_documented_ones",)),
    Mutant("surv-tolerances-diverged-curvature-one", (), "a diverged point's tolerance tol_h "
           "counts a curvature of 1 (too loose when F0 < 1)",
           [("func", "altheory.descent.endpoints.tolerances", _surv_tolerances_curvature_one)],
           killed_by_tests=(f"{_SURV}::test_C4_tolerances_of_a_diverged_point_scale_with_F0_alone",)),
    Mutant("surv-eigs-in-float32", (), "a float32 Hessian's extreme eigenvalues computed in "
           "float32 (1 +- 1e-8 both round to 1)",
           [("func", "altheory.descent.endpoints.symmetric_extreme_eigs", _surv_eigs_in_float32)],
           killed_by_tests=(f"{_SURV}::test_C4_extreme_eigenvalues_are_computed_in_float64_whatever_the_input_dtype",)),
    Mutant("surv-eigs-fallback-default-driver", (), "the eigenvalue fallback asks scipy for its "
           "default driver instead of the QR-iteration driver syev",
           [("func", "altheory.descent.endpoints.symmetric_extreme_eigs", _surv_eigs_default_driver)],
           killed_by_tests=(f"{_SURV}::test_C4_each_eigensolver_of_the_fallback_chain_delivers_alone",)),
    Mutant("surv-head-gap-loose-default-tol", (), "head_gap solves the exact head to a "
           "default tol of 1.00000001 (stops at once: the gap is taken against the SGD head)",
           [("func", "altheory.train.head.head_gap", _surv_head_gap_loose_tol)],
           killed_by_tests=(f"{_SURV}::test_C8_head_gap_by_default_solves_to_the_documented_tolerance",)),
    Mutant("surv-dual-on-ray-classical-sign", (), "the classical dual point's value taken "
           "as +f* instead of -f* (where the conjugate is positive the 'lower bound' exceeds F*)",
           [("func", "altheory.solvers.fast._dual_on_ray", _surv_dual_on_ray_sign)],
           killed_by_tests=(f"{_SURV}::test_C4_certificate_dual_is_a_lower_bound_at_an_overshooting_point",)),
    Mutant("surv-softmax-k-from-labels", (), "the softmax head's k taken as max(y) + 1, "
           "not from the head (a batch without the last class loses a column)",
           [("func", "altheory.solvers.softmax_head._check", _surv_softmax_k_from_labels)],
           killed_by_tests=(f"{_SURV}::test_C8_softmax_head_takes_k_from_the_head_not_from_the_labels",)),
    Mutant("surv-dual-point-nan-ratio", (), "the bias-free dual point's rescaling divides "
           "0/0 for a ruled-out absent class (pbar >= 0): NaN, theta = 0, an infeasible point",
           [("func", "altheory.solvers.softmax_head._dual_point", _surv_dual_point_nan_ratio)],
           killed_by_tests=(f"{_SURV}::test_C8_dual_point_of_a_head_that_rules_out_an_absent_class",)),
    Mutant("surv-topk-margin-doubled", (), "the top-k margin of a full slice is "
           "(kept_min - dropped_max) x 2, not / 2: four times the radius inside which the "
           "top-k set holds",
           [("func", "altheory.nets.graph._topk_margin", _surv_topk_margin_doubled)],
           killed_by_tests=(f"{_SURV}::test_C2_topk_margin_counts_kept_entries_per_slice",)),
    Mutant("surv-certify-unverified-certified", (), "certify reports an unverified solve as "
           "'certified', with the gap of a bound that is not certified",
           [("func", "altheory.certificates.certificates.certify", _surv_certify_unverified_certified)],
           killed_by_tests=(f"{_SURV}::test_C4_certify_an_unverified_solve_is_not_certified",)),
]

# a cheap subset run by the test suite (tests/test_mutants.py)
QUICK_SUBSET = ("maxpool-margin-x4", "lifted-bound-halved", "support-preserving-no-slack",
                "fast-group-lasso-stops-1e-3", "reduced-rank-plus-one",
                # kind tests (about 2 s each): a patch that must reach a test module's import,
                # a fingerprint guard, and the atomic writer's clean-up
                "maxpool-adjoint-scatter-tested", "support-check-skips-fingerprint",
                "atomic-write-leaves-temp")


# --------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------

def run_mutant(mutant: Mutant, *, seed: int = 0) -> dict:
    """Run the claims ``mutant`` touches with it applied (in this process); its verdicts."""
    from rich.console import Console

    from altheory.claims.report import exit_code, run_claims

    quiet = Console(file=open(os.devnull, "w"), width=160)
    t0 = time.perf_counter()
    with applied(mutant):
        reports = run_claims(list(mutant.claims), profile="quick", seed=seed, console=quiet)
    verdicts = {r.claim: r.verdict for r in reports}
    code = exit_code(reports)
    killer = next((c for c, v in verdicts.items() if v in ("FAIL", "ERROR", "UNVERIFIED")), None)
    return {"name": mutant.name, "claims": list(mutant.claims), "verdicts": verdicts,
            "exit_code": code, "killed": code != 0, "killer": killer,
            "seconds": time.perf_counter() - t0}


class _Recorder:
    """A pytest plugin that keeps the outcome of every test phase (for a one-line verdict)."""

    def __init__(self):
        self.failed: list[tuple[str, str]] = []   # (node id, message) of failed test calls
        self.errors: list[tuple[str, str]] = []   # setup/teardown errors, collection errors
        self.passed = 0
        self.skipped = 0

    @staticmethod
    def _message(report) -> str:
        crash = getattr(report.longrepr, "reprcrash", None)
        text = crash.message if crash is not None else str(report.longrepr)
        lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
        return (" ".join(lines[:3]) if lines else "?")[:200]

    def pytest_runtest_logreport(self, report):
        if report.failed:
            (self.failed if report.when == "call" else self.errors).append(
                (report.nodeid, self._message(report)))
        elif report.skipped:
            self.skipped += 1
        elif report.when == "call":
            self.passed += 1

    def pytest_collectreport(self, report):
        if report.failed:
            self.errors.append((report.nodeid or "<collection>", self._message(report)))


def run_tests(node_ids, *, log: str | None = None) -> dict:
    """Run pytest on ``node_ids`` in this process (``-x -q``, no cache); its outcome.

    Test modules already imported are dropped from ``sys.modules`` first, so that pytest imports
    them afresh and their ``from altheory... import name`` lines bind whatever is patched now.
    pytest's output goes to ``log`` (default: discarded). Returns ``exit_code``, ``failed``
    (node id and message of each failed test call), ``errors``, ``passed``, ``skipped``.
    """
    import pytest

    for name, m in list(sys.modules.items()):
        if m is not None and _is_test_module(m):
            del sys.modules[name]
    rec = _Recorder()
    cwd = os.getcwd()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    fd = os.open(log or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.chdir(_REPO)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        code = int(pytest.main([*node_ids, "-x", "-q", "-p", "no:cacheprovider"], plugins=[rec]))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (fd, *saved):
            os.close(f)
        os.chdir(cwd)
    return {"exit_code": code, "failed": rec.failed, "errors": rec.errors, "passed": rec.passed,
            "skipped": rec.skipped}


def run_tests_mutant(mutant: Mutant, *, log: str | None = None) -> dict:
    """Run the tests that should kill ``mutant`` with it applied (in this process: run it in a
    forked child, as :func:`run_in_child` does, since pytest imports the test modules).

    Killed: pytest exits 1 *because a test call failed*. Exit 2 and above (collection error,
    interrupted, usage), or 1 from a setup error only, is an ``error``, not a kill; exit 0 (or
    every test skipped) is SURVIVED."""
    t0 = time.perf_counter()
    with applied(mutant):
        r = run_tests(list(mutant.killed_by_tests), log=log)
    killed = r["exit_code"] == 1 and bool(r["failed"])
    error = None
    if not killed and r["exit_code"] != 0:
        error = f"pytest exit {r['exit_code']}: " + "; ".join(f"{n}: {m}" for n, m in r["errors"][:2])
    elif not killed and r["passed"] == 0:
        error = f"no test ran ({r['skipped']} skipped)"
    return {"name": mutant.name, "kind": "tests", "claims": [], "tests": list(mutant.killed_by_tests),
            "killed": killed, "error": error, "exit_code": r["exit_code"],
            "killer": r["failed"][0][0] if killed else None,
            "message": r["failed"][0][1] if killed else None,
            "seconds": time.perf_counter() - t0}


def _child(args):
    name, seed = args
    if name == "<baseline>":
        return _baseline(seed)
    if name == "<baseline-tests>":
        return _baseline_tests()
    m = next(m for m in MUTANTS if m.name == name)
    if m.kind == "tests":
        return run_tests_mutant(m)
    return {**run_mutant(m, seed=seed), "kind": "verify", "error": None}


def run_in_child(name: str, *, seed: int = 0) -> dict:
    """Run one mutant (or ``"<baseline-tests>"``) in a forked child process; its result."""
    import multiprocessing as mp

    with mp.get_context("fork").Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(_child, ((name, seed),))


def _baseline_tests() -> dict:
    """Every test a mutant names, unmutated: all must pass (else a kill would prove nothing)."""
    ids = sorted({t for m in MUTANTS for t in m.killed_by_tests})
    t0 = time.perf_counter()
    r = run_tests(ids)
    ok = r["exit_code"] == 0 and r["passed"] > 0
    return {"name": "<baseline-tests>", "ok": ok, "n": len(ids), "passed": r["passed"],
            "skipped": r["skipped"], "exit_code": r["exit_code"],
            "failed": r["failed"][:2] + r["errors"][:2], "seconds": time.perf_counter() - t0}


def _baseline(seed: int) -> dict:
    from rich.console import Console

    from altheory.claims.report import exit_code, run_claims

    claims = sorted({c for m in MUTANTS if m.kind == "verify" for c in m.claims},
                    key=lambda c: int(c[1:]))
    quiet = Console(file=open(os.devnull, "w"), width=160)
    t0 = time.perf_counter()
    reports = run_claims(claims, profile="quick", seed=seed, console=quiet)
    return {"name": "<baseline>", "verdicts": {r.claim: r.verdict for r in reports},
            "exit_code": exit_code(reports), "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run the mutation suite: kind 'verify' against altheory "
                                "verify (quick), kind 'tests' against the pytest node ids it names.")
    p.add_argument("--kind", choices=("verify", "tests", "all"), default="all",
                   help="which mutants to run (default: all)")
    p.add_argument("--only", default=None, help="comma-separated mutant names (default: all of --kind)")
    p.add_argument("--jobs", type=int, default=2, help="parallel forked workers (default: 2)")
    p.add_argument("--seed", type=int, default=0, help="base seed of the claim checks")
    p.add_argument("--list", action="store_true", help="list the mutants and exit")
    p.add_argument("--no-baseline", action="store_true", help="skip the unmutated runs")
    args = p.parse_args(argv)
    pool_of = [m for m in MUTANTS if args.kind in ("all", m.kind)]
    if args.list:
        for m in pool_of:
            by = ",".join(m.claims) if m.kind == "verify" else " ".join(m.killed_by_tests)
            print(f"{m.name:<36} {m.kind:<6} {m.description} [{by}]")
        return 0
    names = [m.name for m in pool_of]
    if args.only is not None:
        sel = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = [s for s in sel if s not in names]
        if not sel or unknown:
            print(f"mutants.py: --only must name known mutants of kind {args.kind!r}; got "
                  f"{args.only!r} (unknown: {unknown}). See --list.", file=sys.stderr)
            return 2
        names = sel
    if args.jobs < 1:
        print(f"mutants.py: --jobs must be >= 1; got {args.jobs}.", file=sys.stderr)
        return 2
    # import once in the parent: the forked children share it (torch, cvxpy, the registry)
    _import_all()
    import cvxpy  # noqa: F401
    import multiprocessing as mp

    kinds = {next(m for m in MUTANTS if m.name == n).kind for n in names}
    baselines = [] if args.no_baseline else (["<baseline-tests>"] if "tests" in kinds else []) + (
        ["<baseline>"] if "verify" in kinds else [])
    t0 = time.perf_counter()
    # the slowest first (the verify baseline and the trainer's tests), so two workers end together
    slow = {"<baseline>": 0, "<baseline-tests>": 1}
    todo = baselines + sorted(names, key=lambda n: slow.get(n, 2))
    ctx = mp.get_context("fork")
    killed = errors = 0
    baseline_ok = True
    with ctx.Pool(args.jobs, maxtasksperchild=1) as pool:
        for r in pool.imap_unordered(_child, [(n, args.seed) for n in todo]):
            if r["name"] == "<baseline>":
                baseline_ok &= r["exit_code"] == 0
                print(f"{'baseline (no mutant, verify)':<38} {'green' if r['exit_code'] == 0 else 'NOT GREEN'}: "
                      f"{r['verdicts']} ({r['seconds']:.1f}s)", flush=True)
                continue
            if r["name"] == "<baseline-tests>":
                baseline_ok &= r["ok"]
                why = "" if r["ok"] else f" (exit {r['exit_code']}: {r['failed']})"
                print(f"{'baseline (no mutant, tests)':<38} {'green' if r['ok'] else 'NOT GREEN'}: "
                      f"{r['passed']} passed, {r['skipped']} skipped of {r['n']} node ids{why} "
                      f"({r['seconds']:.1f}s)", flush=True)
                continue
            killed += r["killed"]
            errors += r["error"] is not None
            if r["kind"] == "verify":
                how = (f"killed by {r['killer']} ({r['verdicts'][r['killer']]})" if r["killed"]
                       else "SURVIVED")
                print(f"{r['name']:<38} {how:<32} claims {','.join(r['claims']):<6} "
                      f"{r['seconds']:.1f}s", flush=True)
            elif r["killed"]:
                print(f"{r['name']:<38} killed by {r['killer']}  [{r['message']}]  "
                      f"{r['seconds']:.1f}s", flush=True)
            else:
                how = f"ERROR ({r['error']})" if r["error"] else "SURVIVED " + " ".join(r["tests"])
                print(f"{r['name']:<38} {how}  {r['seconds']:.1f}s", flush=True)
    wall = time.perf_counter() - t0
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"wall {wall:.0f}s on {args.jobs} workers, load average {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f}")
    print(f"killed {killed}/{len(names)}" + (f" ({errors} errors)" if errors else ""))
    return 0 if (killed == len(names) and baseline_ok) else 1


if __name__ == "__main__":
    raise SystemExit(main())
