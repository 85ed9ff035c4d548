r"""Local descent on fixed-support and true networks, and the classification of its end points
(local minimum, saddle, not converged) that decides what a run can confirm or refute."""

from altheory.descent.descent import *  # noqa: F401,F403
from altheory.descent.descent import __all__ as _a
from altheory.descent.endpoints import *  # noqa: F401,F403
from altheory.descent.endpoints import __all__ as _b

__all__ = [*_a, *_b]
