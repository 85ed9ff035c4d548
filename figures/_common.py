"""Helpers shared by the figure scripts: where the cached results are, and how to read them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA_DIR = HERE / "data"
CLAIMS_DIR = DATA_DIR / "claims"  # committed thorough reports; `altheory verify` writes results/claims


def load_claim(cid: str, claims_dir: Path | None = None) -> dict:
    """The JSON report of claim ``cid`` (written by ``altheory verify`` / ``proofs_checks``)."""
    path = Path(claims_dir or CLAIMS_DIR) / f"{cid}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; run `altheory figures` (recomputes it) or "
                                f"`altheory verify --thorough --claims {cid} --json figures/data/verify.json`.")
    return json.loads(path.read_text())


def load_alternation(name: str = "fashion-mnist") -> dict:
    path = DATA_DIR / f"alternation_{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; run `altheory alternate --data {name} --export`.")
    return json.loads(path.read_text())


def finite(vals) -> np.ndarray:
    v = np.array([x for x in vals if x is not None and isinstance(x, (int, float))
                  and math.isfinite(x)], dtype=np.float64)
    return v


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson interval of a rate k/n."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    den = 1 + z * z / n
    c = (p + z * z / (2 * n)) / den
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, c - h), min(1.0, c + h))


def median_band(curves: list[list[float]]):
    """Median and quartiles over runs of equal-length (truncated to the shortest) curves."""
    m = min(len(c) for c in curves)
    A = np.array([[np.nan if v is None else v for v in c[:m]] for c in curves], dtype=np.float64)
    return np.nanmedian(A, 0), np.nanpercentile(A, 25, 0), np.nanpercentile(A, 75, 0)
