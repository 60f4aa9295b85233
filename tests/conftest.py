import os

import numpy as np
import pytest

# Keep the CUDA tests on the simulator unless a real GPU run asks otherwise; this must
# happen before anything imports numba.
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
