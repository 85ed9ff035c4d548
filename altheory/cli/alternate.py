r"""``altheory alternate``: alternation (C9) against SGD / momentum / Adam on real data.

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

Outputs (``--out``, default ``results/alternation/<data>/``): ``config.json`` (the resolved
configuration), ``runs.json`` (every curve, every round) and ``summary.json`` (best step size
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

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

__all__ = ["Config", "prepare_data", "run_comparison", "summarise", "main"]

DATASETS = ("fashion-mnist", "digits", "teacher-student")


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


def run_comparison(cfg: Config, data: dict | None = None, *, progress: bool = True) -> dict:
    """Run every alternation variant and every baseline; returns the ``runs.json`` content."""
    import torch
    from threadpoolctl import threadpool_limits
    from tqdm import tqdm

    from altheory.alternation.alternation import alternate, c8_gaps, mlp
    from altheory.alternation.baselines import DEFAULT_LRS, OPTIMIZERS, accuracy, sweep

    torch.set_num_threads(max(1, int(cfg.threads)))
    # BLAS threads: oversubscribed OpenBLAS spins; one thread is ~50x faster on a shared 2-core box
    limits = threadpool_limits(max(1, int(cfg.threads)))
    data = prepare_data(cfg) if data is None else data
    Xtr, Ytr, Xte, Yte, k = data["Xtr"], data["Ytr"], data["Xte"], data["Yte"], data["k"]
    d = Xtr.shape[1]
    steps = [s for s in cfg.steps.split(",") if s]
    methods = [m for m in cfg.methods.split(",") if m]
    for m in methods:
        if m not in OPTIMIZERS:
            raise ValueError(f"--methods: each must be one of {OPTIMIZERS}; got {m!r}.")
    taus = [cfg.tau] + ([0.0] if cfg.relu and cfg.tau != 0 else [])
    lrs = {m: DEFAULT_LRS[m][: cfg.lr_points] for m in methods}
    for item in (x for x in cfg.lrs.split(",") if x):
        m, _, vals = item.partition("=")
        if m not in methods or not vals:
            raise ValueError(f"--lrs: expected 'method=lr1:lr2' with a method in {methods}; got {item!r}.")
        lrs[m] = tuple(float(v) for v in vals.split(":"))
    modes = [b for b in cfg.batches.split(",") if b]
    if any(b not in ("full", "mini") for b in modes):
        raise ValueError(f"--batches: expected 'full', 'mini' or both; got {cfg.batches!r}.")
    batch_sizes = tuple(None if b == "full" else cfg.batch_size for b in modes)
    seeds = list(range(cfg.seeds))
    Xte_t = torch.from_numpy(Xte)

    def evaluate(model):
        with torch.no_grad():
            out = model(Xte_t).numpy()
        return {"test_acc": accuracy(out, Yte, "squared")}

    n_alt = len(taus) * len(seeds) * len(steps) * cfg.rounds
    n_base = len(taus) * len(seeds) * sum(len(v) for v in lrs.values()) * len(batch_sizes)
    bar = tqdm(total=n_alt + n_base, desc=f"alternate {cfg.data}", unit="run", disable=not progress,
               dynamic_ncols=True)
    alt_runs, base_runs = [], []
    for tau in taus:
        def make(seed, tau=tau):
            return mlp(d, (cfg.width,), k, tau=tau, seed=seed)

        for step in steps:
            for seed in seeds:
                t0 = time.perf_counter()
                res = alternate(make(seed), Xtr, Ytr, loss="squared", lam=cfg.lam, weight_step=step,
                                max_rounds=cfg.rounds, descent_steps=cfg.descent_steps,
                                evaluate=lambda m: {**evaluate(m), "train_acc": accuracy(
                                    m(torch.from_numpy(Xtr)).detach().numpy(), Ytr, "squared")},
                                progress=bar)
                bar.update(cfg.rounds - res.n_rounds)
                gaps = c8_gaps(res.model, Xtr, Ytr, loss="squared", lam=cfg.lam)
                rounds = res.rounds
                alt_runs.append({
                    "method": f"alt-{step}", "tau": tau, "seed": seed, "stopped": res.stopped,
                    "epochs": [r.passes for r in rounds], "seconds": [r.seconds for r in rounds],
                    "loss": [r.loss for r in rounds], "objective": [r.objective for r in rounds],
                    "fixed_objective": [r.fixed_objective for r in rounds],
                    "flips": [r.flips for r in rounds], "margin": [r.margin for r in rounds],
                    "consistent": [r.consistent for r in rounds],
                    "statuses": [r.statuses for r in rounds],
                    "metrics": {key: [r.metrics.get(key) for r in rounds]
                                for key in ("train_acc", "test_acc")},
                    "monotone": res.is_monotone(), "c8": gaps,
                    "wall": time.perf_counter() - t0, "units": cfg.width})
        curves = sweep(make, Xtr, Ytr, methods=methods, lrs=lrs,
                       batch_sizes=batch_sizes,
                       epochs={"full": cfg.epochs_full, "mini": cfg.epochs_mini}, seeds=seeds,
                       loss="squared", lam=cfg.lam, evaluate=evaluate, progress=bar)
        base_runs.extend(c.to_dict() for c in curves)
    bar.close()
    limits.restore_original_limits()
    return {"config": asdict(cfg), "n_train": int(Xtr.shape[0]), "n_test": int(Xte.shape[0]),
            "d": int(d), "k": int(k), "F0": float(0.5 * (Ytr ** 2).sum() / Ytr.shape[0]),
            "alternation": alt_runs, "baselines": base_runs}


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


def export(runs: dict, summary: dict, path: Path) -> None:
    """The figures' subset: alternation runs and best-step-size baseline curves, 6 digits."""
    best = summary["best_lr"]
    keep = [c for c in runs["baselines"] if best.get(f"{c['method']}-{c['batch']}|{c['tau']}") == c["lr"]]
    small = {"config": runs["config"], "merged_configs": runs.get("merged_configs", []), "n_train": runs["n_train"], "d": runs["d"], "k": runs["k"],
             "alternation": runs["alternation"], "baselines": keep, "summary": summary}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(_round6(small), separators=(",", ":")))
    os.replace(tmp, path)


