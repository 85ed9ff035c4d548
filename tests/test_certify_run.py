"""Reloading and certifying trained runs (altheory.train.runs / certify, C3/C8 at scale), the
softmax head solver's certificate (altheory.solvers.softmax_head), and the trainer's safety:
weights_only checkpoints, SIGINT, resume that extends or refuses, mid-epoch metrics, refusals
before any work.

Tiny models (ResNet-8, width 4, 8x8 synthetic images) in float64 on the CPU, one thread.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from altheory import support
from altheory.errors import SolverError
from altheory.floats import assert_close, assert_leq
from altheory.solvers.softmax_head import (dual_point, head_certificate, softmax_head_dual,
                                           softmax_head_objective, solve_softmax_head)
from altheory.train import TrainConfig, certify_run, load_config, load_run, train
from altheory.train.checkpoint import load_checkpoint, save_checkpoint
from altheory.train.config import parse_overrides
from altheory.train.distributed import DistInfo
from altheory.train.pipeline import build_data

from _train_helpers import _one_thread, tiny  # noqa: F401  (autouse fixture)

ROOT = Path(__file__).resolve().parents[1]


def one_line(exc: BaseException) -> str:
    msg = str(exc)
    assert "\n" not in msg.strip(), msg
    return msg


# --------------------------------------------------------------------------------------------
# the softmax head solver and its certificate
# --------------------------------------------------------------------------------------------

def _instance(seed, n=70, p=5, k=4):
    rng = np.random.default_rng(seed)
    Phi = rng.normal(size=(n, p))
    y = rng.integers(0, k, n)
    y[:k] = np.arange(k)  # every class occurs
    return Phi, y, k


@pytest.mark.parametrize("lam_b", [0.0, 0.1])
@pytest.mark.parametrize("seed", [0, 1])
def test_softmax_head_matches_cvxpy(seed, lam_b):
    """The Newton-CG optimum equals cvxpy's (Clarabel, log_sum_exp) to the reference solver's
    accuracy, and the certified bracket D <= F* <= F holds around cvxpy's value."""
    cp = pytest.importorskip("cvxpy")
    Phi, y, k = _instance(seed)
    n, p = Phi.shape
    lam = 0.05
    r = solve_softmax_head(Phi, y, k, lam=lam, lam_b=lam_b, tol=1e-11)
    assert r.status == "optimal" and 0 <= r.gap <= 1e-11 * r.primal        # gap >= 0: clamped
    W, b = cp.Variable((k, p)), cp.Variable(k)
    Z = Phi @ W.T + np.ones((n, 1)) @ cp.reshape(b, (1, k), order="C")
    Y = np.eye(k)[y]
    obj = (cp.sum(cp.log_sum_exp(Z, axis=1)) - cp.sum(cp.multiply(Y, Z))) / n \
        + lam / 2 * cp.sum_squares(W) + lam_b / 2 * cp.sum_squares(b)
    prob = cp.Problem(cp.Minimize(obj))
    prob.solve(solver="CLARABEL")
    assert abs(prob.value - r.primal) <= 1e-7
    assert r.dual <= r.primal and r.dual <= prob.value + 1e-7
    # the cvxpy point is feasible: its objective (ours) is >= the certified lower bound
    F_cvx = softmax_head_objective(Phi, y, W.value, b.value, lam, lam_b=lam_b)
    assert_leq(r.dual, F_cvx, scale=math.log(k), what="weak duality at cvxpy's point")
    np.testing.assert_allclose(r.W, W.value, atol=1e-4)


@pytest.mark.parametrize("lam_b", [0.0, 0.1])
def test_certificate_bounds_true_suboptimality(lam_b):
    """At perturbed points the duality gap is >= the true suboptimality F - F* (weak duality)
    and within a modest factor of it (measured: 1.5x to 6x on these instances; bound 20x)."""
    Phi, y, k = _instance(2)
    lam = 0.05
    opt = solve_softmax_head(Phi, y, k, lam=lam, lam_b=lam_b, tol=1e-12)
    rng = np.random.default_rng(5)
    for scale in (1e-3, 1e-2, 1e-1, 1.0):
        W = opt.W + scale * rng.normal(size=opt.W.shape)
        b = opt.b + scale * rng.normal(size=opt.b.shape)
        c = head_certificate(Phi, y, W, b, lam, lam_b=lam_b)
        sub = c["primal"] - opt.primal
        assert sub > 0
        assert_leq(sub, c["gap"], scale=c["primal"], what=f"weak duality, perturbation {scale}")
        assert c["gap"] <= 20 * sub, (scale, c["gap"], sub)


