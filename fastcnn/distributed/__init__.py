"""Data-parallel training across the processes of an MPI job, equal to training in
one process.

Launch the same script on N ranks and pass ``distributed=True`` to ``fit``::

    mpiexec -n 2 python train.py          # model.fit(x, y, ..., distributed=True)
    mpiexec -n 2 python -m fastcnn train --distributed

Every rank holds the whole data set and builds and compiles the same model. ``fit``
then (see :class:`DataParallel`):

- broadcasts rank 0's seed, weights, BatchNorm statistics, optimizer state and
  Dropout generators, and checks that every rank has the same model and data;
- gives each rank a disjoint shard of every epoch's shuffled order,
  ``order[rank::N]``, so that N ranks with ``batch_size=B`` take exactly the steps
  of one process with ``batch_size=N*B`` (the ragged last batch included);
- averages the gradients with one allreduce per step over one flat buffer, which
  also carries the batch's loss and metric sums, so every rank logs the same
  numbers and callbacks such as EarlyStopping decide alike;
- lets only rank 0 print and run ``rank_zero_only`` callbacks (ModelCheckpoint,
  CSVLogger); the others run silenced;
- BatchNorm normalises with each rank's own batch statistics (not synchronised);
  the running statistics are averaged over the ranks at the end of every epoch;
  Dropout draws different masks on every rank;
- evaluates validation data sharded over the ranks and reduces the sums.

If a rank dies, MPICH's ``mpiexec`` ends the job at once; under launchers that do
not, every collective gives up after ``FASTCNN_DIST_TIMEOUT`` seconds (default 300)
and aborts the job with a message. Resume from rank 0's last ModelCheckpoint: every
rank calls ``load_model(path)`` and ``fit(..., initial_epoch=model.epoch)``.

mpi4py is imported only when a communicator is made: ``pip install "fastcnn[mpi]"``.
"""

from .comm import DistributedError, MPICommunicator, broadcast_bytes, import_mpi
from .data_parallel import DataParallel, communicator
from .flat import FlatBuffer
from .sharding import num_steps, shard, step_rows


def rank() -> int:
    """This process's rank in ``MPI.COMM_WORLD`` (0 outside ``mpiexec``); imports
    mpi4py.

    Shape: no arrays.
    """
    return import_mpi().COMM_WORLD.Get_rank()


def world_size() -> int:
    """The number of ranks in ``MPI.COMM_WORLD`` (1 outside ``mpiexec``); imports
    mpi4py.

    Shape: no arrays.
    """
    return import_mpi().COMM_WORLD.Get_size()


__all__ = [
    "DataParallel",
    "DistributedError",
    "FlatBuffer",
    "MPICommunicator",
    "broadcast_bytes",
    "communicator",
    "num_steps",
    "rank",
    "shard",
    "step_rows",
    "world_size",
]
