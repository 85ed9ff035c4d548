r"""Alternation between weights and support (C8, C9) and the tuned first-order baselines it is
compared with."""

from altheory.alternation.alternation import *  # noqa: F401,F403
from altheory.alternation.alternation import __all__ as _a
from altheory.alternation.baselines import *  # noqa: F401,F403
from altheory.alternation.baselines import __all__ as _b

__all__ = [*_a, *_b]
