"""Block sizes patched small for simulator runs: few simulated threads, yet several
blocks for most kernels (the CUDA model and step-count tests share this)."""

import importlib


def patch_small_blocks(patch, subjects, size=4):
    """Set ``THREADS_PER_BLOCK`` and ``TILE`` to ``size`` in each
    ``fastcnn.kernels.cuda.<subject>`` module, through ``patch`` (a
    ``pytest.MonkeyPatch``)."""
    for subject in subjects:
        module = importlib.import_module(f"fastcnn.kernels.cuda.{subject}")
        patch.setattr(module, "THREADS_PER_BLOCK", size)
        if hasattr(module, "TILE"):
            patch.setattr(module, "TILE", size)
