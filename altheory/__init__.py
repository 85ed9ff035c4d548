r"""altheory — numerical checks of training neural networks through their support.

The theory (``docs/claims.md``, claims C1–C9, from Huang, Kong & Lucey, "CNNs are Globally Optimal
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

# Before anything imports torch: the OpenMP wait policy is read once, when torch loads it
# (altheory/threads.py; ALTHEORY_THREADS=native opts out).
from altheory.threads import configure_threads as _configure_threads

_configure_threads()

from altheory.errors import AltheoryError, ClaimFailure, SolverError, UnsupportedModuleError
from altheory.nets.activations import PHT, pht, pht_mask, pht_topk, replace_relu, topk_mask
from altheory.nets.operators import Linearization, layer_operator, linearize
from altheory.nets.support import LayerSupport, MultiLayerSupport, gated_forward, support
from altheory.solvers.problems import FixedSupportNetwork, TwoLayerFixedSupport
from altheory.solvers.convex import group_lasso, reduced_rank_regression
from altheory.solvers.fast import solve_group_lasso, solve_layer
from altheory.solvers.dispatch import per_layer, solve
from altheory.descent.descent import MLPObjective, descend
from altheory.certificates.certificates import certify
from altheory.alternation.alternation import alternate

__version__ = "0.2.0"

__all__ = [
    "PHT", "pht", "pht_mask", "pht_topk", "topk_mask", "replace_relu",
    "support", "MultiLayerSupport", "LayerSupport", "gated_forward",
    "linearize", "layer_operator", "Linearization",
    "TwoLayerFixedSupport", "FixedSupportNetwork",
    "solve", "group_lasso", "per_layer", "reduced_rank_regression", "solve_group_lasso",
    "solve_layer", "descend", "MLPObjective", "certify", "alternate",
    "AltheoryError", "SolverError", "UnsupportedModuleError", "ClaimFailure",
]
