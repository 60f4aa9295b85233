"""CUDA twins of :mod:`fastcnn.kernels.cpu`: same file names, same function names,
same positional signatures.

Each public function here is a host-side launcher: it takes numba device arrays (or
NumPy arrays, copied in and out) and writes the destination arrays exactly as the CPU
kernel of its name does, launching ``numba.cuda`` kernels over a computed grid. The
modules import ``numba.cuda``, so they are imported only when the device is "cuda"
(see :mod:`fastcnn.backend`); ``import fastcnn`` never imports them.

Block sizes (``THREADS_PER_BLOCK``, ``TILE*``) are module attributes read at launch
time, so tests patch them small to run the multi-block paths on the simulator.
Reductions use a fixed thread-to-data assignment and a fixed tree order, so results
are the same from run to run.
"""
