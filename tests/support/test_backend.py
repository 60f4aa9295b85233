"""fastcnn.backend: which device an op's arrays pick, the CPU device's operations
(the exact NumPy results the ops always used), and the import rule (only backend/
and kernels/ touch numba.cuda)."""

import pathlib
import re

import numpy as np
import pytest

import fastcnn
from fastcnn import backend
from fastcnn.backend.cpu import CpuDevice

PACKAGE = pathlib.Path(fastcnn.__file__).parent


def test_numpy_arrays_run_on_the_default_device():
    x = np.ones((2, 3))
    dev = backend.device_of(x, None, np.zeros(3))
    assert isinstance(dev, CpuDevice) and dev.name == "cpu"
    assert dev.kernels("conv") is backend.kernels("conv", "cpu")
    assert backend.device_of() is dev  # no arrays at all: the default device


def test_the_device_of_no_device_array_never_imports_cuda_kernels():
    dev = backend.device_of(np.ones(2))
    assert dev.kernel_package == backend.get_device() == "cpu"
    assert backend.device("cpu") is dev


def test_cpu_device_operations_match_numpy():
    dev = backend.device("cpu")
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 7))
    t = dev.transpose(a)
    assert t.flags.c_contiguous
    np.testing.assert_array_equal(t, a.T)
    np.testing.assert_array_equal(dev.zeros((2, 2), np.float64), np.zeros((2, 2)))
    np.testing.assert_array_equal(dev.ones(3, np.float32), np.ones(3, np.float32))
    assert dev.empty((4, 4), np.float32).shape == (4, 4)
    copied = dev.copy(a)
    assert copied is not a and np.array_equal(copied, a)
    target = np.zeros_like(a)
    dev.copy_into(target, a)
    np.testing.assert_array_equal(target, a)
    assert dev.to_host(a) is a and dev.move_in(a) is a and backend.to_host(a) is a
    assert dev.contiguous(a.T).flags.c_contiguous
    assert dev.holds(a) and not dev.holds([1.0])


def test_is_device_array_is_defined_once():
    from fastcnn.kernels import _arrays
    from fastcnn.kernels.cuda import _launch

    assert backend.is_device_array is _arrays.is_device_array
    assert _launch.is_device_array is _arrays.is_device_array
    assert not backend.is_device_array(None)
    assert not backend.is_device_array(np.ones(2))


def test_only_backend_and_kernels_import_numba_cuda():
    pattern = re.compile(
        r"^\s*(from numba import cuda|import numba\.cuda|from numba\.cuda"
        r"|from \S*kernels\.cuda|from \S*kernels import cuda)", re.M
    )
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.relative_to(PACKAGE).parts[0] not in ("backend", "kernels")
        and pattern.search(path.read_text())
    ]
    assert offenders == []


def test_an_unknown_device_name_is_refused():
    with pytest.raises(ValueError, match="device must be one of"):
        backend.device("tpu")
