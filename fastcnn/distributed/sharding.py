"""Which rows each rank trains on: DistributedSampler's interleaved shards.

Every rank computes the same epoch order (a pure function of the fit seed and the
epoch) and keeps every ``world``-th row of it, starting at its rank. Rank r's batch b
of size B is then ``order[world*B*b + r :: world][:B]``, so the ranks' batches b
together hold exactly the rows ``order[world*B*b : world*B*(b+1)]``: step b of a
``world``-rank run sees the rows of step b of a one-process run with batch
``world * B``. The last step may be ragged; some ranks may then have fewer rows,
or none (see :class:`fastcnn.distributed.DataParallel` for how that is weighted).
"""

from __future__ import annotations

import numbers

import numpy as np


def _count(op: str, name: str, value, minimum: int) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool | np.bool_):
        raise TypeError(f"{op}: {name} must be an int, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}.")
    return int(value)


def _rank_world(op: str, rank, world) -> tuple[int, int]:
    world = _count(op, "world", world, 1)
    rank = _count(op, "rank", rank, 0)
    if rank >= world:
        raise ValueError(f"{op}: rank must be < world ({world}), got {rank}.")
    return rank, world


def shard(order: np.ndarray, rank: int, world: int) -> np.ndarray:
    """Rank ``rank``'s rows of an epoch order: ``order[rank::world]`` (a view).

    The shards of ranks ``0 .. world-1`` are disjoint and together hold every entry
    of ``order``; their lengths differ by at most one.

    Shape: order (n,) -> (ceil((n - rank) / world),).
    """
    rank, world = _rank_world("shard", rank, world)
    order = np.asarray(order)
    if order.ndim != 1:
        raise ValueError(f"shard: order must be 1-D, got shape {order.shape}.")
    return order[rank::world]


def num_steps(n: int, batch_size: int, world: int) -> int:
    """Optimizer steps per epoch: ``ceil(n / (world * batch_size))``, the same on
    every rank (rank 0's shard, the longest, needs exactly that many batches).

    Shape: no arrays.
    """
    n = _count("num_steps", "n", n, 0)
    batch_size = _count("num_steps", "batch_size", batch_size, 1)
    world = _count("num_steps", "world", world, 1)
    return -(-n // (world * batch_size))


def step_rows(step: int, n: int, batch_size: int, world: int) -> int:
    """How many rows all ranks together train on at ``step`` of an epoch of ``n``:
    ``world * batch_size``, less on the ragged last step.

    Shape: no arrays.
    """
    step = _count("step_rows", "step", step, 0)
    n = _count("step_rows", "n", n, 0)
    batch_size = _count("step_rows", "batch_size", batch_size, 1)
    world = _count("step_rows", "world", world, 1)
    global_batch = world * batch_size
    return max(0, min(global_batch, n - global_batch * step))
