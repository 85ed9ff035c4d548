r"""Shared figure style (Agg backend, rcParams, colours) for every figure script."""

from altheory.plotting.style import *  # noqa: F401,F403
from altheory.plotting.style import __all__
