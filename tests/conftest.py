import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Keep the CUDA tests on the simulator unless a real GPU run asks otherwise; this must
# happen before anything imports numba.
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

# Hypothesis profiles for the fuzz suites (tests/*/test_fuzz_*.py, which take their
# example counts from the loaded profile): "ci", bounded, is the default;
# FASTCNN_FUZZ=long runs many more examples locally. Tests that pass their own
# max_examples keep them.
settings.register_profile(
    "ci", max_examples=12, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "long", max_examples=400, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("FASTCNN_FUZZ", "ci"))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
