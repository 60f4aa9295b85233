"""The model on the "cuda" device: training through the model API matches the CPU,
arrays stay on the device, NumPy comes out, and the device switch fails clearly.

In CI these run on the simulator (``NUMBA_ENABLE_CUDASIM=1``, set by conftest.py),
which runs every GPU thread in Python: the network is tiny (a 1x5x5 input, two
channels, batch 2) and the block sizes are patched small (4 threads per block, 4x4
tiles; the 2x2 tiles of tests/cuda/test_cuda_kernels.py would make each training step
several times slower here), so several blocks still run for most kernels. On a real
GPU (tools/gpu_check.py) they run with the default block sizes.
"""

import warnings

import numpy as np
import pytest
from numba import config as numba_config
from numba import cuda

import fastcnn
from fastcnn import backend
from fastcnn import layers as L
from fastcnn.backend.cuda import CudaDevice
from fastcnn.optimizers import SGD, Adam

from ..ops.test_optim_kernels import CONFIGS
from .small_blocks import patch_small_blocks

OVERFLOW = "ignore:overflow encountered:RuntimeWarning"  # dropout's hash, simulated
pytestmark = [
    pytest.mark.skipif(not backend.cuda_available(),
                       reason="no CUDA GPU, and the simulator is off"),
    pytest.mark.filterwarnings(OVERFLOW),
]

SIMULATOR = bool(numba_config.ENABLE_CUDASIM)
SUBJECTS = ("conv", "pool", "dense", "activation", "loss", "dropout", "norm", "optim",
            "_layout")
TOLERANCE = {"float64": 1e-9, "float32": 1e-4}
STEPS = 10  # 5 epochs of 2 batches of 2


@pytest.fixture(scope="module", autouse=True)
def small_blocks():
    with pytest.MonkeyPatch.context() as patch:
        if SIMULATOR:
            patch_small_blocks(patch, SUBJECTS)
        yield


def tiny_net(dtype="float64", device=None, classes=3):
    """conv -> relu -> max pool -> batch norm -> dropout -> flatten -> dense, with
    the same initial weights (and dropout seeds) wherever it is built."""
    model = fastcnn.Sequential(
        [L.Conv2D(2, 3), L.ReLU(), L.MaxPool2D(2), L.BatchNorm2D(), L.Dropout(0.25),
         L.Flatten(), L.Dense(classes)],
        dtype=dtype, device=device,
    )
    model.build((1, 5, 5), rng=np.random.default_rng(0))
    return model


def data():
    rng = np.random.default_rng(5)
    return rng.standard_normal((4, 1, 5, 5)), np.array([0, 1, 2, 1])


def make_optimizer(name):
    if name == "sgd":
        return SGD(0.1, momentum=0.9, weight_decay=0.01)
    return Adam(0.05, weight_decay=0.01)


def train(device, optimizer, dtype):
    model = tiny_net(dtype, device)
    model.compile(make_optimizer(optimizer), "cross_entropy", metrics=["accuracy"])
    x, y = data()
    history = model.fit(x, y, epochs=STEPS // 2, batch_size=2, seed=3, verbose=0)
    assert len(history.iterations) == STEPS
    return model, history


def arrays_of(model):
    for layer in model.layers:
        for group in (layer.params, layer.grads, layer.buffers):
            yield from group.values()


def assert_close(actual, expected, tol, what=""):
    assert isinstance(actual, np.ndarray), (what, type(actual))
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol, err_msg=what)


def assert_models_match(gpu, cpu, tol):
    cpu_state, gpu_state = cpu.state_dict(), gpu.state_dict()
    assert sorted(gpu_state) == sorted(cpu_state)
    for key, value in cpu_state.items():
        assert gpu_state[key].dtype == value.dtype
        assert_close(gpu_state[key], value, tol, key)
    cpu_arrays, cpu_scalars = cpu.optimizer.get_state()
    gpu_arrays, gpu_scalars = gpu.optimizer.get_state()
    assert gpu_scalars == cpu_scalars
    assert sorted(gpu_arrays) == sorted(cpu_arrays)
    for key, value in cpu_arrays.items():
        assert_close(gpu_arrays[key], value, tol, f"optimizer {key}")


