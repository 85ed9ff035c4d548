r"""Experiments that write results to disk and are read back by the figures:

* :mod:`.sweeps` — resumable parameter sweeps of the claim measurements (``altheory sweep``);
* :mod:`.comparison` — the alternation comparison against SGD/Adam (``altheory alternate``);
* :mod:`.store` — the resumable CSV store both use, and the folder lock;
* :mod:`.cluster` — running sweeps and claim checks on a Dask cluster.
"""

from altheory.experiments.sweeps import expand_grid, parse_grid, read_table, run_sweep

__all__ = ["expand_grid", "parse_grid", "read_table", "run_sweep"]
