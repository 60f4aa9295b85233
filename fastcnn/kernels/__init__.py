"""Numba kernels: pure array code in destination-passing style.

``cpu/`` holds ``@njit(parallel=True)`` kernels; ``cuda/`` holds their ``numba.cuda``
twins with the same file names, function names and positional signatures. Nothing in
this package validates its inputs: :mod:`fastcnn.functional` does that, once.
"""
