r"""Mutation suite: every verdict of ``altheory verify`` must be able to fail (docs/claims.md).

Each mutant is a realistic bug in the code under test (operators, margins, solvers, the fast
solver's certificate, enumeration, closed forms, the lifted bound, alternation steps, end-point
classification), applied *in process* by replacing a function object wherever the package holds
it (no file is edited), and run against the claims it touches on the quick profile, exactly as
``altheory verify --claims ...`` runs them (:func:`altheory.claims.report.run_claims`, strict
exit status). A mutant is *killed* when that exit status is non-zero; the line names the claim
whose verdict killed it (FAIL, ERROR or UNVERIFIED), or says SURVIVED.

Usage::

    python proofs_checks/mutants.py [--only NAME,...] [--jobs 2] [--list] [--no-baseline]

One line per mutant, then ``killed K/N`` and the wall time (with the load average); exit status
0 only when every mutant is killed (and the unmutated baseline is green). Each mutant runs in a
forked child process, so a patch never outlives its run; :func:`applied` restores the originals
for in-process use (tests).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["Mutant", "MUTANTS", "QUICK_SUBSET", "applied", "run_mutant", "main"]


# --------------------------------------------------------------------------------------------
# patching
# --------------------------------------------------------------------------------------------

def _resolve(path: str):
    import importlib

    mod, _, attr = path.rpartition(".")
    module = importlib.import_module(mod)
    return module, attr, getattr(module, attr)


def _patch_everywhere(path: str, make: Callable, undo: list) -> None:
    """Replace the object at ``path`` (``"pkg.module.name"``) by ``make(original)`` in its module
    and in every ``altheory`` module that imported it by name; record how to undo it."""
    module, attr, orig = _resolve(path)
    new = make(orig)
    for name, m in list(sys.modules.items()):
        if m is None or not (name == "altheory" or name.startswith("altheory.")):
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


@dataclass
class Mutant:
    """One realistic bug: ``patches`` is a list of ``(kind, path, make)`` with kind ``"func"``
    (a module-level function or constant) or ``"method"``."""

    name: str
    claims: tuple[str, ...]
    description: str
    patches: list


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
            else:
                raise ValueError(f"patch kind must be 'func' or 'method'; got {kind!r}.")
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
              "altheory.descent.endpoints", "altheory.alternation.alternation", "altheory.claims._descent"):
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


_OFF_CALL, _OFF_VG = _objective_offset(1e-3)

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
    Mutant("maxpool-margin-x4", ("C2",), "max-pool margin inflated 4x (survived before issue 13)",
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
           "optimum while tol_g is 1e5x too strict (survived before issue 13)",
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
    Mutant("lifted-bound-halved", ("C7",), "the lifted lower bound halved (survived before issue 13)",
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
    Mutant("support-preserving-no-slack", ("C9",), "no slack at tau > 0 (survived before issue 13)",
           [("func", "altheory.alternation.alternation.support_preserving_layer_step", _sp_no_slack)]),
    Mutant("support-preserving-unconstrained", ("C9",), "the support-preserving step solves the "
           "unconstrained layer problem",
           [("func", "altheory.alternation.alternation.support_preserving_layer_step", _sp_unconstrained)]),
]

# a cheap subset run by the test suite (tests/test_mutants.py)
QUICK_SUBSET = ("maxpool-margin-x4", "lifted-bound-halved", "support-preserving-no-slack",
                "fast-group-lasso-stops-1e-3", "reduced-rank-plus-one")


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


def _child(args):
    name, seed = args
    if name == "<baseline>":
        return _baseline(seed)
    return run_mutant(next(m for m in MUTANTS if m.name == name), seed=seed)


def _baseline(seed: int) -> dict:
    from rich.console import Console

    from altheory.claims.report import exit_code, run_claims

    claims = sorted({c for m in MUTANTS for c in m.claims}, key=lambda c: int(c[1:]))
    quiet = Console(file=open(os.devnull, "w"), width=160)
    t0 = time.perf_counter()
    reports = run_claims(claims, profile="quick", seed=seed, console=quiet)
    return {"name": "<baseline>", "verdicts": {r.claim: r.verdict for r in reports},
            "exit_code": exit_code(reports), "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run the mutation suite against altheory verify (quick).")
    p.add_argument("--only", default=None, help="comma-separated mutant names (default: all)")
    p.add_argument("--jobs", type=int, default=2, help="parallel forked workers (default: 2)")
    p.add_argument("--seed", type=int, default=0, help="base seed of the claim checks")
    p.add_argument("--list", action="store_true", help="list the mutants and exit")
    p.add_argument("--no-baseline", action="store_true", help="skip the unmutated run")
    args = p.parse_args(argv)
    if args.list:
        for m in MUTANTS:
            print(f"{m.name:<36} {','.join(m.claims):<6} {m.description}")
        return 0
    names = [m.name for m in MUTANTS]
    if args.only is not None:
        sel = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = [s for s in sel if s not in names]
        if not sel or unknown:
            print(f"mutants.py: --only must name known mutants; got {args.only!r} "
                  f"(unknown: {unknown}). See --list.", file=sys.stderr)
            return 2
        names = sel
    if args.jobs < 1:
        print(f"mutants.py: --jobs must be >= 1; got {args.jobs}.", file=sys.stderr)
        return 2
    # import once in the parent: the forked children share it (torch, cvxpy, the registry)
    _import_all()
    import cvxpy  # noqa: F401
    import multiprocessing as mp

    t0 = time.perf_counter()
    todo = ([] if args.no_baseline else ["<baseline>"]) + names
    ctx = mp.get_context("fork")
    killed = 0
    baseline_ok = True
    with ctx.Pool(args.jobs, maxtasksperchild=1) as pool:
        for r in pool.imap(_child, [(n, args.seed) for n in todo]):
            if r["name"] == "<baseline>":
                baseline_ok = r["exit_code"] == 0
                print(f"{'baseline (no mutant)':<38} {'green' if baseline_ok else 'NOT GREEN'}: "
                      f"{r['verdicts']} ({r['seconds']:.1f}s)", flush=True)
                continue
            killed += r["killed"]
            how = (f"killed by {r['killer']} ({r['verdicts'][r['killer']]})" if r["killed"]
                   else "SURVIVED")
            print(f"{r['name']:<38} {how:<32} claims {','.join(r['claims']):<6} "
                  f"{r['seconds']:.1f}s", flush=True)
    wall = time.perf_counter() - t0
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"wall {wall:.0f}s on {args.jobs} workers, load average {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f}")
    print(f"killed {killed}/{len(names)}")
    return 0 if (killed == len(names) and baseline_ok) else 1


if __name__ == "__main__":
    raise SystemExit(main())
