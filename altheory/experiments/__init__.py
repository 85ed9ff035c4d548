r"""Experiments that write results to disk: resumable parameter sweeps of the claim measurements."""

from altheory.experiments.sweeps import expand_grid, parse_grid, read_table, run_sweep

__all__ = ["expand_grid", "parse_grid", "read_table", "run_sweep"]
