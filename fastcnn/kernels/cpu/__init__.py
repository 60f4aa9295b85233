"""CPU kernels (``@njit(parallel=True)``), compiled lazily on first call."""
