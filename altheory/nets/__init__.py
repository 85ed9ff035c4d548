r"""Networks as seen through their support: PHT, the traced graph, the multi-layer support, the
explicit linear operator, and random architectures to test them on.

Stage 1 and 2 of the pipeline (support -> operator). Imports nothing from the solvers.
The module :mod:`altheory.nets.support` keeps its name here; the function is
``altheory.support`` (and ``altheory.nets.support.support``).
"""

from altheory.nets.activations import *  # noqa: F401,F403
from altheory.nets.activations import __all__ as _a
from altheory.nets.architectures import *  # noqa: F401,F403
from altheory.nets.architectures import __all__ as _b
from altheory.nets.graph import *  # noqa: F401,F403
from altheory.nets.graph import __all__ as _c
from altheory.nets.operators import *  # noqa: F401,F403
from altheory.nets.operators import __all__ as _d
from altheory.nets.support import LayerSupport, MultiLayerSupport, gated_forward

__all__ = [*_a, *_b, *_c, *_d, "LayerSupport", "MultiLayerSupport", "gated_forward"]
