"""Test configuration: hypothesis profiles, tolerances by dtype, and the slow/gpu markers.

Profiles (env ALTHEORY_HYPOTHESIS): ``quick`` (default, CI: few examples, no deadline) and
``thorough`` (many examples). Slow tests run only with ALTHEORY_SLOW=1; GPU tests only when CUDA
is available.
"""

from __future__ import annotations

import os

# The OpenMP wait policy must be set before torch loads (altheory/threads.py): the tests import
# torch before altheory, so set it here first.
from altheory.threads import configure_threads

configure_threads()

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "quick", max_examples=15, deadline=None, derandomize=True, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "thorough", max_examples=300, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("ALTHEORY_HYPOTHESIS", "quick"))

# Tolerances, stated once. The theory checks run in float64 (docs/claims.md C1: relative error <= 1e-10).
RTOL = {torch.float64: 1e-10, torch.float32: 1e-4, np.float64: 1e-10, np.float32: 1e-4}

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def pytest_collection_modifyitems(config, items):
    slow_ok = os.environ.get("ALTHEORY_SLOW") == "1"
    gpu_ok = torch.cuda.is_available()
    for item in items:
        if "slow" in item.keywords and not slow_ok:
            item.add_marker(pytest.mark.skip(reason="slow test: set ALTHEORY_SLOW=1 to run it"))
        if "gpu" in item.keywords and not gpu_ok:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))


@pytest.fixture
def rng():
    return np.random.default_rng(0)
