r"""The project's exception hierarchy.

Validation errors use the built-in ``TypeError`` (wrong kind) and ``ValueError`` (wrong
value); failures of a computation that was called correctly derive from
:class:`AltheoryError`, so a caller can catch "altheory could not do it" in one place.
"""

from __future__ import annotations

__all__ = [
    "AltheoryError",
    "UnsupportedModuleError",
    "SolverError",
    "ClaimFailure",
]


class AltheoryError(Exception):
    """Base class of every failure raised by altheory itself (not argument validation)."""


class UnsupportedModuleError(AltheoryError, TypeError):
    """A module or graph operation has no explicit linear operator.

    The message names the module's type and its path in the model (``layer1.0.conv1``).
    """


class SolverError(AltheoryError):
    """A convex solve ended in a status other than optimal, with every fallback tried."""


class ClaimFailure(AltheoryError):
    """An asserted claim of docs/claims.md failed on an instance (raised only when asked to)."""
