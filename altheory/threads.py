r"""CPU thread policy: how OpenMP threads wait, set before torch and numpy start their pools.

torch (ATen, MKL) and numpy/scipy (OpenBLAS) run their parallel regions on OpenMP thread pools.
Between regions, GNU OpenMP threads *spin* (busy-wait) for a while before sleeping. On an idle
machine this pays: the next region starts without waking its threads. On a machine whose cores
are busy with other work, the spinning threads steal the cores the working thread needs, and
the small, frequent parallel regions of altheory's checks (products of a few thousand flops,
thousands of times) slow down. ``OMP_WAIT_POLICY=PASSIVE`` makes waiting threads sleep at once.
Measured by ``paper_repro/bench_threads.py`` (``paper_repro/results/bench_threads.json``, two
cores, two or three runs per policy): under load (run ``loaded``) the quick ``altheory verify``
took about half as long with ``passive`` as with ``native`` and the small CPU trainer (ResNet-8)
ran about ten times faster; on a quiet machine (run ``quiet``) the checks took about the same time
under every policy, but ``passive`` cost the trainer about a third of its images per second,
which ``native`` recovers. ``passive`` is the default because it does not collapse under load;
see the "Threads" section of ``README.md`` for the numbers and the load they were taken under.

The policy is read by the OpenMP runtime once, when its library is loaded, i.e. when torch (or
numpy's BLAS) is first imported. :func:`configure_threads` therefore runs at the very top of
``altheory/__init__.py``, before any module imports torch. If torch was imported before
altheory, the setting comes too late for that process (the returned ``late`` says so): set
``OMP_WAIT_POLICY=PASSIVE`` in the shell instead.

Choice (``ALTHEORY_THREADS`` environment variable, read by :func:`configure_threads`):

==========  ================================================================================
``passive`` (default) ``OMP_WAIT_POLICY=PASSIVE`` unless the variable is already set; thread
            counts are left to torch (one per core).
``native``  leave everything as the libraries set it (OpenMP's default spin-then-sleep):
            faster for CPU training on an otherwise idle machine, far slower under load.
==========  ================================================================================

A user's own ``OMP_WAIT_POLICY`` always wins (``os.environ.setdefault``). Thread *counts* are
not changed here: small problems already drop to one thread where it was measured to pay
(``altheory.solvers.fast``, ``altheory.descent``), and large ones (the trainer, big solves) want
every core.
"""

from __future__ import annotations

import os
import sys
from typing import Literal

__all__ = ["configure_threads", "ThreadPolicy"]

ThreadPolicy = Literal["passive", "native"]
_POLICIES = ("passive", "native")


def configure_threads(policy: ThreadPolicy | None = None) -> dict[str, str | None]:
    r"""Set the OpenMP wait policy before torch and numpy load their thread pools.

    Parameters
    ----------
    policy : {"passive", "native"} or None
        ``None`` reads ``ALTHEORY_THREADS`` (default ``"passive"``). ``"passive"`` sets
        ``OMP_WAIT_POLICY=PASSIVE`` unless it is already set; ``"native"`` changes nothing.

    Returns
    -------
    dict
        ``{"policy": ..., "OMP_WAIT_POLICY": <value now in the environment or None>,
        "late": "yes" if torch was already imported (the setting has no effect then) else "no"}``.

    Raises
    ------
    ValueError
        For an unknown policy.

    Examples
    --------
    >>> from altheory.threads import configure_threads
    >>> configure_threads("native")["policy"]
    'native'
    """
    if policy is None:
        policy = os.environ.get("ALTHEORY_THREADS", "passive").strip().lower() or "passive"
    if policy not in _POLICIES:
        raise ValueError(f"thread policy must be one of {_POLICIES}; got {policy!r} "
                         "(from the argument or ALTHEORY_THREADS). Use 'passive' on a shared "
                         "machine, 'native' to leave OpenMP's defaults alone.")
    late = "torch" in sys.modules
    if policy == "passive":  # "native" leaves the environment as it is
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return {"policy": policy, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
            "late": "yes" if late else "no"}
