r"""Certificates of global optimality (gaps to exact optima and lifted bounds) and the checks of
each claim's stated conditions, with the numbers that decide them."""

from altheory.certificates.certificates import *  # noqa: F401,F403
from altheory.certificates.certificates import __all__ as _a
from altheory.certificates.conditions import *  # noqa: F401,F403
from altheory.certificates.conditions import __all__ as _b

__all__ = [*_a, *_b]
