r"""Fixed-support problems and the solvers that answer them exactly.

Bottom to top: :mod:`~altheory.solvers.losses` and :mod:`~altheory.solvers.problems` (problem
definitions and argument checks, no solver), the backends :mod:`~altheory.solvers.convex`
(cvxpy: Clarabel, SCS), :mod:`~altheory.solvers.fast` (the fast certified solver),
:mod:`~altheory.solvers.pilanci_ergen` (its C5 counterpart, with :mod:`~altheory.solvers.nnls`)
and :mod:`~altheory.solvers.arrangements` (C5's exact program), and on top
:mod:`~altheory.solvers.dispatch` (``solve``, ``per_layer``: ``solver="auto"``).
"""

from altheory.solvers.losses import *  # noqa: F401,F403
from altheory.solvers.losses import __all__ as _a
from altheory.solvers.problems import *  # noqa: F401,F403
from altheory.solvers.problems import __all__ as _b
from altheory.solvers.convex import *  # noqa: F401,F403
from altheory.solvers.convex import __all__ as _c
from altheory.solvers.fast import *  # noqa: F401,F403
from altheory.solvers.fast import __all__ as _d
from altheory.solvers.pilanci_ergen import *  # noqa: F401,F403
from altheory.solvers.pilanci_ergen import __all__ as _g
from altheory.solvers.arrangements import *  # noqa: F401,F403
from altheory.solvers.arrangements import __all__ as _e
from altheory.solvers.dispatch import *  # noqa: F401,F403
from altheory.solvers.dispatch import __all__ as _f

__all__ = [*_a, *_b, *_c, *_d, *_g, *_e, *_f]
