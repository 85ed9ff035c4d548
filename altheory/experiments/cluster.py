r"""Run sweeps and claim checks on a Dask cluster (``pip install 'altheory[dask]'``).

``scheduler`` names the cluster the same way everywhere (``altheory sweep --scheduler``,
``altheory verify --scheduler``):

* ``"tcp://host:8786"`` (any address a ``dask.distributed.Client`` accepts): a running scheduler,
  e.g. started with ``dask scheduler`` and ``dask worker tcp://host:8786`` on each machine (the
  workers need altheory installed, the same version);
* ``"local"`` or ``"local:N"``: a ``LocalCluster`` of ``N`` single-threaded worker processes on
  this machine (default: one per core), closed at the end.

Sweeps ship each instance to the cluster through joblib's Dask backend
(:func:`altheory.experiments.sweeps.run_sweep` with ``backend="dask"``); rows are still appended
by this process as results arrive, so the table stays resumable. Claim checks ship one claim per
task (:func:`run_claims_on_cluster`); each check is seeded, so the reports are the same as those
of a serial run (the timings aside).
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterable, Iterator

__all__ = ["parse_scheduler", "dask_client", "run_claims_on_cluster"]


def parse_scheduler(scheduler: str) -> tuple[str, int | None]:
    """``("local", N or None)`` or ``("address", None)``; ValueError for a malformed value.

    Examples
    --------
    >>> parse_scheduler("local:2")
    ('local', 2)
    >>> parse_scheduler("tcp://10.0.0.1:8786")
    ('tcp://10.0.0.1:8786', None)
    """
    s = scheduler.strip()
    if not s:
        raise ValueError("scheduler is empty; expected 'local', 'local:N' or an address like "
                         "tcp://host:8786.")
    if s == "local":
        return "local", None
    if s.startswith("local:"):
        n = s.split(":", 1)[1]
        if not n.isdigit() or int(n) < 1:
            raise ValueError(f"scheduler {scheduler!r}: expected local:N with N >= 1 workers.")
        return "local", int(n)
    if "://" not in s and ":" not in s:
        raise ValueError(f"scheduler {scheduler!r}: expected 'local', 'local:N' or an address like "
                         "tcp://host:8786 (a scheduler file is not supported here).")
    scheme, _, rest = s.rpartition("://") if "://" in s else ("tcp", "", s)
    if scheme not in _SCHEMES:
        raise ValueError(f"scheduler {scheduler!r}: unknown address scheme {scheme!r}; expected one "
                         f"of {', '.join(_SCHEMES)} (e.g. tcp://host:8786), 'local' or 'local:N'.")
    host, _, port = rest.rpartition(":")
    if scheme != "inproc" and (not host or not port.isdigit() or not 0 < int(port) < 65536):
        raise ValueError(f"scheduler {scheduler!r}: expected host:port with a port in 1..65535 "
                         "(e.g. tcp://10.0.0.1:8786).")
    return s, None


_SCHEMES = ("tcp", "tls", "ucx", "ws", "wss", "inproc")  # dask.distributed's address schemes


def require_dask() -> None:
    """ImportError with the install line when dask.distributed is missing."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise ImportError("running on a Dask cluster needs dask.distributed: "
                          "pip install 'altheory[dask]' (or 'dask[distributed]').") from None


@contextlib.contextmanager
def dask_client(scheduler: str, *, timeout: float = 30) -> Iterator:
    """A ``dask.distributed.Client`` for ``scheduler`` (see the module docstring), closed after."""
    where, n = parse_scheduler(scheduler)
    require_dask()
    from distributed import Client, LocalCluster

    if where == "local":
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               dashboard_address=":0")
        try:
            with Client(cluster) as client:
                yield client
        finally:
            cluster.close()
    else:
        with Client(where, timeout=timeout) as client:
            yield client


def _claim_on_worker(claim_id: str, profile: str, seed: int):
    """Run one claim on a worker; returns its report and the line ``run_claims`` printed."""
    import io

    from rich.console import Console

    from altheory.claims.report import run_claims

    buf = io.StringIO()
    console = Console(file=buf, width=160, force_terminal=False, color_system=None)
    report = run_claims([claim_id], profile=profile, seed=seed, console=console)[0]
    return report, buf.getvalue()


def run_claims_on_cluster(client, claim_ids: Iterable[str], *, profile: str = "quick", seed: int = 0,
                          on_done: Callable | None = None) -> list:
    """Run each claim as one task on ``client``'s cluster; reports in the order of ``claim_ids``.

    ``on_done(report, text)`` is called in this process as each claim finishes (``text``: the
    line ``altheory verify`` prints for it).
    """
    from distributed import as_completed

    ids = list(claim_ids)
    futures = {client.submit(_claim_on_worker, cid, profile, seed, key=f"claim-{cid}-{profile}-{seed}",
                             pure=False): cid for cid in ids}
    reports = {}
    for fut in as_completed(list(futures)):
        report, text = fut.result()
        reports[futures[fut]] = report
        if on_done is not None:
            on_done(report, text)
    return [reports[c] for c in ids]
