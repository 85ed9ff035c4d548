r"""The alternation comparison behind ``altheory alternate``: alternation (C9) against SGD /
momentum / Adam on real data, resumable.

One run, for every network (PHT with threshold ``tau`` and ReLU) and every seed, from the same
initial weights (:func:`altheory.alternation.alternation.mlp`):

* the alternation with each requested weight step (``exact``, ``descent``,
  ``support-preserving``), logging every round (:class:`altheory.alternation.alternation.RoundLog`);
* C8 at the end of every alternation run (:func:`altheory.alternation.alternation.c8_gaps`): the final
  support's per-layer problems solved exactly, and the gap of the trained weights;
* each baseline optimiser over its step-size sweep, full batch and mini-batch
  (:mod:`altheory.alternation.baselines`).

The objective is :math:`\ell(f(X;W),Y) + \tfrac\lambda2\sum_l\|W_l\|^2` with the squared loss on
one-hot targets (classification data) or real targets (teacher–student); accuracy is the argmax.
Inputs are centred, projected on their top ``pca`` principal directions (fitted on the training
slice) and scaled to unit variance per direction.

Outputs (``out``; ``altheory alternate --out``, default ``results/alternation/<data>/``):
``config.json`` (the resolved configuration, written first), ``runs.csv`` (the resumable store of
:mod:`altheory.experiments.store`: one row per finished alternation run or baseline curve, appended
as it finishes, so a killed run keeps what it finished and ``resume=True`` / ``--resume`` reruns
only the rest, with identical results), ``runs.json`` (every curve, every round) and ``summary.json`` (best step size
per method, medians and spreads over seeds of the final loss and accuracy, epochs- and
seconds-to-target). ``--export`` writes the compact subset the figures read (best step sizes
only) to ``figures/data/alternation_<data>.json``. ``--from-runs runs.json`` re-summarises (and
re-exports) a saved run without recomputing it; several comma-separated files are merged (e.g.
a second run with ``--steps= --batches=full --lrs=adam=0.3:1`` that extends a sweep). ``summary.json`` lists under
``best_at_grid_edge`` every (method, batch, network) whose best step size is at an end of its
grid (a sweep that does not bracket the optimum).

Example (the default comparison; the committed figure data also extends two baseline sweeps,
see ``figures/README.md``; about 25 min on a loaded 2-core machine)::

    altheory alternate --data fashion-mnist --export
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from altheory.errors import AltheoryError
from altheory.experiments.store import ResultStore, folder_lock, instance_key
from altheory.io import check_output_dir, write_text_atomic

__all__ = ["Config", "DATASETS", "ResumeError", "prepare_data", "run_comparison", "summarise",
           "export", "print_summary", "load_runs", "check_resume", "units", "config_help"]

DATASETS = ("fashion-mnist", "digits", "teacher-student")
WEIGHT_STEPS = ("exact", "descent", "support-preserving")  # altheory.alternation.alternation.WEIGHT_STEPS
BASELINES = ("sgd", "momentum", "adam")  # altheory.alternation.baselines.OPTIMIZERS
BATCH_MODES = ("full", "mini")
# fields that do not change the results: they may differ between a run and its resume
RUN_CONTROL_FIELDS = ("threads",)


class ResumeError(AltheoryError, ValueError):
    """A results folder that cannot be resumed (nothing there, or another configuration), or
    that holds results a fresh run would overwrite."""


@dataclass
class Config:
    """Resolved configuration of one comparison (saved to ``config.json``)."""

    data: str = "fashion-mnist"      # fashion-mnist | digits | teacher-student
    root: str = ""                   # data folder (fashion-mnist); "" = the Debian default
    n_train: int = 3000              # training samples (a seeded random slice)
    n_test: int = 1000               # test samples
    pca: int = 30                    # input dimension after PCA (0 = raw pixels)
    width: int = 32                  # hidden units of the 2-layer MLP
    tau: float = 0.1                 # PHT threshold of the PHT network (the ReLU one has 0)
    relu: bool = True                # also run everything on the ReLU network (tau = 0)
    lam: float = 1e-4                # weight decay on the weights (not biases)
    seeds: int = 5                   # seeds 0..seeds-1 (init and mini-batch order)
    steps: str = "exact,descent"     # alternation weight steps to run
    rounds: int = 15                 # alternation budget (rounds)
    descent_steps: int = 20          # L-BFGS iterations per round of the 'descent' step
    methods: str = "sgd,momentum,adam"  # baselines
    lr_points: int = 4               # step sizes per method (from altheory.alternation.baselines.DEFAULT_LRS)
    epochs_mini: int = 30            # epochs of the mini-batch baselines
    epochs_full: int = 300           # epochs (= steps) of the full-batch baselines
    batch_size: int = 100            # mini-batch size
    threads: int = 1                 # torch and BLAS threads
    batches: str = "full,mini"       # baseline batch modes to run
    lrs: str = ""                    # step-size grids overriding the defaults, "adam=0.3:1,sgd=3"

    def validate(self) -> "Config":
        """Raise ValueError (expected, got, fix) on a value outside its field's domain."""
        if self.data not in DATASETS:
            raise ValueError(f"data must be one of {DATASETS}; got {self.data!r}.")
        for name in ("n_train", "n_test", "width", "seeds", "rounds", "descent_steps", "lr_points",
                     "epochs_mini", "epochs_full", "batch_size", "threads"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {name}={v!r}.")
        if isinstance(self.pca, bool) or not isinstance(self.pca, int) or self.pca < 0:
            raise ValueError(f"pca must be an integer >= 0 (0 = raw pixels); got pca={self.pca!r}.")
        for name in ("tau", "lam"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0; got {name}={v!r}."
                                 + (" Use tau=0 for ReLU." if name == "tau" else ""))
        for name, allowed, empty_ok in (("steps", WEIGHT_STEPS, True), ("methods", BASELINES, True),
                                        ("batches", BATCH_MODES, True)):
            items = [x.strip() for x in getattr(self, name).split(",") if x.strip()]
            bad = [x for x in items if x not in allowed]
            if bad:
                raise ValueError(f"{name}: each entry must be one of {allowed}; got {bad} in "
                                 f"{name}={getattr(self, name)!r}.")
            if len(set(items)) != len(items):
                raise ValueError(f"{name}: an entry is repeated in {name}={getattr(self, name)!r}; "
                                 "give each once.")
        if not self._list(self.steps) and not (self._list(self.methods) and self._list(self.batches)):
            raise ValueError("nothing to run: steps is empty and there is no baseline (methods and "
                             "batches); give steps=exact or methods=adam with batches=full.")
        methods = self._list(self.methods)
        seen = set()
        for item in self._list(self.lrs):
            m, _, vals = item.partition("=")
            try:
                lrs = [float(v) for v in vals.split(":")] if vals else []
            except ValueError:
                lrs = []
            if m not in methods or not lrs or any(not (math.isfinite(v) and v > 0) for v in lrs):
                raise ValueError(f"lrs: expected 'method=lr1:lr2' with a method in {methods} and "
                                 f"step sizes > 0; got {item!r}.")
            if m in seen:
                raise ValueError(f"lrs: {m} is given twice in {self.lrs!r}; give its grid once, "
                                 f"e.g. {m}=0.1:0.3.")
            seen.add(m)
        if "mini" in self._list(self.batches) and self._list(self.methods) and self.batch_size > self.n_train:
            raise ValueError(f"batch_size={self.batch_size} is larger than the training set "
                             f"(n_train={self.n_train}); use batch_size <= n_train or batches=full.")
        return self

    @staticmethod
    def _list(s: str) -> list[str]:
        return [x.strip() for x in s.split(",") if x.strip()]


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------

def _pca(Xtr: np.ndarray, Xte: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    mu = Xtr.mean(0)
    Xtr, Xte = Xtr - mu, Xte - mu
    if dim and dim < Xtr.shape[1]:
        _, _, Vt = np.linalg.svd(Xtr, full_matrices=False)
        Xtr, Xte = Xtr @ Vt[:dim].T, Xte @ Vt[:dim].T
    sd = Xtr.std(0)
    sd[sd == 0] = 1.0
    return Xtr / sd, Xte / sd


def prepare_data(cfg: Config) -> dict:
    """``{"Xtr", "Ytr", "Xte", "Yte", "k", "name"}``: float64, PCA-reduced, one-hot targets."""
    from altheory import data as D

    rng = np.random.default_rng(12345)  # the slice is fixed, independent of the run seeds
    if cfg.data == "fashion-mnist":
        tr = D.load_fashion_mnist(cfg.root or None, split="train")
        te = D.load_fashion_mnist(cfg.root or None, split="test")
    elif cfg.data == "digits":
        tr, te = D.load_digits(split="train"), D.load_digits(split="test")
    elif cfg.data == "teacher-student":
        ts = D.teacher_student(cfg.n_train + cfg.n_test, max(cfg.pca, 1) or 10, widths=(16,),
                               tau=cfg.tau, seed=0)
        Xtr, Xte = ts.X[:cfg.n_train], ts.X[cfg.n_train:]
        return {"Xtr": Xtr, "Ytr": ts.Y[:cfg.n_train], "Xte": Xte, "Yte": ts.Y[cfg.n_train:],
                "k": ts.Y.shape[1], "name": "teacher-student", "classification": False}
    else:
        raise ValueError(f"data must be one of {DATASETS}; got {cfg.data!r}.")
    itr = rng.permutation(len(tr))[: cfg.n_train]
    ite = rng.permutation(len(te))[: cfg.n_test]
    Xtr = tr.X[itr].reshape(len(itr), -1).astype(np.float64) / 255.0
    Xte = te.X[ite].reshape(len(ite), -1).astype(np.float64) / 255.0
    Xtr, Xte = _pca(Xtr, Xte, cfg.pca)
    k = tr.num_classes
    return {"Xtr": Xtr, "Ytr": np.eye(k)[tr.y[itr]], "Xte": Xte, "Yte": np.eye(k)[te.y[ite]],
            "k": k, "name": cfg.data, "classification": True}


# --------------------------------------------------------------------------------------------
# the comparison
# --------------------------------------------------------------------------------------------

def _round6(v):
    if isinstance(v, float):
        return float(f"{v:.6g}") if math.isfinite(v) else (None if math.isnan(v) else str(v))
    if isinstance(v, list):
        return [_round6(x) for x in v]
    if isinstance(v, dict):
        return {k: _round6(x) for k, x in v.items()}
    return v


def units(cfg: Config) -> list[dict]:
    """The independent runs of a comparison, in the order of ``runs.json``: one per
    (network, weight step, seed) of the alternation and one per (network, method, batch mode,
    step size, seed) of the baselines. Each is a row of the resumable store, keyed by these
    parameters (:func:`altheory.experiments.store.instance_key`)."""
    from altheory.alternation.baselines import DEFAULT_LRS

    taus = [cfg.tau] + ([0.0] if cfg.relu and cfg.tau != 0 else [])
    methods = Config._list(cfg.methods)
    lrs = {m: list(DEFAULT_LRS[m][: cfg.lr_points]) for m in methods}
    for item in Config._list(cfg.lrs):
        m, _, vals = item.partition("=")
        lrs[m] = [float(v) for v in vals.split(":")]
    out = []
    for tau in taus:
        for step in Config._list(cfg.steps):
            for seed in range(cfg.seeds):
                out.append({"kind": "alternation", "tau": tau, "step": step, "seed": seed})
        for method in methods:  # the order of altheory.alternation.baselines.sweep
            for batch in Config._list(cfg.batches):
                for lr in lrs[method]:
                    for seed in range(cfg.seeds):
                        out.append({"kind": "baseline", "tau": tau, "method": method, "batch": batch,
                                    "lr": lr, "seed": seed})
    return out


def _config_diff(saved: dict, cfg: Config) -> dict:
    now = asdict(cfg)
    keys = (set(saved) | set(now)) - set(RUN_CONTROL_FIELDS)
    return {k: (saved.get(k), now.get(k)) for k in sorted(keys) if saved.get(k) != now.get(k)}


def check_resume(out: str | Path, cfg: Config, *, resume: bool, overwrite: bool = False) -> int:
    """Check a results folder before any work; returns the number of finished runs to reuse.

    Raises
    ------
    ResumeError
        ``resume`` and no previous run in ``out`` (no ``config.json``), or one with another
        configuration (the differing keys are named); not ``resume`` and ``out`` holds finished
        runs (pass ``resume`` to continue them or ``overwrite`` to start again).
    """
    out = Path(out)
    saved_path, store = out / "config.json", out / "runs.csv"
    if resume:
        if not saved_path.is_file():
            raise ResumeError(f"--resume: nothing to resume in {out} (no config.json); run without "
                              "--resume to start, or give the --out folder of the run to continue.")
        try:
            saved = json.loads(saved_path.read_text())
        except (OSError, ValueError) as exc:
            raise ResumeError(f"--resume: {saved_path} is unreadable ({exc}); start again with "
                              "--overwrite.") from None
        diff = _config_diff(saved, cfg)
        if diff:
            shown = ", ".join(f"{k}: saved {a!r}, now {b!r}" for k, a, b in
                              ((k, *v) for k, v in diff.items()))
            raise ResumeError(f"--resume: the configuration differs from the run in {out} ({shown}); "
                              "resume with the same options, or write to another --out.")
        return len(ResultStore(store).done) if store.exists() else 0
    if store.exists() and store.stat().st_size > 0 and not overwrite:
        from altheory.experiments.store import read_rows

        n = len(read_rows(store)[1])
        if n:
            raise ResumeError(f"{out} already holds {n} finished runs of a previous comparison; pass "
                              "--resume to continue it, --overwrite to start again, or another --out.")
    return 0


def run_comparison(cfg: Config, data: dict | None = None, *, progress: bool = True,
                   out: str | Path | None = None, resume: bool = False, overwrite: bool = False
                   ) -> dict:
    """Run every alternation variant and every baseline; returns the ``runs.json`` content.

    With ``out``, the folder is locked for the run (:func:`altheory.experiments.store.folder_lock`),
    ``config.json`` is written first, every finished run is appended to ``runs.csv`` as it
    finishes, and ``runs.json`` and ``summary.json`` are written at the end. ``resume`` reuses the
    finished runs of a previous run with the same configuration (:func:`check_resume`); the
    result is the same as that of an uninterrupted run (the timings aside).
    """
    cfg.validate()
    if out is None:
        return _run(cfg, data, progress, None)
    out = check_output_dir(out)
    with folder_lock(out, what="this comparison"):
        check_resume(out, cfg, resume=resume, overwrite=overwrite)
        store_path = out / "runs.csv"
        if not resume and store_path.exists():
            store_path.unlink()  # overwrite: checked above
        write_text_atomic(out / "config.json", json.dumps(asdict(cfg), indent=2))
        runs = _run(cfg, data, progress, ResultStore(store_path))
        summary = summarise(runs)
        write_text_atomic(out / "runs.json", json.dumps(_round6(runs)))
        write_text_atomic(out / "summary.json", json.dumps(_round6(summary), indent=2))
    return runs


def _run(cfg: Config, data: dict | None, progress: bool, store: ResultStore | None) -> dict:
    """Every unit of :func:`units` in order, reusing the finished ones of ``store``; the
    ``runs.json`` content."""
    import torch
    from threadpoolctl import threadpool_limits
    from tqdm import tqdm

    # imported before the thread limits are set: threadpoolctl limits only the BLAS libraries
    # already loaded, so what these modules load is limited too
    import altheory.alternation.alternation  # noqa: F401
    import altheory.alternation.baselines  # noqa: F401

    torch.set_num_threads(max(1, int(cfg.threads)))
    # BLAS threads: oversubscribed OpenBLAS spins; one thread is ~50x faster on a shared 2-core box
    limits = threadpool_limits(max(1, int(cfg.threads)))
    data = prepare_data(cfg) if data is None else data
    todo = units(cfg)
    done = store.rows(decode=("run",)) if store is not None else {}
    cost = {u["kind"]: (cfg.rounds if u["kind"] == "alternation" else 1) for u in todo}
    bar = tqdm(total=sum(cost[u["kind"]] for u in todo), desc=f"alternate {cfg.data}", unit="run",
               disable=not progress, dynamic_ncols=True)
    alt_runs, base_runs = [], []
    for u in todo:
        key = instance_key(u)
        if key in done and done[key].get("status") == "ok":
            run = done[key]["run"]
            bar.update(cost[u["kind"]])
        elif u["kind"] == "alternation":
            run = _alternation_run(cfg, data, u, bar)
        elif u["kind"] == "baseline":
            run = _baseline_run(cfg, data, u)
            bar.update(1)
        else:  # pragma: no cover - units() makes only these two kinds
            raise ValueError(f"unit kind must be 'alternation' or 'baseline'; got {u['kind']!r}.")
        if store is not None and key not in done:
            store.append({**u, "key": key, "status": "ok", "run": run})
        (alt_runs if u["kind"] == "alternation" else base_runs).append(run)
    bar.close()
    limits.restore_original_limits()
    Xtr, Ytr, k = data["Xtr"], data["Ytr"], data["k"]
    return {"config": asdict(cfg), "n_train": int(Xtr.shape[0]), "n_test": int(data["Xte"].shape[0]),
            "d": int(Xtr.shape[1]), "k": int(k), "F0": float(0.5 * (Ytr ** 2).sum() / Ytr.shape[0]),
            "alternation": alt_runs, "baselines": base_runs}


def _model(cfg: Config, data: dict, seed: int, tau: float):
    """The 2-layer MLP of a unit: the same initial weights for every method of a (seed, tau)."""
    from altheory.alternation.alternation import mlp

    return mlp(data["Xtr"].shape[1], (cfg.width,), data["k"], tau=tau, seed=seed)


def _test_accuracy(model, data: dict) -> dict:
    """``{"test_acc": ...}``: the argmax accuracy of ``model`` on the test slice."""
    import torch

    from altheory.alternation.baselines import accuracy

    with torch.no_grad():
        out = model(torch.from_numpy(data["Xte"])).numpy()
    return {"test_acc": accuracy(out, data["Yte"], "squared")}


def _alternation_run(cfg: Config, data: dict, u: dict, bar) -> dict:
    """One alternation run (a unit of kind ``alternation``), every round logged, C8 gaps at the
    end; as a resumed run reads it back from the store (through JSON)."""
    import torch

    from altheory.alternation.alternation import alternate, c8_gaps
    from altheory.alternation.baselines import accuracy

    Xtr, Ytr = data["Xtr"], data["Ytr"]
    tau, step, seed = u["tau"], u["step"], u["seed"]
    t0 = time.perf_counter()
    res = alternate(_model(cfg, data, seed, tau), Xtr, Ytr, loss="squared", lam=cfg.lam, weight_step=step,
                    max_rounds=cfg.rounds, descent_steps=cfg.descent_steps,
                    evaluate=lambda m: {**_test_accuracy(m, data), "train_acc": accuracy(
                        m(torch.from_numpy(Xtr)).detach().numpy(), Ytr, "squared")},
                    progress=bar)
    bar.update(cfg.rounds - res.n_rounds)
    gaps = c8_gaps(res.model, Xtr, Ytr, loss="squared", lam=cfg.lam)
    rounds = res.rounds
    run = {
        "method": f"alt-{step}", "tau": tau, "seed": seed, "stopped": res.stopped,
        "epochs": [r.passes for r in rounds], "seconds": [r.seconds for r in rounds],
        "loss": [r.loss for r in rounds], "objective": [r.objective for r in rounds],
        "fixed_objective": [r.fixed_objective for r in rounds],
        "flips": [r.flips for r in rounds], "margin": [r.margin for r in rounds],
        "consistent": [r.consistent for r in rounds],
        "statuses": [r.statuses for r in rounds],
        "metrics": {key_: [r.metrics.get(key_) for r in rounds]
                    for key_ in ("train_acc", "test_acc")},
        "monotone": res.is_monotone(), "c8": gaps,
        "wall": time.perf_counter() - t0, "units": cfg.width}
    # the stored row is read back through JSON, as a resumed run reads it
    return json.loads(json.dumps(run, default=_json_default))


def _baseline_run(cfg: Config, data: dict, u: dict) -> dict:
    """One baseline curve (a unit of kind ``baseline``: method, batch mode, step size, seed),
    as a resumed run reads it back from the store (through JSON)."""
    from altheory.alternation.baselines import train_baseline

    bsz = None if u["batch"] == "full" else cfg.batch_size
    ep = cfg.epochs_full if u["batch"] == "full" else cfg.epochs_mini
    _, c = train_baseline(_model(cfg, data, u["seed"], u["tau"]), data["Xtr"], data["Ytr"],
                          method=u["method"], lr=u["lr"], epochs=ep, batch_size=bsz, loss="squared",
                          lam=cfg.lam, seed=u["seed"], evaluate=lambda m: _test_accuracy(m, data))
    return json.loads(json.dumps(c.to_dict(), default=_json_default))


def _json_default(o):
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _first_reach(xs, ys, target):
    for x, y in zip(xs, ys):
        if y is not None and y <= target:
            return x
    return None


def _stats(vals):
    v = np.array([x for x in vals if x is not None], dtype=np.float64)
    if v.size == 0:
        return {"median": None, "q25": None, "q75": None, "reached": 0, "of": len(vals)}
    return {"median": float(np.median(v)), "q25": float(np.percentile(v, 25)),
            "q75": float(np.percentile(v, 75)), "reached": int(v.size), "of": len(vals)}


def summarise(runs: dict, *, target_slack: float = 0.05, loose_slack: float = 0.25) -> dict:
    r"""Best step size per (method, batch, tau); medians and quartiles over seeds; targets.

    The target objective of a network (``tau``) is :math:`(1 + \text{target\_slack})` times the
    lowest median final objective among the tuned baselines; epochs- and seconds-to-target are
    the first evaluation at or below it, per seed (``reached`` counts the seeds that got there).
    The same with ``loose_slack`` is under ``*_to_loose_target``.
    """
    from altheory.alternation.baselines import Curve, best_per_method

    base = [Curve(**{f.name: c[f.name] for f in fields(Curve)}) for c in runs["baselines"]]
    best = best_per_method(base)
    groups: dict[tuple[str, float], list[dict]] = {}
    for c in runs["baselines"]:
        if c["lr"] == best.get((c["method"], c["batch"], c["tau"])):
            groups.setdefault((f"{c['method']}-{c['batch']}", c["tau"]), []).append(c)
    for a in runs["alternation"]:
        groups.setdefault((a["method"], a["tau"]), []).append(a)
    out: dict = {"best_lr": {f"{m}-{b}|{t}": lr for (m, b, t), lr in best.items()},
                 "target_rule": f"(1 + {target_slack}) x the lowest median final objective of "
                                "the tuned baselines", "taus": {}}
    sweep_tbl: dict = {}
    for c in runs["baselines"]:
        sweep_tbl.setdefault(f"{c['method']}-{c['batch']}|{c['tau']}|{c['lr']}", []).append(
            c["objective"][-1] if not c["diverged"] else math.inf)
    out["sweep"] = {k: float(np.median(v)) for k, v in sweep_tbl.items()}
    grid: dict[tuple[str, str, float], list[float]] = {}
    for c in runs["baselines"]:
        grid.setdefault((c["method"], c["batch"], c["tau"]), []).append(c["lr"])
    # a best step size at the end of its grid means the sweep did not bracket the optimum
    out["best_at_grid_edge"] = sorted(f"{m}-{b}|{t}" for (m, b, t), lr in best.items()
                                      if len(set(grid[(m, b, t)])) > 1
                                      and lr in (min(grid[(m, b, t)]), max(grid[(m, b, t)])))
    for tau in sorted({t for _, t in groups}, reverse=True):
        meths = {m: g for (m, t), g in groups.items() if t == tau}
        finals = {m: float(np.median([r["objective"][-1] for r in g])) for m, g in meths.items()}
        base_finals = [v for m, v in finals.items() if not m.startswith("alt-")]
        target = (1 + target_slack) * (min(base_finals) if base_finals else min(finals.values()))
        rows = {}
        for m, g in meths.items():
            rows[m] = {
                "final_objective": _stats([r["objective"][-1] for r in g]),
                "final_train_acc": _stats([r["metrics"]["train_acc"][-1] for r in g]),
                "final_test_acc": _stats([r["metrics"]["test_acc"][-1] for r in g]),
                "epochs_to_target": _stats([_first_reach(r["epochs"], r["objective"], target) for r in g]),
                "seconds_to_target": _stats([_first_reach(r["seconds"], r["objective"], target) for r in g]),
                "total_seconds": _stats([r["seconds"][-1] for r in g]),
                "total_epochs": _stats([r["epochs"][-1] for r in g]),
            }
            loose = (1 + loose_slack) / (1 + target_slack) * target
            rows[m]["epochs_to_loose_target"] = _stats(
                [_first_reach(r["epochs"], r["objective"], loose) for r in g])
            rows[m]["seconds_to_loose_target"] = _stats(
                [_first_reach(r["seconds"], r["objective"], loose) for r in g])
            if m.startswith("alt-"):
                rows[m]["rounds"] = _stats([len(r["epochs"]) - 1 for r in g])
                rows[m]["stopped"] = sorted({r["stopped"] for r in g})
                rows[m]["monotone"] = sum(bool(r["monotone"]) for r in g)
                gaps = [v for r in g for v in r["c8"]["layer_gaps"].values() if v is not None]
                rows[m]["c8_max_layer_gap"] = max(gaps) if gaps else None
        out["taus"][str(tau)] = {"target_objective": target, "methods": rows,
                                 "loose_target_objective": (1 + loose_slack) / (1 + target_slack) * target}
    return out


def export(runs: dict, summary: dict, path: str | Path) -> None:
    """The figures' subset: alternation runs and best-step-size baseline curves, 6 digits."""
    best = summary["best_lr"]
    keep = [c for c in runs["baselines"] if best.get(f"{c['method']}-{c['batch']}|{c['tau']}") == c["lr"]]
    small = {"config": runs["config"], "merged_configs": runs.get("merged_configs", []), "n_train": runs["n_train"], "d": runs["d"], "k": runs["k"],
             "alternation": runs["alternation"], "baselines": keep, "summary": summary}
    write_text_atomic(path, json.dumps(_round6(small), separators=(",", ":")))


def print_summary(summary: dict, console=None) -> None:
    """The summary tables (rich), one per network, and the best step sizes."""
    from rich.console import Console
    from rich.table import Table

    if console is None:
        console = Console() if sys.stdout.isatty() else Console(width=160)
    for tau, blk in summary["taus"].items():
        t = Table(title=f"tau={tau}: target objective {blk['target_objective']:.4g} "
                        f"({summary['target_rule']}); median over seeds [q25, q75]")
        for col in ("method", "final objective", "train acc", "test acc", "epochs to target",
                    "seconds to target", "reached"):
            t.add_column(col)

        def f(s, fmt="{:.4g}"):
            if s["median"] is None:
                return "—"
            return f"{fmt.format(s['median'])} [{fmt.format(s['q25'])}, {fmt.format(s['q75'])}]"

        for m, r in sorted(blk["methods"].items()):
            t.add_row(m, f(r["final_objective"]), f(r["final_train_acc"], "{:.3f}"),
                      f(r["final_test_acc"], "{:.3f}"), f(r["epochs_to_target"], "{:.0f}"),
                      f(r["seconds_to_target"], "{:.2f}"),
                      f"{r['epochs_to_target']['reached']}/{r['epochs_to_target']['of']}")
        console.print(t)
    console.print("best step sizes: " + ", ".join(f"{k}={v:g}" for k, v in summary["best_lr"].items()))
    if summary.get("best_at_grid_edge"):
        console.print("[yellow]best step size at the edge of its grid (sweep not bracketing):[/] "
                      + ", ".join(summary["best_at_grid_edge"]))




def load_runs(paths: list[str | Path]) -> dict:
    """Saved ``runs.json`` files merged into one (e.g. a second run of extra step sizes).

    Raises FileNotFoundError or ValueError naming the file that is missing or not a runs.json.
    """
    if not paths:
        raise ValueError("no runs.json given; expected one or more paths.")
    parts = []
    for f in paths:
        p = Path(f)
        if not p.is_file():
            raise FileNotFoundError(f"runs file not found: {p}; expected the runs.json written by "
                                    "`altheory alternate` (in its --out folder).")
        try:
            r = json.loads(p.read_text())
        except ValueError as exc:
            raise ValueError(f"{p} is not valid JSON ({exc}); is it truncated?") from None
        missing = [k for k in ("config", "alternation", "baselines") if not isinstance(r, dict) or k not in r]
        if missing:
            raise ValueError(f"{p} is not a runs.json of `altheory alternate`: missing {missing}.")
        parts.append(r)
    runs = parts[0]
    for extra in parts[1:]:  # merge: e.g. a run of extra step sizes for some baselines
        runs["alternation"] = runs["alternation"] + extra["alternation"]
        runs["baselines"] = runs["baselines"] + extra["baselines"]
        runs.setdefault("merged_configs", []).append(extra["config"])
    return runs


def config_help() -> dict[str, str]:
    """The ``# comment`` after each field of :class:`Config`: its help text (one place to document)."""
    import inspect
    import re

    out = {}
    for line in inspect.getsource(Config).splitlines():
        m = re.match(r"\s+(\w+):.*?#\s*(.+)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out
