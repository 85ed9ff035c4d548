r"""Resumable parameter sweeps: a grid of instances, run in parallel, appended to a CSV table.

.. math:: \text{grid} = \prod_{\text{name}} \text{values(name)},\qquad
          \text{row} = \text{params} \cup \text{fn}(\text{params}) \cup \{\text{key}, \text{status}, \text{seconds}\}

Every instance has a key (the canonical JSON of its parameters). :func:`run_sweep` reads the
table first and skips every key already in it, so a rerun continues where a crash stopped; rows
are appended and flushed one at a time by the parent process as results arrive, so a crash
loses at most the instances in flight (one per worker); the table is locked for the run, so a
second run on the same table is refused (:mod:`altheory.experiments.store`). Parallelism is
joblib's: processes (``loky``) locally; on a Dask cluster, create a ``dask.distributed.Client``
and pass ``backend="dask"`` (joblib's Dask backend ships each instance to the cluster; ``altheory
sweep --scheduler tcp://host:8786`` does both, see :mod:`altheory.experiments.cluster`). A tqdm
bar shows progress. Grids from the command line are checked before anything runs
(:func:`parse_grid`, :func:`check_grid`). An instance that raises is recorded with ``status="error"`` and its message, and is
retried by a rerun with ``retry_errors=True``.

Sweep functions shipped here (:data:`SWEEPS`) measure the claims over grids of sizes, widths,
depth, :math:`\lambda`, :math:`\tau` and seeds; any top-level function returning a flat dict of
numbers or strings works.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from altheory.experiments.store import ResultStore, folder_lock, instance_key

__all__ = ["expand_grid", "instance_key", "run_sweep", "read_table", "parse_grid", "check_grid", "SWEEPS",
           "c4_sweep", "c5_sweep", "c3_sweep", "c6_sweep", "c7_sweep"]


# --------------------------------------------------------------------------------------------
# grid and table
# --------------------------------------------------------------------------------------------

def expand_grid(grid: Mapping[str, Iterable]) -> list[dict[str, Any]]:
    """Cartesian product of ``grid`` (name -> values), in a deterministic order.

    Examples
    --------
    >>> expand_grid({"n": [10, 20], "seed": [0]})
    [{'n': 10, 'seed': 0}, {'n': 20, 'seed': 0}]
    """
    if not isinstance(grid, Mapping):
        raise TypeError(f"grid must be a mapping name -> list of values; got {type(grid).__name__}.")
    names = list(grid)
    values = []
    for k in names:
        v = grid[k]
        if isinstance(v, (str, bytes)) or not isinstance(v, Iterable):
            raise TypeError(f"grid[{k!r}] must be a list of values; got {v!r}. Wrap a single value "
                            f"in a list: {{{k!r}: [{v!r}]}}.")
        v = list(v)
        if not v:
            raise ValueError(f"grid[{k!r}] is empty; give at least one value.")
        values.append(v)
    return [dict(zip(names, combo)) for combo in itertools.product(*values)]


def read_table(path: str | Path):
    """The sweep table as a pandas DataFrame (empty when the file does not exist)."""
    import pandas as pd

    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame()
    return pd.read_csv(path)


_Table = ResultStore  # the old private name


def _run_one(fn: Callable[..., Mapping[str, Any]], params: dict[str, Any], key: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        out = dict(fn(**params))
        status = str(out.pop("status", "ok"))
        err = ""
    except Exception as e:  # recorded in the table, retried with retry_errors=True
        out, status, err = {}, "error", f"{type(e).__name__}: {e}"
    row = {**params, **out, "key": key, "status": status, "seconds": time.perf_counter() - t0}
    if err:
        row["error"] = err
    return row


def run_sweep(fn: Callable[..., Mapping[str, Any]], grid: Mapping[str, Iterable] | list[dict],
              out: str | Path, *, n_jobs: int = 1, backend: str | None = None,
              progress: bool = True, retry_errors: bool = False):
    r"""Run ``fn(**params)`` for every instance of ``grid`` not yet in the table ``out``.

    Parameters
    ----------
    fn : top-level callable returning a flat mapping (picklable for parallel runs).
    grid : mapping name -> values (expanded by :func:`expand_grid`) or a list of param dicts.
    out : path of the CSV table (created, or extended and resumed).
    n_jobs : int, joblib workers (``-1``: all cores).
    backend : None (joblib's default, ``loky`` processes), ``"loky"``, ``"threading"``,
        ``"sequential"`` or ``"dask"`` (needs a running ``dask.distributed.Client``).
    progress : bool, show a tqdm bar.
    retry_errors : bool, rerun instances whose recorded status is ``"error"``.

    Returns
    -------
    pandas.DataFrame, the whole table after the run.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "t.csv")
    >>> df = run_sweep(_square, {"x": [1, 2]}, path, progress=False)
    >>> df["y"].tolist()
    [1, 4]
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable; got {type(fn).__name__}.")
    if backend not in (None, "loky", "threading", "sequential", "multiprocessing", "dask"):
        raise ValueError(f"backend must be one of None, 'loky', 'threading', 'sequential', "
                         f"'multiprocessing', 'dask'; got {backend!r}.")
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0:
        raise ValueError(f"n_jobs must be a non-zero int (-1 for all cores); got {n_jobs!r}.")
    if backend == "dask":
        try:
            from distributed import get_client
        except ImportError as e:
            raise ValueError("backend='dask' needs dask.distributed: pip install 'altheory[dask]' "
                             "(or 'dask[distributed]') and create Client(<scheduler>) before "
                             "calling run_sweep.") from e
        try:
            get_client()
        except ValueError as e:
            raise ValueError("backend='dask' needs a running dask.distributed Client: create "
                             "Client('tcp://<scheduler>:8786') (or Client(LocalCluster())) "
                             "before calling run_sweep.") from e
    params_list = grid if isinstance(grid, list) else expand_grid(grid)
    path = Path(out)
    with folder_lock(path.parent, name=f".{path.name}.lock", what=f"the table {path.name}"):
        table = ResultStore(path)
        _run_todo(fn, params_list, table, n_jobs=n_jobs, backend=backend, progress=progress,
                  retry_errors=retry_errors)
    return read_table(path)


