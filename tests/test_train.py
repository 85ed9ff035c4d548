"""Tests of the trainer (altheory.train): methods, resume, exact head, config and CLI, bench.

Tiny models (ResNet-8, width 4, 8x8 synthetic images, batches of 8) in float64 on the CPU, one
thread; every run is a few optimizer steps.
"""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from altheory import PHT, gated_forward, support
from altheory.floats import assert_close, assert_leq
from altheory.solvers.losses import loss_torch
from altheory.train import TrainConfig, load_config, train
from altheory.train.checkpoint import load_checkpoint
from altheory.train.config import apply_overrides, parse_overrides
from altheory.train.head import head_objective, solve_head
from altheory.train.methods import Gating, GatedPHT, wrap_activations
from altheory.train.models import build_model

from _train_helpers import _one_thread, tiny  # noqa: F401  (autouse fixture)

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("sgd", "alt", "alt-inner")


def final_state(cfg: TrainConfig) -> dict:
    return load_checkpoint(Path(cfg.out_dir) / "checkpoint.pt")["model"]


def assert_same_state(a: dict, b: dict, exact: bool = True):
    assert a.keys() == b.keys()
    for k in a:
        if exact:
            assert torch.equal(a[k], b[k]), f"{k} differs: max |diff| {(a[k].double() - b[k].double()).abs().max()}"
        else:
            torch.testing.assert_close(a[k], b[k], rtol=1e-9, atol=1e-11, msg=k)


# --------------------------------------------------------------------------------------------
# every method runs
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_two_step_run_of_every_method(tmp_path, method):
    cfg = tiny(tmp_path, method=method, synthetic_n=16, epochs=1, inner_steps=2, alt_every=1,
               exact_head=True)
    s = train(cfg, quiet=True)
    assert s["steps"] == 2 and s["epochs"] == 1
    row = s["history"][0]
    assert math.isfinite(row["train_loss"]) and 0 <= row["val_acc"] <= 1
    assert row["head_status"] == "optimal" and 0 <= row["head_gap"] <= row["head_gap_certified"]
    out = Path(cfg.out_dir)
    for f in ("checkpoint.pt", "metrics.csv", "summary.json", "config.toml"):
        assert (out / f).is_file(), f
    ck = load_checkpoint(out / "checkpoint.pt")
    assert ck["step"] == 2 and ck["config"] == cfg.to_dict()
    assert (ck["gate"] is None) == (method == "sgd")


def test_alt_with_refresh_every_step_is_sgd_exactly(tmp_path):
    """The gate copy refreshed before every step computes the network's own support, so `alt`
    with alt_every=1 and `sgd` take bit-identical steps (float64, CPU)."""
    a = tiny(tmp_path / "a", method="sgd", epochs=2)
    b = tiny(tmp_path / "b", method="alt", alt_every=1, epochs=2)
    train(a, quiet=True), train(b, quiet=True)
    assert_same_state(final_state(a), final_state(b))


def test_alt_holds_the_gate_support(tmp_path):
    """With a stale gate, `alt` steps differ from `sgd` (the held support is used)."""
    a = tiny(tmp_path / "a", method="sgd", epochs=2)
    b = tiny(tmp_path / "b", method="alt", alt_every=4, epochs=2)
    train(a, quiet=True), train(b, quiet=True)
    sa, sb = final_state(a), final_state(b)
    assert any(not torch.equal(sa[k], sb[k]) for k in sa)


