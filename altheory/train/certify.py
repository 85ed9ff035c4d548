r"""Certify a trained network: its support on the training data and its classifier head (C3, C8).

``altheory certify RUN_DIR [--subset N] [--lam L]`` (and :func:`certify_run` from Python).

With the network in eval mode (batch norm uses its running statistics, so each sample's
support depends on that sample alone — docs/claims.md, "Batch norm and the support") and the
support :math:`S` of the training samples fixed, the features :math:`\phi_i` entering the last
linear layer are fixed, and the head problem

.. math:: F(W, b) = \frac1n\sum_i \mathrm{CE}(\mathrm{softmax}(W\phi_i + b), y_i) + \frac\lambda2\|W\|_F^2

is convex (C3/C8): :mod:`altheory.solvers.softmax_head` solves it in float64 with a Fenchel
duality-gap certificate, so :math:`F^*` is bracketed: every primal value bounds it from above and
every dual value from below (weak duality, a theorem), so the bracket takes the best of the
solver's and the trained head's, :math:`\max(D_{\text{solver}}, D_{\text{trained}}) \le F^* \le
\min(F_{\text{solver}}, F_{\text{trained}})`, with the lower end clamped to the upper one where
rounding puts it above (:func:`altheory.solvers.softmax_head._certified_bracket`), so no gap in
the report is negative.
The report gives the trained head's objective :math:`F_{\text{trained}}`, the bracket, and the
normalised gap of the trained head
:math:`(F_{\text{trained}} - F^*)/F(0)`, :math:`F(0) = \log k`, as an interval
``[gap_lower, gap_certified]`` (``gap_certified`` is a certified upper bound). By default
:math:`\lambda` is the run's ``weight_decay`` and the bias is not penalised, which is the
trainer's own objective restricted to the head for SGD (L2 on conv/linear weights only); for
AdamW (decoupled decay) it is a choice, not the trained objective.

Per selection layer it reports the support statistics on the same samples (from
:func:`altheory.support`): density (the kept fraction of entries) and the per-sample margin
(min and quantiles; a margin of 0 is a tie at the threshold).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from altheory.io import check_output_path, write_text_atomic

__all__ = ["CertifyReport", "certify_run", "main"]

QUANTILES = (0.01, 0.1, 0.5)


@dataclass
class CertifyReport:
    r"""What :func:`certify_run` measured (float64 throughout). ``to_dict()`` is the JSON file.

    Attributes
    ----------
    run_dir, step : the run and its optimizer steps.
    n, p, k : samples certified, feature dimension, classes.
    lam, lam_b, tol : the head problem's ridge on W, on b (0 = not penalised), solver tolerance.
    F0 : :math:`F(0) = \log k`.
    F_trained : the trained head's objective.
    F_star_upper, F_star_lower : the smaller objective (solver's or trained head's) and the larger
        dual bound, clamped to ``F_star_upper``: ``F_star_lower <= F* <= F_star_upper <= F_trained``.
    gap_lower, gap_certified : :math:`(F_{\text{trained}} - F_{\text{star\_upper}})/F_0` and
        :math:`(F_{\text{trained}} - F_{\text{star\_lower}})/F_0`: the trained head's normalised
        gap lies between them (``0 <= gap_lower <= gap_certified <= gap_self_certified``).
    gap_self_certified : the trained head's own duality gap over :math:`F_0` (a bound that needs
        no solve: dual point from the trained head).
    status : the head solver's status (``"optimal"`` only when its relative gap <= tol).
    solver : the solver's summary (primal, dual, gap, rel_gap, iterations, seconds).
    acc_trained, acc_exact : training accuracy of the trained and the exact head on the samples.
    layers : per selection layer: kind, entries per sample, density, margin min / quantiles,
        fraction of samples with margin 0.
    margin_min : the smallest margin over every layer and sample.
    run : the run's dataset, architecture, method, activation, epochs and final validation accuracy.
    batch_norm : how batch norm was treated.
    seconds : wall time of the feature/support pass and of the solve.
    """

    run_dir: str
    step: int
    n: int
    p: int
    k: int
    lam: float
    lam_b: float
    tol: float
    F0: float
    F_trained: float
    F_star_upper: float
    F_star_lower: float
    gap_lower: float
    gap_certified: float
    gap_self_certified: float
    status: str
    solver: dict
    acc_trained: float
    acc_exact: float
    layers: dict
    margin_min: float
    run: dict = field(default_factory=dict)
    batch_norm: str = "eval mode (running statistics): each sample's support depends on that sample alone"
    seconds: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _stats(margins: np.ndarray) -> dict:
    q = np.quantile(margins, QUANTILES) if margins.size else [math.nan] * len(QUANTILES)
    return {"margin_min": float(margins.min()) if margins.size else math.nan,
            **{f"margin_q{int(round(100 * a)):02d}": float(v) for a, v in zip(QUANTILES, q)},
            "zero_margin_frac": float((margins <= 0).mean()) if margins.size else math.nan}


def _check_certify_args(subset, batch_size, tol, max_iter, device) -> None:
    """Refuse bad arguments of :func:`certify_run` before any work."""
    if isinstance(subset, bool) or not isinstance(subset, int) or subset < 0:
        raise ValueError(f"subset must be an int >= 0 (0 = every training sample); got {subset!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1; got {batch_size!r}.")
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise ValueError(f"tol must be > 0; got {tol!r}.")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 0:
        raise ValueError(f"max_iter must be an int >= 0; got {max_iter!r}.")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda'; got {device!r}.")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but torch.cuda.is_available() is False; use device='cpu'.")


def _head_lam(cfg, lam):
    """The head problem's ridge on W: ``lam``, or the run's ``weight_decay`` when None; > 0."""
    lam = cfg.weight_decay if lam is None else lam
    if not (isinstance(lam, (int, float)) and lam > 0):
        raise ValueError(f"lam must be > 0 (the head problem's ridge on W); got lam={lam!r}"
                         + (" (the run's weight_decay is 0): pass lam, e.g. --lam=5e-4." if cfg.weight_decay == 0
                            else "."))
    return lam


def _training_data(run, device: str):
    """The run's training data in float64 on ``device``, refused when its channel means differ
    from the ones saved with the run (not the data it was trained on)."""
    from altheory.train.distributed import DistInfo
    from altheory.train.pipeline import build_data

    cfg = run.config
    data_cfg = dataclasses.replace(cfg, device=device, channels_last=False)
    info = DistInfo(0, 1, 0, torch.device(device), False)
    data = build_data(data_cfg, info, torch.float64)
    saved = run.preprocessing.get("mean")
    if saved is not None and hasattr(data, "mean"):
        now = data.mean.flatten().cpu().numpy()
        if not np.allclose(now, np.asarray(saved), rtol=1e-6, atol=1e-9):
            raise ValueError(f"the training data found for {cfg.dataset} (data_dir={cfg.data_dir!r}) has "
                             f"channel means {now.tolist()}, not the run's {saved}: not the data the run "
                             "was trained on.")
    return data


def _features_and_support(model, data, n: int, batch_size: int):
    r"""One pass over the first ``n`` training samples: the head's inputs :math:`\phi_i`, the
    labels, and per selection layer the margins, kept entries and kind of the support.

    Returns
    -------
    feats, ys : lists of the per-batch features (the head's inputs) and labels
    margins : layer key -> list of per-batch margin arrays
    kept : layer key -> kept entries in total (layers with a packed mask only)
    meta : layer key -> ``{"kind", "entries"}``
    """
    from altheory.nets.support import support
    from altheory.train.models import final_linear

    head = final_linear(model)
    feats, ys = [], []
    capture = [False]  # the hook keeps the features of the model's own forward only
    hook = head.register_forward_hook(lambda mod, inp, o: feats.append(inp[0].detach()) if capture[0] else None)
    margins: dict[str, list] = {}
    kept: dict[str, int] = {}
    meta: dict[str, dict] = {}
    try:
        for x, y in data.eval_batches("train", limit=n, shard=False, batch_size=batch_size):
            capture[0] = True
            model(x)
            capture[0] = False
            ys.append(y)
            S = support(model, x)
            for key, L in S.layers.items():
                margins.setdefault(key, []).append(L.margin)
                if key not in meta:
                    meta[key] = {"kind": L.kind, "entries": L.size}
                if L.packed is not None:
                    kept[key] = kept.get(key, 0) + int(np.unpackbits(L.packed, axis=-1, count=L.size).sum())
    finally:
        hook.remove()
    return feats, ys, margins, kept, meta


def _layer_stats(margins: dict, kept: dict, meta: dict) -> dict:
    """Per selection layer: kind, entries per sample, density (kept fraction, None without a
    packed mask) and the margin statistics of :func:`_stats`."""
    layers = {}
    for key, ms in margins.items():
        m = np.concatenate(ms)
        row = dict(meta[key])
        row["density"] = kept[key] / (m.size * row["entries"]) if key in kept else None
        row.update(_stats(m))
        layers[key] = row
    return layers


def _measure_support(model, data, n: int, batch_size: int):
    """The features and labels of the first ``n`` training samples, the per-layer support
    statistics (:func:`_layer_stats`) and the seconds of that pass."""
    t0 = time.perf_counter()
    feats, ys, margins, kept, meta = _features_and_support(model, data, n, batch_size)
    t_feat = time.perf_counter() - t0
    Phi, y = torch.cat(feats).double(), torch.cat(ys).long()
    return Phi, y, _layer_stats(margins, kept, meta), t_feat


def _certify_head(Phi, y, head, *, lam: float, lam_b: float, tol: float, max_iter: int, dev):
    """The trained head's certificate, the exact head (warm-started from the trained one), and the
    training accuracies of both: ``(certificate, solution, acc_trained, acc_exact)``."""
    from altheory.solvers.softmax_head import head_certificate, solve_softmax_head

    k = head.out_features
    W_tr = head.weight.detach().double()
    b_tr = (head.bias.detach().double() if head.bias is not None
            else torch.zeros(k, dtype=torch.float64, device=dev))
    cert = head_certificate(Phi, y, W_tr, b_tr, lam, lam_b=lam_b, num_classes=k)
    sol = solve_softmax_head(Phi, y, k, lam=lam, lam_b=lam_b, tol=tol, max_iter=max_iter, W0=W_tr, b0=b_tr)
    W_ex, b_ex = torch.from_numpy(sol.W).to(dev), torch.from_numpy(sol.b).to(dev)
    return cert, sol, _accuracy(Phi, y, W_tr, b_tr), _accuracy(Phi, y, W_ex, b_ex)


def _bracket(cert: dict, sol, F0: float) -> tuple[float, float]:
    r"""``(upper, lower)``: :math:`\min(F_{\text{solver}}, F_{\text{trained}})` and
    :math:`\max(D_{\text{solver}}, D_{\text{trained}})` clamped to it (both primal values bound
    :math:`F^*` from above, both dual values from below; a lower end above the upper one by
    rounding is replaced by the upper one, beyond rounding it raises
    :class:`~altheory.errors.SolverError`; scale :math:`F_0 = \log k`)."""
    from altheory.solvers.softmax_head import _certified_bracket

    upper = min(sol.primal, cert["primal"])
    lower, _ = _certified_bracket(upper, max(sol.dual, cert["dual"]), scale=F0)
    return upper, lower


def _accuracy(Phi, y, W, b) -> float:
    """Training accuracy of the head ``(W, b)`` on the features ``Phi``."""
    return float(((Phi @ W.T + b).argmax(1) == y).double().mean())


def _run_summary(run) -> dict:
    """The run's essentials for the report: data, architecture, method, epochs, final val acc."""
    cfg = run.config
    return {**{k: getattr(cfg, k) for k in ("dataset", "train_subset", "arch", "width", "method",
                                             "activation", "tau", "topk", "epochs", "weight_decay",
                                             "optimizer")},
            "final_val_acc": run.metrics[-1]["val_acc"] if run.metrics else None,
            "eval_subset": cfg.eval_subset}


def _print_report(say, rep: CertifyReport, sol, tol: float) -> None:
    """One line per selection layer, then the head's bracket, gaps, accuracies and solver."""
    for key, r in rep.layers.items():
        dens = "      -" if r["density"] is None else f"{r['density']:.4f}"
        say(f"  {key:<24} {r['kind']:<7} density {dens}  margin min {r['margin_min']:.3e}  "
            f"q01 {r['margin_q01']:.3e}  q50 {r['margin_q50']:.3e}  zero {r['zero_margin_frac']:.4f}")
    say(f"head: F_trained {rep.F_trained:.10f}; F* in [{rep.F_star_lower:.10f}, {rep.F_star_upper:.10f}]; "
        f"normalised gap of the trained head in [{rep.gap_lower:.3e}, {rep.gap_certified:.3e}]; "
        f"train acc trained {rep.acc_trained:.4f} exact {rep.acc_exact:.4f}; solver {sol.status} "
        f"(rel gap {sol.rel_gap:.1e} <= tol {tol:g}: {sol.rel_gap <= tol}, {sol.iters} Newton its, "
        f"{sol.seconds:.1f}s)")


@torch.no_grad()
def certify_run(run_dir, *, subset: int = 0, lam: float | None = None, lam_b: float = 0.0,
                tol: float = 1e-10, max_iter: int = 100, device: str = "cpu", batch_size: int = 256,
                out: str | None = None, quiet: bool = True) -> CertifyReport:
    r"""Certify the head of a trained run and measure its support on the training data.

    Parameters
    ----------
    run_dir : the run's ``out_dir``.
    subset : certify the first ``subset`` training samples of the fixed permutation the
        trainer's exact head uses (0 = every training sample of the run).
    lam : ridge on W (default: the run's ``weight_decay``); lam_b : ridge on b (default 0).
    tol : relative duality gap for status ``"optimal"``; max_iter : Newton iterations at most.
    device : ``"cpu"`` or ``"cuda"``; batch_size : samples per forward.
    out : JSON path for the report (default ``run_dir/certify.json``; ``""`` writes nothing).
    quiet : print nothing.

    Returns
    -------
    CertifyReport

    Raises
    ------
    FileNotFoundError
        No run, no checkpoint, or missing data files.
    ValueError
        Bad arguments, a truncated/foreign checkpoint, data that differ from the run's, or
        ``lam`` missing for a run trained without weight decay.
    """
    from altheory.train.models import final_linear
    from altheory.train.runs import load_run

    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    _check_certify_args(subset, batch_size, tol, max_iter, device)
    out_path = None if out == "" else Path(out) if out is not None else Path(run_dir) / "certify.json"
    run = load_run(run_dir)
    cfg = run.config
    lam = _head_lam(cfg, lam)
    if out_path is not None:
        check_output_path(out_path)
    dev = torch.device(device)
    model = copy.deepcopy(run.model).to(device=dev, dtype=torch.float64).eval()
    data = _training_data(run, device)
    n_all = data.n_train
    n = min(subset, n_all) if subset else n_all
    say(f"certify {run_dir}: step {run.step}, {cfg.arch} {cfg.method}, {n} of {n_all} training samples, "
        f"batch norm in eval mode, lam={lam:g}, lam_b={lam_b:g}")
    Phi, y, layers, t_feat = _measure_support(model, data, n, batch_size)
    head = final_linear(model)
    cert, sol, acc_tr, acc_ex = _certify_head(Phi, y, head, lam=lam, lam_b=lam_b, tol=tol,
                                              max_iter=max_iter, dev=dev)
    k = head.out_features
    F0 = math.log(k)
    upper, lower = _bracket(cert, sol, F0)
    rep = CertifyReport(
        run_dir=str(run_dir), step=run.step, n=int(Phi.shape[0]), p=int(Phi.shape[1]), k=k,
        lam=float(lam), lam_b=float(lam_b), tol=float(tol), F0=F0, F_trained=cert["primal"],
        F_star_upper=upper, F_star_lower=lower,
        gap_lower=(cert["primal"] - upper) / F0, gap_certified=(cert["primal"] - lower) / F0,
        gap_self_certified=cert["gap"] / F0, status=sol.status, solver=sol.summary(),
        acc_trained=acc_tr, acc_exact=acc_ex, layers=layers,
        margin_min=float(min((r["margin_min"] for r in layers.values()), default=math.inf)),
        seconds={"features_and_support": t_feat, "head_solve": sol.seconds}, run=_run_summary(run))
    _print_report(say, rep, sol, tol)
    if out_path is not None:
        write_text_atomic(out_path, json.dumps(rep.to_dict(), indent=2))
        say(f"report: {out_path}")
    return rep


def main(argv: list[str] | None = None) -> int:
    """``altheory certify RUN_DIR``; exit 0 (head certified optimal), 1 (solver did not reach
    ``tol``), 2 (refused: bad arguments, no run, damaged checkpoint, missing data)."""
    p = argparse.ArgumentParser(
        prog="altheory certify",
        description="Certify a trained run: the support of its network on the training data (per-layer "
                    "density and margins, batch norm in eval mode) and its classifier head (softmax "
                    "cross-entropy + (lam/2)||W||^2 solved with a duality-gap certificate).")
    p.add_argument("run_dir", help="the out_dir of an `altheory train` run")
    p.add_argument("--subset", type=int, default=0,
                   help="certify the first N training samples of the run's fixed permutation (0 = all; default)")
    p.add_argument("--lam", type=float, default=None,
                   help="ridge on the head's W (default: the run's weight_decay)")
    p.add_argument("--lam-b", "--lam_b", dest="lam_b", type=float, default=0.0,
                   help="ridge on the head's bias (default 0: not penalised, as in the trainer)")
    p.add_argument("--tol", type=float, default=1e-10, help="relative duality gap for 'optimal' (default 1e-10)")
    p.add_argument("--max-iter", "--max_iter", dest="max_iter", type=int, default=100,
                   help="Newton iterations at most (default 100)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="default cpu")
    p.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int, default=256,
                   help="samples per forward (default 256)")
    p.add_argument("--out", default=None, help="report JSON (default RUN_DIR/certify.json)")
    p.add_argument("--quiet", action="store_true", help="print nothing")
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:  # argparse: 0 for --help, 2 for bad arguments
        return int(exc.code or 0)
    try:
        rep = certify_run(args.run_dir, subset=args.subset, lam=args.lam, lam_b=args.lam_b, tol=args.tol,
                          max_iter=args.max_iter, device=args.device, batch_size=args.batch_size, out=args.out, quiet=args.quiet)
    except (ValueError, FileNotFoundError) as exc:
        print(f"altheory certify: {exc}", file=sys.stderr)
        return 2
    return 0 if rep.status == "optimal" else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