def _run_todo(fn, params_list, table, *, n_jobs, backend, progress, retry_errors) -> None:
    import joblib
    from tqdm.auto import tqdm

    todo = []
    for p in params_list:
        k = instance_key(p)
        st = table.done.get(k)
        if st is None or (retry_errors and st == "error"):
            todo.append((p, k))
    bar = tqdm(total=len(todo), disable=not progress, desc=getattr(fn, "__name__", "sweep"))
    ctx = joblib.parallel_config(backend=backend) if backend else _nullcontext()
    with ctx:
        if n_jobs == 1 and backend in (None, "sequential"):
            results = (_run_one(fn, p, k) for p, k in todo)
            for row in results:
                table.append(row)
                bar.update()
        else:
            # under Dask the cluster decides the parallelism
            par = joblib.Parallel(n_jobs=-1 if backend == "dask" else n_jobs,
                                  return_as="generator_unordered")
            for row in par(joblib.delayed(_run_one)(fn, p, k) for p, k in todo):
                table.append(row)
                bar.update()
    bar.close()


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _square(x):
    """Doctest helper."""
    return {"y": x * x}


# --------------------------------------------------------------------------------------------
# sweep functions (one instance each; flat dicts)
# --------------------------------------------------------------------------------------------

def c4_sweep(n: int, d: int, p: int, lam: float, seed: int, method: str = "lbfgs",
             loss: str = "squared", max_iter: int = 2000) -> dict[str, Any]:
    """C4: one descent run on the gated two-layer net vs the group-lasso optimum."""
    from altheory.claims.c4_two_layer_fixed_support import make_instance
    from altheory.descent.descent import MLPObjective, descend
    from altheory.descent.endpoints import classify_endpoint, judge_endpoint

    P = make_instance(seed, n, d, p, lam, loss)
    res = P.solve()
    F0 = P.zero_objective()
    obj = MLPObjective(P.X, P.y, [np.zeros((p, d)), np.zeros(p)], masks=[P.G], loss=loss, lam=lam)
    run = descend(obj, obj.init(seed), method=method, max_iter=max_iter, tol_grad=1e-10 * F0)
    ep = classify_endpoint(obj, run.theta, F0=F0)
    status, gap, _ = judge_endpoint(ep, run.objective, res.objective, F0, star_status=res.status)
    return {"status": status, "gap": gap, "endpoint": ep.kind, "grad_norm": ep.grad_norm,
            "min_eig": ep.min_eig, "F": run.objective, "F_star": res.objective,
            "solver_status": res.status, "solve_time": res.solve_time, "iters": run.n_iter}


