r"""altheory — numerical checks of training neural networks through their support.

The theory (``THEORY.md``, claims C1–C9, from Huang, Kong & Lucey, "CNNs are Globally Optimal
Given Multi-Layer Support", 2017): replace ReLU by positive hard thresholding (PHT); read the
non-linearity as a binary support, so the network is linear once its multi-layer support is
known; under stated conditions local descent finds a global optimum of the fixed-support
problem; train by alternating between weights and support.

Symbols
-------
==========  ================================================================================
``n``        number of samples (rows of ``X``)
``d``        input entries per sample (``x_i`` flattened)
``k``        output entries per sample
``L``        number of layers; ``W_l``, ``b_l`` the weights and bias of layer ``l``
widths       ``h_l``, entries of the activation of layer ``l`` per sample
``tau``      PHT threshold (``tau = 0`` is ReLU); ``k`` of top-k PHT is a keyword ``k=``
``z^l_i``    pre-activation of layer ``l`` for sample ``i``
``s^l_i``    support ``1[z^l_i > tau]`` (bool), ``D^l_i = diag(s^l_i)``
``S``        the multi-layer support ``{s^l_i}`` (:class:`MultiLayerSupport`)
``A_S, c_S`` the affine map of the network with support ``S``: ``f(x_i) = A_S x_i + c_S``
``mu``       margin ``min |z^l_ij - tau|`` of a consistent support
==========  ================================================================================
"""

from .activations import PHT, pht, pht_mask, pht_topk, replace_relu, topk_mask
from .errors import AltheoryError, ClaimFailure, SolverError, UnsupportedModuleError
from .operators import layer_operator, linearize, Linearization
from .support import LayerSupport, MultiLayerSupport, gated_forward, support

__version__ = "0.1.0"

# The solver side (cvxpy, the fast certified solver, descent) is imported on first use, so that
# `import altheory` (and the trainer on a GPU machine without cvxpy) stays light.
_LAZY = {
    "TwoLayerFixedSupport": "problems", "FixedSupportNetwork": "problems",
    "group_lasso": "convex", "per_layer": "convex", "reduced_rank_regression": "convex",
    "solve_group_lasso": "fast_solver", "solve_layer": "fast_solver",
    "certify": "certificates", "descend": "descent", "MLPObjective": "descent",
    "alternate": "alternation",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'altheory' has no attribute {name!r}")

__all__ = [
    "PHT", "pht", "pht_mask", "pht_topk", "topk_mask", "replace_relu",
    "support", "MultiLayerSupport", "LayerSupport", "gated_forward",
    "linearize", "layer_operator", "Linearization",
    "AltheoryError", "SolverError", "UnsupportedModuleError", "ClaimFailure",
    *_LAZY,
]
