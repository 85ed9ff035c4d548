"""Two-process gloo DDP through torchrun gives the one-process result (float64, CPU).

The global batch is split across the ranks, DDP averages the gradients and
GlobalBatchNorm2d computes the global batch's statistics, so both runs take the same steps up to
rounding (the variance is summed differently); the exact head is solved on every rank.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from altheory.train import train
from altheory.train.checkpoint import load_checkpoint
from altheory.train.config import load_config, parse_overrides

ARGS = ["--arch=resnet8", "--width=4", "--image_size=8", "--synthetic_n=32", "--synthetic_classes=3",
        "--batch_size=8", "--epochs=1", "--device=cpu", "--dtype=float64", "--lr=0.05", "--tau=0.05",
        "--progress=false", "--tensorboard=false", "--head_samples=32"]


def _torchrun() -> list[str]:
    exe = Path(sys.executable).with_name("torchrun")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "torch.distributed.run"]


# ~30 s each on a loaded 2-core machine (torchrun start, two torch imports): CI runs the `alt`
# one (it exercises the gate copy under DDP too); `sgd` runs with ALTHEORY_SLOW=1.
@pytest.mark.parametrize("method", [pytest.param("sgd", marks=pytest.mark.slow), "alt"])
def test_two_process_gloo_ddp_matches_one_process(tmp_path, method):
    if shutil.which("bash") is None:
        pytest.skip("needs a POSIX shell environment")
    extra = [f"--method={method}", "--alt_every=3", "--exact_head=true"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [*_torchrun(), "--standalone", "--nproc_per_node=2", "-m", "altheory.train.cli", *ARGS, *extra,
           f"--out_dir={tmp_path / 'ddp'}"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300,
                       cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    torch.set_num_threads(1)
    cfg = load_config(None, {**parse_overrides(ARGS + extra), "out_dir": str(tmp_path / "one")})
    one = train(cfg, quiet=True)
    ddp = load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")
    ref = load_checkpoint(tmp_path / "one" / "checkpoint.pt")
    assert ddp["step"] == ref["step"] == 4
    for k, v in ref["model"].items():
        torch.testing.assert_close(ddp["model"][k], v, rtol=1e-9, atol=1e-10, msg=k)
    assert ddp["history"][0]["val_acc"] == one["history"][0]["val_acc"]
    assert abs(ddp["history"][0]["train_loss"] - one["history"][0]["train_loss"]) < 1e-9
    assert ddp["history"][0]["head_status"] == "optimal"