def test_dual_point_is_feasible():
    """Rows in the simplex and, with the bias unpenalised, column means equal to the class
    frequencies (the rescaling), so D(A) is finite; without the rescaling it is -inf."""
    Phi, y, k = _instance(3)
    rng = np.random.default_rng(0)
    W, b = rng.normal(size=(k, Phi.shape[1])), rng.normal(size=k)
    A = dual_point(Phi, y, W, b)
    assert A.min() >= 0
    assert_close(A.sum(1), 1.0, what="rows in the simplex")
    assert_close(A.mean(0), np.bincount(y, minlength=k) / len(y), scale=1.0,
                 what="column means = class frequencies")
    assert math.isfinite(softmax_head_dual(Phi, y, A, 0.1))
    Z = Phi @ W.T + b
    P = np.exp(Z - Z.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    assert softmax_head_dual(Phi, y, P, 0.1) == -math.inf


def test_dual_at_the_optimum_is_the_optimum():
    """Strong duality: D(A(W*, b*)) = F(W*, b*) to rounding, with the entropy term included (the
    dual without it would be off by the mean entropy of the predictions)."""
    Phi, y, k = _instance(4)
    r = solve_softmax_head(Phi, y, k, lam=0.02, tol=1e-12)
    A = dual_point(Phi, y, r.W, r.b)
    assert abs(softmax_head_dual(Phi, y, A, 0.02) - r.primal) <= 1e-10
    assert 0 <= r.gap == r.primal - r.dual                               # clamped, exactly


@pytest.mark.parametrize("call,err,match", [
    (lambda: solve_softmax_head(np.zeros((3, 2)), np.array([0, 1, 1]), 2, lam=0.0), ValueError, "lam must be"),
    (lambda: solve_softmax_head(np.zeros((3, 2)), np.array([0, 1, 1]), 2, lam=1.0, lam_b=-1), ValueError, "lam_b"),
    (lambda: solve_softmax_head(np.zeros((3, 2)), np.array([0, 1]), 2, lam=1.0), ValueError, r"shape \(n, p\)"),
    (lambda: solve_softmax_head(np.zeros((3, 2)), np.array([0, 1, 5]), 2, lam=1.0), ValueError, "labels must be in"),
    (lambda: solve_softmax_head(np.full((2, 2), np.nan), np.array([0, 1]), 2, lam=1.0), ValueError, "NaN"),
    (lambda: solve_softmax_head(np.zeros((2, 2)), np.array([0.0, 1.0]), 2, lam=1.0), TypeError, "integer"),
    (lambda: softmax_head_dual(np.zeros((2, 2)), np.array([0, 1]), np.full((2, 2), 0.7), 1.0), ValueError,
     "probability vector"),
])
def test_softmax_head_bad_calls(call, err, match):
    with pytest.raises(err, match=match):
        call()


def _dual_above_primal(monkeypatch, by):
    """Make every dual value the preceding primal value plus ``by`` (relative): the rounding a
    fresh machine showed (D 3e-16 above F near the optimum), or more."""
    import altheory.solvers.softmax_head as sh

    last = []
    primal, dual = sh._primal, sh._dual

    def rec_primal(*a):
        v = primal(*a)
        last.append(float(v))
        return v

    def fake_dual(*a):
        dual(*a)
        return last[-1] + by * abs(last[-1])

    monkeypatch.setattr(sh, "_primal", rec_primal)
    monkeypatch.setattr(sh, "_dual", fake_dual)


def test_head_dual_above_the_primal_by_rounding_is_clamped(monkeypatch):
    """A dual value above the primal one by rounding is reported as min(D, F): the gap and the
    relative gap are 0, never negative; beyond the rounding slack it is a SolverError."""
    Phi, y, k = _instance(6)
    _dual_above_primal(monkeypatch, 2 * np.finfo(float).eps)
    r = solve_softmax_head(Phi, y, k, lam=0.05)
    assert r.status == "optimal" and r.dual == r.primal and r.gap == 0.0 and r.rel_gap == 0.0
    c = head_certificate(Phi, y, np.zeros((k, Phi.shape[1])), np.zeros(k), 0.05)
    assert c["dual"] == c["primal"] and c["gap"] == 0.0
    _dual_above_primal(monkeypatch, 1e-9)
    with pytest.raises(SolverError, match="exceeds the primal value beyond rounding"):
        solve_softmax_head(Phi, y, k, lam=0.05)
    with pytest.raises(SolverError, match="D - F = "):
        head_certificate(Phi, y, np.zeros((k, Phi.shape[1])), np.zeros(k), 0.05)


def test_certified_bracket_clamps_within_the_slack_only():
    """_certified_bracket: min(D, F) and F - min(D, F) >= 0; D below F unchanged; D = -inf (a
    dual point outside the domain) allowed; D above F beyond the slack at scale log k, or NaN,
    refused with expected, got and the slack."""
    from altheory.floats import slack
    from altheory.solvers.softmax_head import _certified_bracket

    F, s = 0.1058, math.log(3)
    assert _certified_bracket(F, F + 3e-16, scale=s) == (F, 0.0)
    assert _certified_bracket(F, F - 1e-3, scale=s) == (F - 1e-3, F - (F - 1e-3))
    assert _certified_bracket(F, -math.inf, scale=s) == (-math.inf, math.inf)
    just_beyond = F + 2 * slack(F, scale=s)
    for D in (just_beyond, math.nan):
        with pytest.raises(SolverError, match="expected D <= F up to"):
            _certified_bracket(F, D, scale=s)


def test_certify_bracket_takes_the_best_bounds_and_clamps():
    """certify's bracket: the smaller primal value (solver's or trained head's), the larger dual
    bound clamped to it; a clamp beyond rounding raises."""
    from types import SimpleNamespace

    from altheory.train.certify import _bracket

    F0 = math.log(3)
    sol = SimpleNamespace(primal=0.8, dual=0.79)
    assert _bracket({"primal": 1.0, "dual": 0.5}, sol, F0) == (0.8, 0.79)
    # the trained head's dual 1e-16 above the solver's primal (both optimal to rounding)
    assert _bracket({"primal": 1.0, "dual": 0.8 + 1e-16}, sol, F0) == (0.8, 0.8)
    # a solver stopped above the trained head (max_iter): the trained head's value is the upper end
    assert _bracket({"primal": 0.7, "dual": 0.6}, SimpleNamespace(primal=0.8, dual=0.65), F0) \
        == (0.7, 0.65)
    with pytest.raises(SolverError):                  # the solver's dual above F_trained: no rounding
        _bracket({"primal": 0.7, "dual": 0.6}, sol, F0)


# --------------------------------------------------------------------------------------------
# load_run and certify_run
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("certify")
    cfg = tiny(d, method="alt", alt_every=3, synthetic_n=48, epochs=2, eval_subset=6, log_every=2)
    summary = train(cfg, quiet=True)
    return cfg, summary


def test_load_run_returns_the_trained_model(trained_run):
    cfg, summary = trained_run
    run = load_run(cfg.out_dir)
    assert run.config == cfg and not run.model.training and run.step == summary["steps"] == 12
    assert [r["val_acc"] for r in run.metrics] == [r["val_acc"] for r in summary["history"]]
    ck = load_checkpoint(Path(cfg.out_dir) / "checkpoint.pt")
    for k, v in run.model.state_dict().items():
        assert torch.equal(v, ck["model"][k]), k
    pre = run.preprocessing
    assert (pre["num_classes"], pre["in_channels"], pre["image_size"]) == (3, 3, 8)
    # the saved preprocessing reproduces the trainer's inputs, and eval_subset's accuracy
    data = build_data(cfg, DistInfo(0, 1, 0, torch.device("cpu"), False), torch.float64)
    x_ref, y_ref = next(data.eval_batches("val", limit=6))
    raw = data.Xv[:6]
    assert_close(run.preprocess(raw).numpy(), x_ref.numpy(), what="preprocessing")
    acc = float((run.model(x_ref).argmax(1) == y_ref).double().mean())
    assert acc == run.metrics[-1]["val_acc"]


def test_certify_run_report(trained_run, tmp_path):
    cfg, _ = trained_run
    out = tmp_path / "cert.json"
    rep = certify_run(cfg.out_dir, subset=40, out=str(out))
    assert rep.status == "optimal" and rep.n == 40 and rep.k == 3 and rep.lam == cfg.weight_decay
    # the bracket by construction (best of both certificates, lower end clamped), exactly
    assert rep.F_star_lower <= rep.F_star_upper <= rep.F_trained
    assert 0 <= rep.gap_lower <= rep.gap_certified
    assert_leq(rep.gap_certified, rep.gap_self_certified, scale=rep.F_trained / rep.F0,
               what="the solver's bound against the trained head's own")
    assert rep.gap_certified - rep.gap_lower <= 1e-9                     # the solver's tol 1e-10
    assert rep.F0 == math.log(3)
    # F_trained from the network's own logits on the same samples (features taken right)
    run = load_run(cfg.out_dir)
    data = build_data(cfg, DistInfo(0, 1, 0, torch.device("cpu"), False), torch.float64)
    x, y = next(data.eval_batches("train", limit=40, shard=False, batch_size=64))
    model = run.model.double()
    W = model.fc.weight
    with torch.no_grad():
        z = model(x)
        F_ref = float(F.cross_entropy(z, y)) + 0.5 * cfg.weight_decay * float((W * W).sum())
    # two computations of one value: rounding at the scale of the logits (log-sum-exp)
    assert_close(rep.F_trained, F_ref, scale=float(z.abs().max()), what="F_trained")
    # per-layer support statistics are those of altheory.support on the same samples
    S = support(model, x)
    assert list(rep.layers) == list(S.keys())
    for key, L in S.layers.items():
        r = rep.layers[key]
        assert_close(r["density"], L.mask().mean(), what=f"{key} density")  # kept / entries
        assert_close(r["margin_min"], float(L.margin.min()), what=f"{key} margin")  # same batch
        assert r["margin_min"] <= r["margin_q01"] <= r["margin_q10"] <= r["margin_q50"]
    assert_close(rep.margin_min, S.margin, what="margin_min")
    saved = json.loads(out.read_text())
    assert saved["status"] == "optimal" and saved["gap_certified"] == rep.gap_certified
    assert "eval mode" in saved["batch_norm"]


def test_certify_reports_no_negative_gap_when_the_dual_rounds_above(trained_run, tmp_path, capsys,
                                                                   monkeypatch):
    """The fresh-clone report (lower bound 3e-16 above the upper one, "rel gap -4.5e-16"),
    replayed with every dual value 2 eps above its primal value: the bracket is closed, no gap
    is negative, and the printed relative gap is 0."""
    from altheory.train.certify import main

    cfg, _ = trained_run
    _dual_above_primal(monkeypatch, 2 * np.finfo(float).eps)
    assert main([cfg.out_dir, "--subset=16", f"--out={tmp_path / 'c.json'}"]) == 0
    assert "(rel gap 0.0e+00 <= tol" in capsys.readouterr().out
    rep = json.loads((tmp_path / "c.json").read_text())
    assert rep["F_star_lower"] <= rep["F_star_upper"] <= rep["F_trained"]
    assert 0 <= rep["gap_lower"] <= rep["gap_certified"] and rep["gap_self_certified"] >= 0
    assert rep["solver"]["gap"] >= 0 and rep["solver"]["rel_gap"] >= 0


def test_certify_main_exit_statuses(trained_run, tmp_path, capsys):
    from altheory.train.certify import main

    cfg, _ = trained_run
    assert main([cfg.out_dir, "--subset=16", f"--out={tmp_path / 'a.json'}"]) == 0
    assert "head: F_trained" in capsys.readouterr().out
    # no Newton iteration from the trained head: status not-converged, exit 1
    assert main([cfg.out_dir, "--subset=16", "--max-iter=0", "--quiet", f"--out={tmp_path / 'b.json'}"]) == 1
    assert json.loads((tmp_path / "b.json").read_text())["status"] == "not-converged"
    assert main([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "run folder not found" in err and err.count("\n") == 1
    assert main([cfg.out_dir, "--lam=-1"]) == 2
    assert main([cfg.out_dir, "--subset=x"]) == 2


def test_certify_refuses_other_data(trained_run, tmp_path):
    cfg, _ = trained_run
    import shutil

    d = tmp_path / "run"
    shutil.copytree(cfg.out_dir, d)
    pre = json.loads((d / "preprocessing.json").read_text())
    pre["mean"] = [m + 0.01 for m in pre["mean"]]
    (d / "preprocessing.json").write_text(json.dumps(pre))
    with pytest.raises(ValueError, match="not the data the run was trained on"):
        certify_run(str(d), subset=8, out="")


# --------------------------------------------------------------------------------------------
# checkpoints: weights_only, one-line errors
# --------------------------------------------------------------------------------------------

class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_checkpoint_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "run" / "checkpoint.pt"
    path.parent.mkdir()
    torch.save({"model": {}, "config": _Evil(marker)}, path)
    with pytest.raises(ValueError) as ei:
        load_checkpoint(path)
    msg = one_line(ei.value)
    assert str(path) in msg and "refused to unpickle" in msg
    assert not marker.exists()
    with pytest.raises(ValueError, match="refused to unpickle"):
        train(tiny(tmp_path), resume=True, quiet=True)
    assert not marker.exists()


def test_truncated_or_foreign_checkpoint_one_line(tmp_path, capsys):
    cfg = tiny(tmp_path, stop_step=2)
    train(cfg, quiet=True)
    path = Path(cfg.out_dir) / "checkpoint.pt"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError) as ei:
        load_checkpoint(path)
    msg = one_line(ei.value)
    assert str(path) in msg and "truncated" in msg
    from altheory.train.cli import main

    args = [f"--{k}={v}" for k, v in dataclasses.asdict(dataclasses.replace(cfg, stop_step=0)).items()
            if v is not None]
    assert main([*args, "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "truncated" in err
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="not a checkpoint of altheory train"):
        load_checkpoint(path)


def test_checkpoint_is_plain_data(tmp_path):
    """Every checkpoint the trainer writes loads with weights_only=True, and the RNG states
    round-trip."""
    import random

    cfg = tiny(tmp_path, method="alt", stop_step=3)
    train(cfg, quiet=True)
    ck = torch.load(Path(cfg.out_dir) / "checkpoint.pt", weights_only=True)
    assert isinstance(ck["config"], dict) and ck["config"]["topk"] is None
    from altheory.train.checkpoint import rng_state, set_rng_state

    np.random.seed(3), random.seed(4), torch.manual_seed(5)
    save_checkpoint(tmp_path / "r.pt", {"rng": rng_state()})
    a = (np.random.rand(), random.random(), float(torch.rand(1)))
    set_rng_state(torch.load(tmp_path / "r.pt", weights_only=True)["rng"])
    assert (np.random.rand(), random.random(), float(torch.rand(1))) == a


# --------------------------------------------------------------------------------------------
# resume: extend, refuse, mid-epoch metrics
# --------------------------------------------------------------------------------------------

def test_resume_extends_a_finished_run(tmp_path):
    """With a constant schedule, 1 epoch + resume to 2 epochs is the 2-epoch run bit for bit;
    with cosine the schedule of the new budget is continued from the current step."""
    kw = dict(schedule="constant", method="alt", alt_every=3)
    full = train(tiny(tmp_path / "full", epochs=2, **kw), quiet=True)
    part = tiny(tmp_path / "part", epochs=1, **kw)
    train(part, quiet=True)
    s = train(dataclasses.replace(part, epochs=2), resume=True, quiet=True)
    assert s["steps"] == 8 and len(s["history"]) == 2
    a = load_checkpoint(tmp_path / "full" / "run" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "part" / "run" / "checkpoint.pt")["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [r["train_loss"] for r in s["history"]] == [r["train_loss"] for r in full["history"]]
    rows = list(csv.DictReader(open(tmp_path / "part" / "run" / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    # cosine: lr at the first extra step is the new schedule's, not the finished run's 0
    cos = tiny(tmp_path / "cos", epochs=1, log_every=1)
    train(cos, quiet=True)
    from altheory.train import loop

    used, orig = [], loop.Stepper.step

    def step(self, s_, batches):
        used.append(self.opt.param_groups[0]["lr"])
        return orig(self, s_, batches)

    loop.Stepper.step = step
    try:
        s = train(dataclasses.replace(cos, epochs=2), resume=True, quiet=True)
    finally:
        loop.Stepper.step = orig
    # the first step after the resume takes the new schedule's lr at step 4 of 8 (not 0)
    assert_close(used[0], 0.05 * 0.5 * (1 + math.cos(math.pi * 4 / 8)), what="lr at step 4")
    steps = list(csv.DictReader(open(Path(cos.out_dir) / "steps.csv")))
    assert [int(r["step"]) for r in steps] == list(range(1, 9))
    lr5 = float(steps[4]["lr"])  # lr after step 5 of 8
    assert_close(lr5, 0.05 * 0.5 * (1 + math.cos(math.pi * 5 / 8)), what="lr after step 5")


def test_resume_refuses_changes_with_one_line(tmp_path):
    cfg = tiny(tmp_path, epochs=2, stop_step=3)
    train(cfg, quiet=True)
    for change, match in ((dict(lr=0.1), r"lr: 0.05 \(checkpoint\) vs 0.1 \(now\)"),
                          (dict(arch="resnet20"), r"arch: 'resnet8' \(checkpoint\) vs 'resnet20'"),
                          (dict(width=8), "width: 4")):
        with pytest.raises(ValueError, match=match) as ei:
            train(dataclasses.replace(cfg, stop_step=0, **change), resume=True, quiet=True)
        one_line(ei.value)
    train(dataclasses.replace(cfg, stop_step=0), resume=True, quiet=True)  # finishes: 8 steps
    with pytest.raises(ValueError, match="epochs may only grow") as ei:
        train(dataclasses.replace(cfg, stop_step=0, epochs=1), resume=True, quiet=True)
    one_line(ei.value)


@pytest.mark.parametrize("method", ["sgd", "alt-inner"])
def test_mid_epoch_resume_metrics(tmp_path, method):
    """The epoch interrupted at step 3 of 4 reports the loss and accuracy of all 4 steps (equal
    to the uninterrupted run's in float64) and images/s over all of them."""
    kw = dict(method=method, inner_steps=2, epochs=1)
    full = train(tiny(tmp_path / "full", **kw), quiet=True)
    part = tiny(tmp_path / "part", stop_step=3, **kw)
    train(part, quiet=True)
    # a row written after the checkpoint (a run killed hard) is dropped on resume
    with open(Path(part.out_dir) / "steps.csv", "a") as f:
        f.write("99,24.75,0.1,9.9,0.5,1,100.0\n")
    s = train(dataclasses.replace(part, stop_step=0), resume=True, quiet=True)
    rows = list(csv.DictReader(open(Path(part.out_dir) / "steps.csv")))
    assert [int(r["step"]) for r in rows] == [3, 4]
    a, b = full["history"][0], s["history"][0]
    assert (a["train_loss"], a["train_acc"]) == (b["train_loss"], b["train_acc"])
    assert_close(b["images_per_s"] * b["train_seconds"], 4 * 8, what="images over all 4 steps")


# --------------------------------------------------------------------------------------------
# SIGINT, refusals before any work, eval subset, per-step logs, top-k
# --------------------------------------------------------------------------------------------

def test_sigint_writes_a_checkpoint(tmp_path):
    out = tmp_path / "run"
    args = ["--arch=resnet8", "--width=4", "--image_size=8", "--synthetic_n=32", "--synthetic_classes=3",
            "--batch_size=8", "--epochs=400", "--device=cpu", "--progress=false", "--tensorboard=false",
            "--log_every=1", "--augment=false", f"--out_dir={out}"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.Popen([sys.executable, "-m", "altheory.train.cli", *args], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.time()
        while not (out / "steps.csv").exists() and p.poll() is None and time.time() - t0 < 120:
            time.sleep(0.2)
        assert p.poll() is None, p.communicate()
        p.send_signal(signal.SIGINT)
        stdout, stderr = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, stderr[-2000:]
    assert "stopped at step" in stdout and "SIGINT" in stdout
    ck = load_checkpoint(out / "checkpoint.pt")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] and summary["signal"] == "SIGINT"
    assert 0 < ck["step"] == summary["steps"] < 400 * 4


def test_refusals_before_any_work(tmp_path):
    from test_data import write_fmnist_fixture

    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device='cuda'") as ei:
            train(tiny(tmp_path / "a", device="cuda"), quiet=True)
        one_line(ei.value)
    with pytest.raises(ValueError, match="fewer than batch_size") as ei:
        train(tiny(tmp_path / "b", batch_size=64), quiet=True)
    one_line(ei.value)
    assert not (tmp_path / "b").exists()
    with pytest.raises(FileNotFoundError, match="no checkpoint") as ei:
        train(tiny(tmp_path / "c"), resume=True, quiet=True)
    one_line(ei.value)
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist") as ei:
        train(tiny(tmp_path / "d", dataset="fashion-mnist", data_dir=str(tmp_path / "empty")), quiet=True)
    one_line(ei.value)
    fm = write_fmnist_fixture(tmp_path / "fm", n_train=16, n_test=8, gz=False)
    img = fm / "train-images-idx3-ubyte"
    img.write_bytes(img.read_bytes()[:-100])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.*dataset-fashion-mnist") as ei:
        train(tiny(tmp_path / "e", dataset="fashion-mnist", data_dir=str(fm)), quiet=True)
    one_line(ei.value)
    assert not (tmp_path / "e").exists()


def test_eval_subset_and_step_logs(tmp_path):
    cfg = tiny(tmp_path, epochs=2, eval_subset=5, log_every=3, tensorboard=True)
    s = train(cfg, quiet=True)
    out = Path(cfg.out_dir)
    rows = list(csv.DictReader(open(out / "steps.csv")))
    # every log_every steps and at every epoch end; the windows cover every step once
    assert [int(r["step"]) for r in rows] == [3, 4, 6, 8]
    assert sum(int(r["steps"]) for r in rows) == 8
    for ep, sel in ((1, rows[:2]), (2, rows[2:])):
        loss = sum(float(r["train_loss"]) * int(r["steps"]) for r in sel) / sum(int(r["steps"]) for r in sel)
        assert_close(loss, s["history"][ep - 1]["train_loss"], what=f"epoch {ep} loss")
    assert all(v * 5 == round(v * 5) for v in (r["val_acc"] for r in s["history"]))
    tb = list((out / "tb").glob("events*"))
    assert tb and b"step/train_loss" in tb[0].read_bytes()


def test_topk_config_has_one_meaning(tmp_path):
    with pytest.raises(ValueError, match="Omit topk for the threshold form"):
        load_config(None, {"topk": "0"})
    cfg = load_config(None, {"topk": "2"})
    assert cfg.topk == 2
    with pytest.raises(ValueError, match="top-k form has no threshold"):
        load_config(None, {"topk": "2", "tau": "0.1"})
    assert load_config(None, parse_overrides(["--topk=none"])).topk is None
    p = tmp_path / "c.toml"
    p.write_text(TrainConfig().dumps())
    assert load_config(str(p)) == TrainConfig()
    p.write_text(cfg.dumps())
    assert load_config(str(p)).topk == 2


def test_smoke_config_is_small():
    """paper_repro/configs/fmnist_smoke_cpu.toml: the CPU smoke run (measured < 1 minute)."""
    cfg = load_config(str(ROOT / "paper_repro" / "configs" / "fmnist_smoke_cpu.toml"))
    assert cfg.device == "cpu" and cfg.dataset == "fashion-mnist"
    assert cfg.epochs * cfg.train_subset <= 8192 and 0 < cfg.eval_subset <= 2000
