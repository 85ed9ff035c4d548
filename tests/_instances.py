"""Fixed problem instances shared by several test modules."""

from __future__ import annotations

import numpy as np


def teacher(n, d, p, seed=0):
    """The benchmark's instance (paper_repro/bench_fast_solver.py): a planted 5-unit ReLU
    teacher, Gaussian X, gate vectors V, G = X V > 0."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    G = X @ rng.standard_normal((d, p)) > 0
    W = rng.standard_normal((5, d)) / np.sqrt(d)
    y = np.maximum(X @ W.T, 0).sum(1) + 0.1 * rng.standard_normal(n)
    return X, G, y
