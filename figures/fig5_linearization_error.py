"""Figure 5 — distribution of the linearization error of C1.

Relative error of the explicit operator A_S against the forward pass (f(x) = A_S x + c_S) and
against autograd's Jacobian, per instance, float64, on a log axis, with the 1e-10 tolerance.

Data: figures/data/claims/C1.json, made by `altheory verify --thorough --claims C1`.
"""

from __future__ import annotations

import numpy as np

from altheory.plotting.style import COLUMN, figure, save
from _common import HERE, finite, load_claim

FLOOR = 1e-20


def main(out_dir=HERE, claims_dir=None):
    rep = load_claim("C1", claims_dir)
    fig, ax = figure(COLUMN, aspect=0.65)
    bins = np.arange(-20.5, -7.5, 0.5)
    for key, label, color in (("forward_rel_error", "forward: $\\|f - (A_S x + c_S)\\|$", "#1f77b4"),
                              ("jacobian_rel_error", "Jacobian: $\\|A_S - \\partial f/\\partial x\\|$", "#ff7f0e")):
        v = finite(i["detail"].get(key) for i in rep["instances"])
        ax.hist(np.log10(np.maximum(v, FLOOR)), bins=bins, alpha=0.6, color=color,
                label=f"{label} (n={v.size})")
    tol = next((i["tol"] for i in rep["instances"] if i.get("tol")), 1e-10)
    ax.axvline(np.log10(tol), color="#d62728", ls="--", lw=0.8, label=f"tolerance {tol:.0e}")
    ax.set_xlabel("log$_{10}$ relative error (float64; exact zeros at -20)")
    ax.set_ylabel("instances")
    ax.set_title(f"C1: linear given the support ({len(rep['instances'])} instances)")
    ax.legend(loc="upper left")
    return save(fig, out_dir / "fig5_linearization_error")


if __name__ == "__main__":
    print(main())