@pytest.fixture(scope="module")
def sgd64():
    """Ten SGD-momentum steps in float64 on each device, shared by several tests:
    ``((cpu_model, cpu_history), (gpu_model, gpu_history))``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "overflow encountered", RuntimeWarning)
        return train("cpu", "sgd", "float64"), train("cuda", "sgd", "float64")


# ------------------------------------------------------------------ training


def check_training(cpu_run, gpu_run, dtype):
    (cpu, cpu_history), (gpu, gpu_history) = cpu_run, gpu_run
    tol = TOLERANCE[dtype]
    assert gpu.device == "cuda" and cpu.device == "cpu"
    np.testing.assert_allclose(gpu_history.iterations, cpu_history.iterations,
                               rtol=tol, atol=tol)
    assert all(isinstance(j, float) for j in gpu_history.iterations)
    for key in ("loss", "accuracy"):
        np.testing.assert_allclose(gpu_history.history[key],
                                   cpu_history.history[key], rtol=tol, atol=tol)
    assert_models_match(gpu, cpu, tol)
    # Everything a step touches lives on the device; Adam's step count on the host.
    assert all(backend.is_device_array(a) for a in arrays_of(gpu))
    for slots in gpu.optimizer.state.values():
        for slot, value in slots.items():
            assert backend.is_device_array(value) == (slot != "step"), slot


def test_ten_sgd_momentum_steps_in_float64_match_the_cpu(sgd64):
    check_training(*sgd64, "float64")


@pytest.mark.parametrize("optimizer, dtype", [
    ("adam", "float32"),
    pytest.param("adam", "float64", marks=pytest.mark.slow),
    pytest.param("sgd", "float32", marks=pytest.mark.slow),
])
def test_ten_training_steps_match_the_cpu(optimizer, dtype):
    check_training(train("cpu", optimizer, dtype), train("cuda", optimizer, dtype),
                   dtype)


def test_train_step_returns_a_float_and_copies_x_and_y_in_once(monkeypatch):
    model = tiny_net("float32", "cuda")
    model.compile(SGD(0.1), "cross_entropy")
    x, y = data()
    copies = []
    move_in = CudaDevice.move_in

    def counting_move_in(self, array):
        if not backend.is_device_array(array):
            copies.append(array.shape)
        return move_in(self, array)

    monkeypatch.setattr(CudaDevice, "move_in", counting_move_in)
    loss = model.train_step(x[:2], y[:2])
    assert type(loss) is float and np.isfinite(loss)
    assert copies == [(2, 1, 5, 5), (2,)]  # x, and the labels for the loss kernel


# ------------------------------------------------------------ optimizers alone


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("make", CONFIGS, ids=lambda f: repr(f()))
def test_optimizers_on_device_arrays_match_the_cpu(make, dtype):
    """Every optimizer configuration (clipping included) on device parameters:
    state created on the device, results as on the CPU (bit for bit on the
    simulator, which has no fused multiply-add; to rounding on a GPU)."""
    rng = np.random.default_rng(1)
    shapes = {"0.weight": (3, 2), "0.bias": (3,)}
    host = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    steps = [{k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
             for _ in range(2)]
    device = {k: cuda.to_device(v) for k, v in host.items()}
    cpu_opt, gpu_opt = make(), make()
    for grads in steps:
        cpu_opt.step([(k, host[k], grads[k]) for k in shapes])
        gpu_opt.step([(k, device[k], cuda.to_device(grads[k])) for k in shapes])
    tol = 0 if SIMULATOR else (1e-12 if dtype == np.float64 else 1e-5)
    for key in shapes:
        assert_close(device[key].copy_to_host(), host[key], tol, key)
    for slots in gpu_opt.state.values():
        assert all(backend.is_device_array(v) == (k != "step")
                   for k, v in slots.items())
    cpu_arrays, cpu_scalars = cpu_opt.get_state()
    gpu_arrays, gpu_scalars = gpu_opt.get_state()
    assert gpu_scalars == cpu_scalars and sorted(gpu_arrays) == sorted(cpu_arrays)
    for key, value in cpu_arrays.items():
        assert_close(gpu_arrays[key], value, tol, key)


# ------------------------------------------------------- NumPy out, state in/out


def test_predict_and_evaluate_return_numpy(sgd64):
    (cpu, _), (gpu, _) = sgd64
    x, y = data()
    out = gpu.predict(x, batch_size=3)
    assert isinstance(out, np.ndarray) and out.shape == (4, 3)
    assert_close(out, cpu.predict(x, batch_size=3), 1e-9)
    got, want = gpu.evaluate(x, y), cpu.evaluate(x, y)
    assert sorted(got) == sorted(want) == ["accuracy", "loss"]
    for key, value in want.items():
        assert type(got[key]) is float
        assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-9)


def test_to_cuda_and_back_moves_every_array_and_keeps_training(monkeypatch):
    x, y = data()
    moved, stayed = tiny_net("float64", "cpu"), tiny_net("float64", "cpu")
    for model in (moved, stayed):
        model.compile(Adam(0.01), "cross_entropy")
        model.train_step(x[:2], y[:2])  # optimizer state exists
    before = moved.state_dict()
    assert moved.to("cuda") is moved and moved.device == "cuda"
    assert all(backend.is_device_array(a) for a in arrays_of(moved))
    assert all(backend.is_device_array(v) for slots in moved.optimizer.state.values()
               for k, v in slots.items() if k != "step")
    assert moved.to("cpu") is moved and moved.device == "cpu"
    assert all(isinstance(a, np.ndarray) for a in arrays_of(moved))
    assert all(isinstance(v, np.ndarray) for slots in moved.optimizer.state.values()
               for v in slots.values())
    after = moved.state_dict()
    assert all(after[k].tobytes() == before[k].tobytes() for k in before)
    # The round trip changed nothing: the next CPU step is bit for bit the same.
    assert moved.train_step(x[2:], y[2:]) == stayed.train_step(x[2:], y[2:])
    for key, value in stayed.state_dict().items():
        assert moved.state_dict()[key].tobytes() == value.tobytes()


def test_save_and_load_a_device_model(sgd64, tmp_path):
    (_, _), (gpu, _) = sgd64
    path = tmp_path / "device.fcnn"
    gpu.save(path)
    state = gpu.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    loaded = fastcnn.load_model(path)
    assert loaded.device == "cpu"  # the default device; move it with .to()
    for key, value in state.items():
        assert loaded.state_dict()[key].tobytes() == value.tobytes()
    arrays, scalars = gpu.optimizer.get_state()
    assert all(isinstance(v, np.ndarray) for v in arrays.values())
    loaded_arrays, loaded_scalars = loaded.optimizer.get_state()
    assert loaded_scalars == scalars
    for key, value in arrays.items():
        assert loaded_arrays[key].tobytes() == value.tobytes()
    # And into a device model: load_state_dict copies into its device arrays.
    target = tiny_net("float64", "cuda")
    target.load_state_dict(state)
    assert all(backend.is_device_array(a) for a in arrays_of(target))
    for key, value in target.state_dict().items():
        assert value.tobytes() == state[key].tobytes()
    x, _ = data()
    assert_close(target.predict(x), loaded.predict(x), 1e-9)


# ----------------------------------------------------------- the device switch


def test_cuda_without_a_gpu_raises_and_auto_falls_back(monkeypatch):
    monkeypatch.setattr(backend, "cuda_available", lambda: False)
    with pytest.raises(RuntimeError, match="device='cuda' was requested but no CUDA "
                                           "GPU is available"):
        tiny_net(device="cuda")
    model = tiny_net(device="auto")
    assert model.device == "cpu"
    assert all(isinstance(a, np.ndarray) for a in arrays_of(model))
    with pytest.raises(RuntimeError, match="no CUDA GPU is available"):
        model.to("cuda")
    assert model.device == "cpu"
    with pytest.raises(ValueError, match="device must be one of"):
        model.to("tpu")


def test_default_device_follows_set_device():
    assert tiny_net().device == fastcnn.get_device() == "cpu"
    fastcnn.set_device("cuda")
    try:
        assert tiny_net().device == "cuda"
        assert tiny_net(device="cpu").device == "cpu"
    finally:
        fastcnn.set_device("cpu")


def test_cli_device_option_trains_on_cuda(monkeypatch, capsys):
    from fastcnn import __main__ as cli

    x, y = data()
    built = []

    def tiny_model(name, input_shape, num_classes):
        built.append(tiny_net("float32", None, classes=num_classes))
        return built[-1]

    monkeypatch.setattr(cli, "_load", lambda *args: ((x.astype(np.float32), y),
                                                     (x.astype(np.float32), y)))
    monkeypatch.setattr(cli, "_build_model", tiny_model)
    try:
        status = cli.main(["train", "--device", "cuda", "--epochs", "1",
                           "--batch-size", "4", "--quiet", "--schedule", "constant"])
    finally:
        fastcnn.set_device("cpu")
    assert status == 0, capsys.readouterr().err
    assert built[0].device == "cuda"
    assert "test accuracy:" in capsys.readouterr().out


def test_cli_device_cuda_without_a_gpu_is_a_clean_error(monkeypatch, capsys):
    from fastcnn import __main__ as cli

    monkeypatch.setattr(backend, "cuda_available", lambda: False)
    assert cli.main(["train", "--device", "cuda"]) == 2
    assert "no CUDA GPU is available" in capsys.readouterr().err
    assert fastcnn.get_device() == "cpu"


# ---------------------------------------------------------------- graph model


def tiny_graph(device):
    """A residual join and a channel concatenation, with the same weights on both
    devices: x -> conv -> relu -+-> concat(., x) -> flatten -> dense."""
    fastcnn.seed(0)
    x = fastcnn.Input((1, 4, 4))
    h = L.ReLU(name="r")(L.Conv2D(1, 3, padding=1, name="c")(x))
    joined = L.Concatenate(name="cat")([L.Add(name="add")([h, x]), x])
    out = L.Dense(3, name="fc")(L.Flatten(name="fl")(joined))
    return fastcnn.Model(x, out, dtype="float64", device=device)


def test_a_graph_model_trains_on_the_device_as_on_the_cpu():
    x, y = data()
    x = x[:, :, :4, :4].copy()
    runs = []
    for device in ("cpu", "cuda"):
        model = tiny_graph(device)
        model.compile(SGD(0.1, momentum=0.9), "cross_entropy")
        history = model.fit(x, y, epochs=2, batch_size=2, seed=3, verbose=0)
        runs.append((model, history))
    (cpu, cpu_history), (gpu, gpu_history) = runs
    np.testing.assert_allclose(gpu_history.iterations, cpu_history.iterations,
                               rtol=1e-9, atol=1e-9)
    assert_models_match(gpu, cpu, 1e-9)
    assert all(backend.is_device_array(a) for a in arrays_of(gpu))