def c5_sweep(n: int, d: int, lam: float, ratio: float, seed: int, patterns: str | int = "exact",
             max_iter: int = 2000) -> dict[str, Any]:
    """C5: convex optimum (exact or sampled patterns) vs one ReLU descent run of width ratio*m*."""
    from altheory.solvers.arrangements import (enumerate_patterns, program_to_network, prune_blocks,
                               relu_program, sample_patterns)
    from altheory.descent.descent import MLPObjective, descend
    from altheory.solvers.losses import normalised_gap, zero_loss

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = rng.standard_normal(n)
    P = enumerate_patterns(X) if patterns == "exact" else sample_patterns(X, int(patterns), seed=seed)
    res = relu_program(X, y, lam, P)
    if not res.verified:
        return {"status": f"solver-{res.status}", "solver_status": res.status, "P": P.P}
    W1, w2 = program_to_network(*prune_blocks(X, P.G, res.weights["V"], res.weights["W"]))
    m_star = int(w2.size)
    m = max(1, int(round(ratio * m_star)))
    obj = MLPObjective(X, y, [np.zeros((m, d)), np.zeros(m)], masks=None, tau=0.0, lam=lam)
    run = descend(obj, obj.init(seed), method="lbfgs", max_iter=max_iter)
    gap = normalised_gap(run.objective, res.objective, zero_loss(y, "squared"))
    return {"status": "ok", "kind": res.kind, "P": P.P, "m_star": m_star, "m": m, "gap": gap,
            "success": bool(gap <= 1e-4), "F": run.objective, "F_star": res.objective,
            "solver_status": res.status}


def c3_sweep(n: int, depth: int, width: int, tau: float, layer: int, seed: int,
             loss: str = "squared", lam: float = 0.0) -> dict[str, Any]:
    """C3: per-layer convex optimum vs L-BFGS on that layer (depth = number of Linear layers)."""
    from torch import nn

    from altheory.claims.c3_per_layer import make_instance
    from altheory.solvers.dispatch import per_layer
    from altheory.descent.descent import MLPObjective, descend
    from altheory.descent.endpoints import classify_endpoint, judge_endpoint
    from altheory.nets.operators import layer_operator
    from altheory.nets.support import support

    widths = [3] + [width] * (depth - 1) + [2 if loss == "squared" else (1 if loss == "logistic" else 3)]
    net, X, Y = make_instance(seed, n, widths, tau, loss)
    S = support(net, X)
    masks = [S[k].mask().reshape(n, -1) for k in S.keys()]
    lins = [m for m in net if isinstance(m, nn.Linear)]
    Ws = [m.weight.detach().numpy().copy() for m in lins]
    bs = [m.bias.detach().numpy().copy() for m in lins]
    obj = MLPObjective(X.numpy(), Y, Ws, masks=masks, biases=bs, loss=loss, lam=lam, trainable=[layer])
    Phi, off = layer_operator(net, S, layer, X)
    res = per_layer(Phi, off, Y, loss=loss, lam=lam, n_weight=Ws[layer].size)
    const = 0.5 * lam * sum(float((W ** 2).sum()) for m, W in enumerate(Ws) if m != layer)
    F0 = obj.zero_objective()
    run = descend(obj, obj.init(seed), method="lbfgs", max_iter=3000, tol_grad=1e-10 * F0)
    ep = classify_endpoint(obj, run.theta, F0=F0)
    status, gap, _ = judge_endpoint(ep, run.objective, res.objective + const, F0,
                                    star_status=res.status)
    return {"status": status, "gap": gap, "endpoint": ep.kind, "solver_status": res.status}