def test_C1_gated_network_is_the_fixed_support_network():
    """C1 cross-check with the core package: the trained network under a stale gate computes
    f_S(x; W_new) with S = S(W_gate, x), as altheory.gated_forward does."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 7), PHT(tau=0.1), nn.Linear(7, 6), PHT(tau=0.1), nn.Linear(6, 2)).double()
    x = torch.randn(9, 5, dtype=torch.float64)
    old = [p.detach().clone() for p in net.parameters()]
    wrap_activations(net)
    g = Gating(net)
    g.refresh()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    g.compute(x)
    out = net(x)
    g.check_consumed()
    g.release()
    ref_old = nn.Sequential(nn.Linear(5, 7), PHT(tau=0.1), nn.Linear(7, 6), PHT(tau=0.1), nn.Linear(6, 2)).double()
    ref_new = nn.Sequential(nn.Linear(5, 7), PHT(tau=0.1), nn.Linear(7, 6), PHT(tau=0.1), nn.Linear(6, 2)).double()
    with torch.no_grad():
        for p, q in zip(ref_old.parameters(), old):
            p.copy_(q)
        for p, q in zip(ref_new.parameters(), net.parameters()):
            p.copy_(q)
    S_old = support(ref_old, x)
    assert S_old != support(ref_new, x), "the perturbation should change the support"
    assert_close(out.detach().numpy(), gated_forward(ref_new, S_old, x, same_weights=False).detach().numpy(),
                 what="gated by the old support")
    assert_close(net(x).detach().numpy(), ref_new(x).detach().numpy(),
                 what="released: own support")


@pytest.mark.parametrize("arch", ["resnet8", "resnet18"])
def test_folded_gate_has_the_running_gate_support(arch):
    """gate_bn='folded' (batch norm folded into the convolutions) records exactly the support of
    gate_bn='running' (eval-mode batch norm), float64."""
    torch.manual_seed(0)
    net = wrap_activations(build_model(arch, num_classes=3, width=4, image_size=8, tau=0.05)).double()
    for _ in range(3):  # running statistics away from their initial values
        net(torch.randn(6, 3, 8, 8, dtype=torch.float64) * 2 + 0.5)
    with torch.no_grad():
        for bn in (m for m in net.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.weight.uniform_(0.5, 1.5), bn.bias.uniform_(-0.2, 0.2)
    x = torch.randn(5, 3, 8, 8, dtype=torch.float64)
    run, fold = Gating(net, "running"), Gating(net, "folded")
    run.refresh(), fold.refresh()
    a, b = run.record(x), fold.record(x)
    assert fold._verified and len(a) == len(b)
    for la, lb in zip(a, b):
        for sa, sb in zip(la, lb):
            assert torch.equal(sa, sb)
    # folding reorders the arithmetic of every layer before the gate, so rounding compounds over
    # the depth: kappa 1024 (measured: 9.9 eps max|gate| on resnet8/18 of width 4)
    assert_close(fold.gate(x).numpy(), run.gate(x).numpy(), kappa=1024, what="folded and running gates")


def test_folded_gate_refuses_a_model_it_cannot_fold():
    class Crossed(nn.Module):  # registered conv1, bn1, conv2, bn2 but applies bn2 after conv1
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
            self.conv2, self.bn2 = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.bn1(self.conv2(self.relu(self.bn2(self.conv1(x))))).flatten(1)

    net = wrap_activations(Crossed()).double()
    with torch.no_grad():
        net.bn1.running_mean.fill_(3.0), net.bn2.running_var.fill_(9.0)
    g = Gating(net, "folded")
    g.refresh()
    with pytest.raises(ValueError, match="not consecutive in the data flow"):
        g.record(torch.randn(2, 3, 4, 4, dtype=torch.float64))


def test_alt_with_folded_gate_trains_and_resumes(tmp_path):
    kw = dict(method="alt", gate_bn="folded", alt_every=3, epochs=2)
    full = tiny(tmp_path / "full", **kw)
    s = train(full, quiet=True)
    assert s["steps"] == 8 and s["history"][-1]["flip_frac"] is not None
    part = tiny(tmp_path / "part", stop_step=5, **kw)
    train(part, quiet=True)
    train(dataclasses.replace(part, stop_step=0), resume=True, quiet=True)
    assert_same_state(final_state(full), final_state(part))


def test_alt_inner_refreshes_once_per_batch(tmp_path):
    # 3 steps an epoch, 2 steps a batch: epochs end while a batch's support is held, and the
    # evaluation and the head solve in between must use the network's own support
    cfg = tiny(tmp_path, method="alt-inner", inner_steps=2, epochs=2, synthetic_n=24, exact_head=True)
    s = train(cfg, quiet=True)
    ck = load_checkpoint(Path(cfg.out_dir) / "checkpoint.pt")
    assert s["steps"] == 6 and ck["gate_refreshes"] == 3
    part = tiny(tmp_path / "part", method="alt-inner", inner_steps=2, epochs=2, synthetic_n=24,
                exact_head=True, stop_step=3)
    train(part, quiet=True)
    train(dataclasses.replace(part, stop_step=0), resume=True, quiet=True)
    assert_same_state(ck["model"], final_state(part))


def test_gated_pht_apply_errors():
    g = GatedPHT(PHT(0.1))
    g.mode = "apply"
    with pytest.raises(RuntimeError, match="only 0 masks"):
        g(torch.ones(2))
    g.mode = "bogus"
    with pytest.raises(ValueError, match="'free', 'record' or 'apply'"):
        g(torch.ones(2))
    with pytest.raises(TypeError, match="PHT or nn.ReLU"):
        GatedPHT(nn.Tanh())


# --------------------------------------------------------------------------------------------
# resume
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method,stop", [("sgd", 4), ("alt", 3), ("alt-inner", 3)])
def test_resume_equals_uninterrupted_run(tmp_path, method, stop):
    """2N steps == N steps, a resume, N more (float64, CPU); `stop` inside an epoch or on an
    epoch boundary, alt-inner resumed inside a batch; the exact head runs at epoch ends."""
    kw = dict(method=method, epochs=2, alt_every=3, inner_steps=2, exact_head=True)
    full = tiny(tmp_path / "full", **kw)
    train(full, quiet=True)
    part = tiny(tmp_path / "part", stop_step=stop, **kw)
    s1 = train(part, quiet=True)
    assert s1["steps"] == stop
    s2 = train(dataclasses.replace(part, stop_step=0), resume=True, quiet=True)
    assert s2["steps"] == 8
    assert_same_state(final_state(full), final_state(part))
    hist_full = load_checkpoint(Path(full.out_dir) / "checkpoint.pt")["history"]
    assert [r["val_acc"] for r in hist_full] == [r["val_acc"] for r in s2["history"]]


def test_resume_after_sigterm(tmp_path, monkeypatch):
    import signal

    from altheory.train import loop

    full = tiny(tmp_path / "full", method="alt", epochs=2, alt_every=3)
    train(full, quiet=True)
    part = tiny(tmp_path / "part", method="alt", epochs=2, alt_every=3)
    orig = loop.Stepper.step

    def step(self, s, batches):
        out = orig(self, s, batches)
        if s == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    monkeypatch.setattr(loop.Stepper, "step", step)
    s1 = train(part, quiet=True)
    assert s1["interrupted"] and s1["steps"] == 3
    monkeypatch.setattr(loop.Stepper, "step", orig)
    s2 = train(part, resume=True, quiet=True)
    assert not s2["interrupted"] and s2["steps"] == 8
    assert_same_state(final_state(full), final_state(part))


def test_resume_with_another_config_is_refused(tmp_path):
    cfg = tiny(tmp_path, stop_step=2)
    train(cfg, quiet=True)
    with pytest.raises(ValueError, match=r"lr: 0.05 \(checkpoint\) vs 0.1 \(now\)"):
        train(dataclasses.replace(cfg, lr=0.1, stop_step=0), resume=True, quiet=True)
    with pytest.raises(FileNotFoundError, match="without --resume"):
        train(tiny(tmp_path / "none"), resume=True, quiet=True)


# --------------------------------------------------------------------------------------------
# exact head (C8 at scale) and the loss convention
# --------------------------------------------------------------------------------------------

def test_cross_entropy_is_the_softmax_loss_of_altheory_losses():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(7, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (7,), generator=g)
    assert_close(float(F.cross_entropy(logits, y)), float(loss_torch(logits, F.one_hot(y, 4).double(), "softmax")),
                 scale=float(logits.abs().max()), what="cross-entropy")


def test_C8_head_solver_matches_reference_minimiser():
    """Newton-CG reaches the minimiser found by a long float64 L-BFGS run, and its certified lower
    bound F - |g|^2/(2 lambda) is below both."""
    g = torch.Generator().manual_seed(3)
    Phi = torch.randn(60, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (60,), generator=g)
    l2 = 1e-2
    sol = solve_head(Phi, y, 3, l2=l2, tol=1e-10)
    assert sol.status == "optimal" and sol.grad_norm <= 1e-10
    W = torch.zeros(3, 5, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1, max_iter=500, tolerance_grad=1e-13, tolerance_change=0,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        F_ = loss_torch(Phi @ W.T + b, F.one_hot(y, 3).double(), "softmax") + 0.5 * l2 * (W.pow(2).sum() + b.pow(2).sum())
        F_.backward()
        return F_

    opt.step(closure)
    F_ref = head_objective(Phi, y, W.detach(), b.detach(), l2)
    assert_close(sol.F, F_ref, scale=math.log(3), what="Newton-CG and L-BFGS optima")
    assert sol.F_lower <= sol.F
    assert_leq(sol.F_lower, F_ref, scale=math.log(3), what="certified lower bound")
    torch.testing.assert_close(sol.W, W.detach(), rtol=1e-6, atol=1e-8)


def test_head_gap_is_never_negative_when_the_solver_rounds_above_the_trained_head(monkeypatch):
    """The trainer's exact head from an already optimal head: the solver's F 2 eps above the SGD
    head's F (rounding) gives gap 0, not -2e-16; F_star is the smaller primal value and F_lower
    is clamped to it. An F_lower above F_star beyond rounding is a SolverError."""
    import dataclasses

    import altheory.train.head as H
    from altheory.errors import SolverError

    g = torch.Generator().manual_seed(3)
    Phi = torch.randn(30, 4, generator=g, dtype=torch.float64)
    y = torch.arange(30) % 3
    head = torch.nn.Linear(4, 3).double()
    real = H.solve_head

    def above(by):
        def f(*a, **k):
            s = real(*a, **k)
            F = H.head_objective(Phi, y, head.weight.detach(), head.bias.detach(), 1e-2) * (1 + by)
            return dataclasses.replace(s, F=F, F_lower=F)
        return f

    monkeypatch.setattr(H, "solve_head", above(2 * torch.finfo(torch.float64).eps))
    r = H.head_gap(Phi, y, head, l2=1e-2)
    assert r["F_star"] == r["F_sgd"] == r["F_lower"] and r["gap"] == 0.0 == r["gap_certified"]
    monkeypatch.setattr(H, "solve_head", above(1e-9))
    with pytest.raises(SolverError, match="exceeds the primal value beyond rounding"):
        H.head_gap(Phi, y, head, l2=1e-2)


def test_head_solver_rejects_bad_input():
    with pytest.raises(ValueError, match="l2 must be > 0"):
        solve_head(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long), 2, l2=0.0)
    with pytest.raises(ValueError, match=r"shape \(n, p\)"):
        solve_head(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long), 2, l2=1.0)


# --------------------------------------------------------------------------------------------
# models, config, CLI
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["resnet8", "resnet18"])
@pytest.mark.parametrize("activation", ["pht", "relu"])
def test_models_replace_every_relu(arch, activation):
    m = build_model(arch, num_classes=3, in_channels=1, image_size=8, width=4, activation=activation,
                    tau=0.2)
    has_pht = any(isinstance(mod, PHT) for mod in m.modules())
    has_relu = any(isinstance(mod, nn.ReLU) for mod in m.modules())
    assert has_pht == (activation == "pht") and has_relu == (activation == "relu")
    assert m(torch.zeros(2, 1, 8, 8)).shape == (2, 3)


def test_topk_model():
    m = build_model("resnet8", num_classes=2, width=4, topk=2)
    pht = [mod for mod in m.modules() if isinstance(mod, PHT)]
    assert pht and all(p.k == 2 and p.dim == 1 for p in pht)


@pytest.mark.parametrize("call,err,match", [
    (lambda: load_config(None, {"lerning_rate": "0.1"}), ValueError, "unknown config key 'lerning_rate'"),
    (lambda: load_config(None, {"methd": "alt"}), ValueError, "Did you mean 'method'"),
    (lambda: load_config(None, {"method": "adam"}), ValueError, "method='adam' is not one of"),
    (lambda: load_config(None, {"epochs": "2.5"}), ValueError, "epochs expects an int"),
    (lambda: load_config(None, {"compile": "maybe"}), ValueError, "expects a boolean"),
    (lambda: load_config(None, {"tau": "-1"}), ValueError, "tau must be >= 0"),
    (lambda: load_config(None, {"exact_head": "true", "head_l2": "0"}), ValueError, "head_l2 > 0"),
    (lambda: load_config("/nonexistent.toml"), FileNotFoundError, "paper_repro/configs"),
    (lambda: parse_overrides(["lr=0.1"]), ValueError, "--key=value"),
    (lambda: build_model("resnet9", num_classes=2), ValueError, "arch must be one of"),
    (lambda: build_model("resnet8", num_classes=2, activation="tanh"), ValueError, "'pht' or 'relu'"),
])
def test_bad_calls(call, err, match):
    with pytest.raises(err, match=match):
        call()


def test_config_overrides_and_dump_roundtrip(tmp_path):
    cfg = apply_overrides(TrainConfig(), parse_overrides(["--method=alt-inner", "--lr", "0.2", "--compile"]))
    assert (cfg.method, cfg.lr, cfg.compile) == ("alt-inner", 0.2, True)
    p = tmp_path / "c.toml"
    p.write_text(cfg.dumps())
    assert load_config(str(p)) == cfg


def test_every_shipped_config_loads():
    files = sorted((ROOT / "paper_repro" / "configs").glob("*.toml"))
    assert len(files) >= 12
    methods = set()
    for f in files:
        c = load_config(str(f))
        methods.add(c.method)
    assert methods == set(METHODS)


def test_cli_print_config_and_bad_key(capsys):
    from altheory.train.cli import main

    assert main(["--print-config", "--method=alt", "--tau=0.1"]) == 0
    out = capsys.readouterr().out
    assert 'method = "alt"' in out and "tau = 0.1" in out
    assert main(["--metod=alt"]) == 2
    assert "Did you mean 'method'" in capsys.readouterr().err


def test_cli_runs_through_altheory_train(tmp_path):
    from altheory.cli.main import main

    rc = main(["train", "--arch=resnet8", "--width=4", "--image_size=8", "--synthetic_n=16",
               "--batch_size=8", "--epochs=1", "--device=cpu", "--progress=false",
               "--tensorboard=false", f"--out_dir={tmp_path}"])
    assert rc == 0 and (tmp_path / "summary.json").is_file()


# --------------------------------------------------------------------------------------------
# benchmark and GPU check script, at tiny sizes on the CPU
# --------------------------------------------------------------------------------------------

def test_bench_step_runs_on_cpu(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, str(ROOT / "paper_repro" / "bench_step.py"), "--device", "cpu",
                        "--arch", "resnet18", "--size", "16", "--batch", "2", "--steps", "1",
                        "--warmup", "1", "--mode", "eager", "--json", str(tmp_path / "b.json")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    import json

    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert {row["loop"] for row in rows} == {"relu-plain", "sgd", "alt", "alt-folded", "alt-inner"}
    assert all(row["images_per_s"] > 0 for row in rows)


@pytest.mark.slow
def test_gpu_check_script_tiny_on_cpu(tmp_path):
    """paper_repro/gpu_check.sh end to end with --tiny on the CPU (IDX fixture folder)."""
    from test_data import write_fmnist_fixture

    data = write_fmnist_fixture(tmp_path / "fm", n_train=64, n_test=32)
    env = dict(os.environ, OUT=str(tmp_path / "out"), OMP_NUM_THREADS="1",
               PYTHON=sys.executable)
    r = subprocess.run(["bash", str(ROOT / "paper_repro" / "gpu_check.sh"), str(data), "--tiny"],
                       capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = tmp_path / "out"
    assert (out / "gpu_check.log").is_file()
    text = (out / "gpu_check.log").read_text()
    assert "sgd" in text and "alt" in text and "accuracy" in text
