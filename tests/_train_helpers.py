"""Shared by the trainer's test files: a tiny CPU configuration and a one-thread fixture."""

from __future__ import annotations

import pytest
import torch

from altheory.train import TrainConfig


@pytest.fixture(autouse=True)
def _one_thread():
    """Every test of an importing module runs torch on one thread (small problems: no pool)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny(tmp_path, **kw) -> TrainConfig:
    """A ResNet-8 of width 4 on 32 synthetic 8x8 images: one CPU epoch in about a second."""
    base = dict(arch="resnet8", width=4, image_size=8, synthetic_n=32, synthetic_classes=3,
                batch_size=8, epochs=1, device="cpu", dtype="float64", lr=0.05, progress=False,
                tensorboard=False, out_dir=str(tmp_path / "run"), tau=0.05, head_samples=32)
    base.update(kw)
    return TrainConfig(**base)