def c6_sweep(n: int, d: int, k: int, depth: int, width: int, active: int, seed: int,
             method: str = "lbfgs") -> dict[str, Any]:
    """C6: deep linear (shared support) descent vs reduced-rank regression."""
    from altheory.claims.c6_shared_support import linear_optimum, make_instance
    from altheory.certificates.conditions import shared_support_conditions
    from altheory.descent.descent import MLPObjective, descend
    from altheory.descent.endpoints import classify_endpoint, judge_endpoint

    hidden = [width] * (depth - 1)
    act = [active] * (depth - 1)
    X, Y, masks = make_instance(seed, n, d, k, hidden, act)
    conds = {c.name: c for c in shared_support_conditions(X, Y, act, masks=masks)}
    opt = linear_optimum(X, Y, "squared", conds["rank bound r = min(r_l, d, k)"].value)
    widths = [d] + hidden + [k]
    obj = MLPObjective(X, Y, [np.zeros((widths[i + 1], widths[i])) for i in range(depth)], masks=masks)
    F0 = obj.zero_objective()
    run = descend(obj, obj.init(seed), method=method, max_iter=3000, tol_grad=1e-10 * F0)
    ep = classify_endpoint(obj, run.theta, F0=F0)
    status, gap, _ = judge_endpoint(ep, run.objective, opt.objective, F0)
    return {"status": status, "gap": gap, "endpoint": ep.kind,
            "kawaguchi": bool(conds["Kawaguchi (2016)"].holds),
            "laurent_von_brecht": bool(conds["Laurent-von Brecht (2018)"].holds)}


def c7_sweep(n: int, d: int, h1: int, h2: int, replicate: bool, seed: int) -> dict[str, Any]:
    """C7: lifted lower bound vs L-BFGS on the gated 3-layer net."""
    from altheory.certificates.certificates import lifted_bound
    from altheory.claims.c7_deep_lower_bound import make_instance
    from altheory.descent.descent import MLPObjective, descend
    from altheory.solvers.losses import normalised_gap, zero_loss

    X, y, masks = make_instance(seed, n, d, h1, h2, bool(replicate))
    res = lifted_bound(X, masks, y)
    obj = MLPObjective(X, y, [np.zeros((h1, d)), np.zeros((h2, h1)), np.zeros(h2)], masks=masks)
    run = descend(obj, obj.init(seed), method="lbfgs", max_iter=3000)
    if not res.verified:
        return {"status": f"solver-{res.status}", "solver_status": res.status}
    gap = normalised_gap(run.objective, res.objective, zero_loss(y, "squared"))
    return {"status": "pass" if gap >= -1e-7 else "fail", "certified_gap": gap,
            "attained": bool(gap <= 1e-6), "solver_status": res.status}


SWEEPS: dict[str, Callable[..., Mapping[str, Any]]] = {
    "c3": c3_sweep, "c4": c4_sweep, "c5": c5_sweep, "c6": c6_sweep, "c7": c7_sweep,
}


# --------------------------------------------------------------------------------------------
# grids from the command line: ``name=v1,v2`` and ``name=a:b``, checked before any work
# --------------------------------------------------------------------------------------------

# the domain of every parameter name the shipped sweep functions use (checked at parse time)
POSITIVE_INTS = ("n", "d", "p", "k", "depth", "width", "active", "h1", "h2", "max_iter")
NONNEG_INTS = ("seed", "layer")
NONNEG_FLOATS = ("lam", "tau")
POSITIVE_FLOATS = ("ratio",)
CHOICES = {"method": ("gd", "sgd", "adam", "lbfgs"), "loss": ("squared", "logistic", "hinge", "softmax")}


def _parse_value(s: str):
    low = s.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(s)
        except ValueError:
            pass
    return s


def _check_value(name: str, v, fn: Callable):
    """``v`` converted to ``name``'s type and checked against its domain; ValueError otherwise."""
    import typing

    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # an annotation that does not resolve: no type check
        hints = {}
    typ = hints.get(name)
    where = f"{name}={v!r}"
    if name == "patterns":  # c5: "exact" or a positive number of sampled patterns
        if v == "exact" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            return v
        raise ValueError(f"{where}: expected 'exact' or a positive int (patterns sampled).")
    if typ is bool:
        if isinstance(v, bool):
            return v
        raise ValueError(f"{where}: expected true or false.")
    if typ is int or name in POSITIVE_INTS + NONNEG_INTS:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"{where}: expected an integer.")
    elif typ is float or name in NONNEG_FLOATS + POSITIVE_FLOATS:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"{where}: expected a number.")
        v = float(v)
        if not np.isfinite(v):
            raise ValueError(f"{where}: expected a finite number.")
    elif typ is str and not isinstance(v, str):
        v = str(v)
    if name in POSITIVE_INTS and v < 1:
        raise ValueError(f"{where}: expected an integer >= 1.")
    if name in NONNEG_INTS and v < 0:
        raise ValueError(f"{where}: expected an integer >= 0 (seeds and indices are not negative).")
    if name in NONNEG_FLOATS and v < 0:
        raise ValueError(f"{where}: expected a number >= 0.")
    if name in POSITIVE_FLOATS and v <= 0:
        raise ValueError(f"{where}: expected a number > 0.")
    if name in CHOICES and v not in CHOICES[name]:
        raise ValueError(f"{where}: expected one of {CHOICES[name]}.")
    return v