def _print_summary(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

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


def _field_comments(cls) -> dict[str, str]:
    """The ``# comment`` after each field of a dataclass: its help text (one place to document)."""
    import inspect
    import re

    out = {}
    for line in inspect.getsource(cls).splitlines():
        m = re.match(r"\s+(\w+):.*?#\s*(.+)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``altheory alternate``; returns the exit status."""
    p = argparse.ArgumentParser(prog="altheory alternate",
                                description="Alternation (C9) vs SGD/momentum/Adam; C8 gaps at the end.")
    helps = _field_comments(Config)
    for f in fields(Config):
        kind = type(f.default)
        h = f"{helps.get(f.name, '')} (default: %(default)s)"
        if kind is bool:
            p.add_argument(f"--{f.name.replace('_', '-')}", default=f.default,
                           action=argparse.BooleanOptionalAction, help=helps.get(f.name))
        else:
            p.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=f.default, help=h)
    p.add_argument("--out", default=None, help="output folder (default results/alternation/<data>)")
    p.add_argument("--export", nargs="?", const="auto", default=None,
                   help="also write the figures' data (default figures/data/alternation_<data>.json)")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: 300 samples, 2 seeds, 3 rounds, few epochs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--from-runs", default=None, metavar="RUNS_JSON[,RUNS_JSON...]",
                   help="summarise (and --export) saved runs.json files (merged) instead of running")
    args = p.parse_args(argv)
    if args.from_runs:
        parts = [json.loads(Path(f).read_text()) for f in args.from_runs.split(",") if f]
        runs = parts[0]
        for extra in parts[1:]:  # merge: e.g. a run of extra step sizes for some baselines
            runs["alternation"] = runs["alternation"] + extra["alternation"]
            runs["baselines"] = runs["baselines"] + extra["baselines"]
            runs.setdefault("merged_configs", []).append(extra["config"])
        summary = summarise(runs)
        _print_summary(summary)
        if args.export:
            path = Path(f"figures/data/alternation_{runs['config']['data']}.json"
                        if args.export == "auto" else args.export)
            export(runs, summary, path)
            print(f"figure data: {path}")
        return 0
    cfg = Config(**{f.name: getattr(args, f.name) for f in fields(Config)})
    if cfg.data not in DATASETS:
        p.error(f"--data must be one of {DATASETS}; got {cfg.data!r}.")
    if args.quick:
        cfg.n_train, cfg.n_test, cfg.seeds, cfg.rounds = 300, 100, 2, 3
        cfg.epochs_mini, cfg.epochs_full, cfg.lr_points = 3, 20, 2
    out = Path(args.out or f"results/alternation/{cfg.data}")
    out.mkdir(parents=True, exist_ok=True)
    print("config: " + json.dumps(asdict(cfg)))
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    try:
        runs = run_comparison(cfg, progress=not args.no_progress)
    except FileNotFoundError as exc:
        print(f"altheory alternate: {exc}", file=sys.stderr)
        return 2
    summary = summarise(runs)
    (out / "runs.json").write_text(json.dumps(_round6(runs)))
    (out / "summary.json").write_text(json.dumps(_round6(summary), indent=2))
    _print_summary(summary)
    print(f"results: {out}/runs.json, {out}/summary.json")
    if args.export:
        path = Path(f"figures/data/alternation_{cfg.data}.json" if args.export == "auto" else args.export)
        export(runs, summary, path)
        print(f"figure data: {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
