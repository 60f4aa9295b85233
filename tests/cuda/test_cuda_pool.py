"""The device memory pool hands a buffer out again only when nothing references it
or its memory (a caller's variable, a reshaped or sliced view), on the simulator."""

import numpy as np
import pytest
from numba import config as numba_config

from fastcnn import backend
from fastcnn import functional as F
from fastcnn.kernels.cuda import _pool

pytestmark = pytest.mark.skipif(
    not (backend.cuda_available() and numba_config.ENABLE_CUDASIM),
    reason="the pool's bookkeeping is checked on the CUDA simulator",
)

SHAPE = (3, 5)


@pytest.fixture(autouse=True)
def empty_pool():
    _pool.release()
    yield
    _pool.release()


def test_a_held_buffer_is_not_handed_out_twice():
    a = _pool.empty(SHAPE, np.float32)
    b = _pool.empty(SHAPE, np.float32)
    assert a is not b


def test_a_dropped_buffer_is_reused():
    a = _pool.empty(SHAPE, np.float32)
    first = id(a)
    del a
    assert id(_pool.empty(SHAPE, np.float32)) == first


@pytest.mark.parametrize("make_view", [lambda a: a.reshape(15), lambda a: a[1:],
                                       lambda a: a[0], lambda a: a.T],
                         ids=["reshape", "slice", "row", "transpose"])
def test_a_view_keeps_its_buffer_out_of_the_pool(make_view):
    a = _pool.empty(SHAPE, np.float32)
    first = id(a)
    view = make_view(a)
    del a
    other = _pool.empty(SHAPE, np.float32)
    assert id(other) != first
    del other
    del view
    assert id(_pool.empty(SHAPE, np.float32)) == first


def test_shapes_and_dtypes_have_their_own_buffers():
    a = _pool.empty(SHAPE, np.float32)
    first = id(a)
    del a
    assert id(_pool.empty(SHAPE, np.float64)) != first
    assert id(_pool.empty((5, 3), np.float32)) != first
    assert _pool.empty(7, np.int64).shape == (7,)


def test_release_drops_only_idle_buffers():
    # Buffers other tests still hold (module-level arrays) stay in the pool: count
    # from what is there now.
    before = _pool.POOL.size()
    held = _pool.empty(SHAPE, np.float32)
    _pool.empty(SHAPE, np.float64)
    assert _pool.POOL.size() == before + 2
    assert backend.cuda_device().empty_cache() == 1
    assert _pool.POOL.size() == before + 1
    held[0, 0] = 1.0  # still a working array


def test_op_results_never_share_memory_while_held():
    """Ops take their outputs from the pool: results held at once are distinct
    arrays with their own values."""
    dev = backend.cuda_device()
    x = dev.move_in(np.arange(15, dtype=np.float32).reshape(SHAPE) - 7)
    results = [F.relu(x), F.relu(dev.move_in(-x.copy_to_host())), F.relu(x)]
    host = [r.copy_to_host() for r in results]
    np.testing.assert_array_equal(host[0], host[2])
    np.testing.assert_array_equal(host[1], np.maximum(7 - np.arange(15.0), 0)
                                  .reshape(SHAPE).astype(np.float32))
    assert len({id(r) for r in results}) == 3