def check_grid(grid: Mapping[str, list], fn: Callable) -> dict[str, list]:
    """``grid`` with every value converted and checked against ``fn``'s parameters.

    Raises ValueError naming the parameter and the value: unknown names (with a suggestion),
    required parameters without values, values of the wrong type or outside their domain
    (negative seeds, sizes, ``lam`` or ``tau``), empty lists and repeated values.
    """
    import difflib
    import inspect

    sig = inspect.signature(fn)
    out: dict[str, list] = {}
    for k, vals in grid.items():
        if k not in sig.parameters:
            close = difflib.get_close_matches(k, list(sig.parameters), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown parameter {k!r} for {fn.__name__}; expected one of "
                             f"{list(sig.parameters)}.{hint}")
        vals = list(vals)
        if not vals:
            raise ValueError(f"{k}: no values; give at least one, e.g. {k}=1,2 or {k}=0:4.")
        checked = [_check_value(k, v, fn) for v in vals]
        dup = sorted({repr(v) for v in checked if checked.count(v) > 1})
        if dup:
            raise ValueError(f"{k}: value(s) {', '.join(dup)} given more than once; give each once.")
        out[k] = checked
    missing = [p.name for p in sig.parameters.values()
               if p.default is inspect.Parameter.empty and p.name not in out]
    if missing:
        raise ValueError(f"{fn.__name__} needs values for {missing}; add e.g. {missing[0]}=...")
    return out


def parse_grid(items: list[str], fn: Callable) -> dict[str, list]:
    """``["n=20,40", "seed=0:3", "lam=0,0.01"]`` -> grid, checked against ``fn``'s parameters.

    ``a:b`` is the integer range ``a, ..., b-1`` (``a < b``). Everything is checked here, before
    any instance runs (:func:`check_grid`); a name given twice is refused (give one entry with
    every value) rather than one of its entries being dropped.

    Examples
    --------
    >>> parse_grid(["x=1,2", "seed=0:2"], square_example)
    {'x': [1, 2], 'seed': [0, 1]}
    """
    raw: dict[str, list] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"grid entries look like name=v1,v2 or name=a:b; got {item!r}.")
        k, v = item.split("=", 1)
        k = k.strip()
        if not k:
            raise ValueError(f"grid entry {item!r} has no name; expected name=v1,v2.")
        if k in raw:
            raise ValueError(f"{k} is given twice; give one entry with every value, e.g. "
                             f"{k}={','.join(str(x) for x in raw[k])},{v}.")
        if not v.strip():
            raise ValueError(f"{k}= has no values; expected {k}=v1,v2 or {k}=a:b.")
        if ":" in v:
            parts = v.split(":")
            if len(parts) != 2 or not all(p.strip().lstrip("-").isdigit() for p in parts):
                raise ValueError(f"{k}={v}: a range is a:b with integers a < b (a, ..., b-1); "
                                 f"got {v!r}.")
            a, b = (int(p) for p in parts)
            if a >= b:
                raise ValueError(f"{k}={v}: the range a:b is empty (it needs a < b: {k}={a}:{a + 1} "
                                 f"is the single value {a}).")
            raw[k] = list(range(a, b))
        else:
            vals = [x.strip() for x in v.split(",")]
            if any(x == "" for x in vals):
                raise ValueError(f"{k}={v}: an empty value between commas; expected {k}=v1,v2.")
            raw[k] = [_parse_value(x) for x in vals]
    return check_grid(raw, fn)


def square_example(x, seed=0):
    """Doctest helper for :func:`parse_grid`."""
    return {"y": x * x}
