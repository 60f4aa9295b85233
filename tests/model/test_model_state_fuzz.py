"""Model-file state that reaches the kernels: every array must have its exact shape
and dtype, every scalar passes the constructor's own checks.

The kernels do no bounds checks, so a wrong-sized optimizer slot is written past
(memory corruption or a segfault) and a NaN learning rate turns every weight NaN.
Two layers of tests:

- direct checks of :meth:`Optimizer.set_state` with one hostile value each;
- a fuzz run that mutates every member of saved models (each array's shape, dtype,
  layout and values; each JSON leaf's value) and loads each mutant, then trains a
  step and predicts with it. Every mutant must be refused with a ValueError that
  names the file, or load and train without error; a mutant that breaks an
  array's exact shape or dtype must be refused, and one that changes nothing but
  the layout must load bit for bit. The mutants run in a child process, so a
  crash fails the test (naming the mutant) instead of killing pytest; under
  ``pytest -m boundscheck`` the child inherits ``NUMBA_BOUNDSCHECK=1``.
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

import fastcnn
from fastcnn.layers import BatchNorm2D, Conv2D, Dense, Dropout, Flatten, ReLU
from fastcnn.model import Sequential
from fastcnn.optimizers import SGD, Adam, AdamW, RMSprop

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

OPTIMIZERS = {
    "sgd": lambda: SGD(0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    "adam": lambda: Adam(0.01, amsgrad=True, weight_decay=0.01),
    "rmsprop": lambda: RMSprop(0.01, momentum=0.5, centered=True),
}

#: FASTCNN_FUZZ=long (as for the hypothesis suites) mutates more: every value
#: below at every leaf, the layer configs too, and every array mutation for every
#: model. The default keeps the mutations most likely to break something (about a
#: third of the cases) so that the suite fits in CI.
LONG = os.environ.get("FASTCNN_FUZZ") == "long"

#: JSON values put in place of every leaf of config.json and training_state.json.
HOSTILE_JSON = ([math.nan, math.inf, -math.inf, -1, 0, 1, 0.5, 1.0, 1e308, -1e308,
                 2**31, 2**63, 2**64, 2**200, "1", "", None, True, False, [], {},
                 [0.9, 0.999, 1], {"a": 1}] if LONG else
                [math.nan, -1, 2**64, "1", None, []])


def trained(kind: str) -> Sequential:
    """A model with every kind of state (conv, BatchNorm buffers, Dropout's
    generator, a full optimizer state), after two steps."""
    fastcnn.seed(0)
    model = Sequential([Conv2D(2, 3, padding=1), BatchNorm2D(), ReLU(), Flatten(),
                        Dropout(0.25), Dense(3)], input_shape=(1, 5, 5))
    model.compile(OPTIMIZERS[kind](), "cross_entropy", ["accuracy"])
    x, y = batch()
    model.fit(x, y, epochs=1, batch_size=4, verbose=0, seed=1)
    return model


def batch():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((8, 1, 5, 5)).astype(np.float32)
    return x, np.arange(8) % 3


# --------------------------------------------------------------- set_state itself


def sgd_state():
    params = {"0.weight": np.zeros((3, 2), np.float32), "0.bias": np.zeros(3)}
    arrays = {"0.weight/momentum_buffer": np.ones((3, 2), np.float32),
              "0.bias/momentum_buffer": np.ones(3)}
    return params, arrays


@pytest.mark.parametrize("value, match", [
    (np.ones((), np.float32), r"float array .* got shape \(\)"),
    (np.ones((3, 3), np.float32), r"shape \(3, 3\) and dtype float32 but 0.weight "
                                  r"has shape \(3, 2\)"),
    (np.ones((6,), np.float32), r"shape \(6,\)"),
    (np.ones((3, 2), np.float64), "dtype float64 but 0.weight"),
    (np.ones((3, 2), np.int32), "must be a float array"),
    (np.full((3, 2), np.nan, np.float32), "NaN or infinity"),
    (np.full((3, 2), -np.inf, np.float32), "NaN or infinity"),
    ([[1.0, 1.0]] * 3, "numeric numpy array"),
])
def test_sgd_slots_must_fit_their_parameter(value, match):
    params, arrays = sgd_state()
    arrays["0.weight/momentum_buffer"] = value
    opt = SGD(0.1, momentum=0.9)
    with pytest.raises(ValueError, match=match):
        opt.set_state(arrays, {"iterations": 1}, params=params)
    assert opt.state == {} and opt.iterations == 0  # nothing changed


def test_slots_are_checked_at_the_next_step_without_params():
    params, arrays = sgd_state()
    arrays["0.weight/momentum_buffer"] = np.ones((5,), np.float32)
    opt = SGD(0.1, momentum=0.9)
    opt.set_state(arrays, {"iterations": 1})
    before = params["0.weight"].copy()
    grads = [(k, p, np.ones_like(p)) for k, p in params.items()]
    with pytest.raises(ValueError, match=r"'0.weight/momentum_buffer' has shape "
                                         r"\(5,\)"):
        opt.step(grads)
    assert params["0.weight"].tobytes() == before.tobytes()
    opt.set_state(sgd_state()[1], {"iterations": 1})
    opt.step(grads)  # a good state passes the deferred check


@pytest.mark.parametrize("step", [np.int64(0), np.int64(-3), np.int64(2**53 + 1),
                                  np.int64(2**63 - 1), np.float64(1.0),
                                  np.array([1], np.int64), np.int32(1),
                                  np.uint64(2**64 - 1)], ids=repr)
def test_adam_step_counts(step):
    params = {"0.weight": np.zeros(4)}
    arrays = {"0.weight/step": np.array(step), "0.weight/exp_avg": np.zeros(4),
              "0.weight/exp_avg_sq": np.zeros(4)}
    with pytest.raises(ValueError, match="0.weight/step' must be a 0-d int64 in "
                                         r"\[1, 2\*\*53\]"):
        Adam().set_state(arrays, {"iterations": 1}, params=params)


@pytest.mark.parametrize("make, arrays, match", [
    (Adam, {"0.weight/exp_avg": np.zeros(4)}, "keeps all of"),
    (lambda: Adam(amsgrad=True),
     {"0.weight/step": np.array(1), "0.weight/exp_avg": np.zeros(4),
      "0.weight/exp_avg_sq": np.zeros(4)}, "max_exp_avg_sq"),
    (Adam, {"0.weight/step": np.array(1), "0.weight/exp_avg": np.zeros(4),
            "0.weight/exp_avg_sq": -np.ones(4)}, "negative values"),
    (Adam, {"0.weight/momentum_buffer": np.zeros(4)}, "is not a slot Adam keeps"),
    (lambda: RMSprop(centered=True), {"0.weight/square_avg": np.zeros(4)},
     "grad_avg"),
    (RMSprop, {"0.weight/square_avg": -np.ones(4)}, "negative values"),
    (SGD, {"9.weight/momentum_buffer": np.zeros(4)}, "belongs to no parameter"),
    (SGD, {"0.weight": np.zeros(4)}, "'<param>/<slot>'"),
])
def test_slot_sets(make, arrays, match):
    with pytest.raises(ValueError, match=match):
        make().set_state(arrays, {}, params={"0.weight": np.zeros(4)})


@pytest.mark.parametrize("make, scalars, match", [
    (SGD, {"lr": math.nan}, "lr must be a finite number"),
    (SGD, {"lr": math.inf}, "lr must be a finite number"),
    (SGD, {"lr": -0.1}, "lr must be a finite number"),
    (SGD, {"lr": "fast"}, "lr must be a real number"),
    (SGD, {"lr": True}, "lr must be a real number"),
    (SGD, {"momentum": -1}, "momentum"),
    (lambda: SGD(momentum=0.9, nesterov=True), {"momentum": 0.0}, "nesterov"),
    (Adam, {"betas": [1.0, 0.999]}, r"betas\[0\]"),
    (Adam, {"betas": [0.9, math.nan]}, r"betas\[1\]"),
    (Adam, {"betas": [0.9]}, "betas must be a pair"),
    (Adam, {"betas": 0.9}, "betas must be a pair"),
    (AdamW, {"betas": [-0.1, 0.5]}, r"betas\[0\]"),
    (RMSprop, {"momentum": math.inf}, "momentum"),
    (SGD, {"iterations": -1}, "iterations must be an int"),
    (SGD, {"iterations": 2**60}, "iterations must be an int"),
    (SGD, {"iterations": 1.0}, "iterations must be an int"),
    (SGD, {"iterations": True}, "iterations must be an int"),
    (SGD, {"eps": 1e-3}, "unknown scalars"),
    (SGD, [1], "must be a dict"),
])
def test_scalars_go_through_the_constructors_checks(make, scalars, match):
    opt = make()
    before = dict(vars(opt))
    with pytest.raises(ValueError, match=f"optimizer state: .*{match}"):
        opt.set_state({}, scalars)
    assert vars(opt) == before


def test_valid_scalars_are_restored_as_floats():
    opt = Adam()
    opt.set_state({}, {"iterations": 7, "lr": 1, "betas": [0.5, 0.25]})
    assert opt.iterations == 7 and opt.lr == 1.0 and type(opt.lr) is float
    assert opt.betas == (0.5, 0.25) and opt.initial_lr == 1e-3


# ------------------------------------------------------------------------- fuzz


def _npz(arrays: dict) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _read_npz(blob: bytes) -> dict:
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def _leaves(value, path=()):
    """Every JSON leaf's path (dict keys and list indices); containers too."""
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaves(item, (*path, i))


_DELETE = object()


def _replaced(document, path, value):
    document = json.loads(json.dumps(document))
    if not path:
        return value
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    if value is _DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return document


def _resized(array: np.ndarray, shape) -> np.ndarray:
    size = math.prod(shape)
    flat = np.resize(array.reshape(-1), size) if array.size else np.zeros(size)
    return flat.astype(array.dtype).reshape(shape)


def _array_mutants(key: str, array: np.ndarray):
    """``(what, array or None to delete, expectation)`` for one member array:
    "refuse" (breaks the exact shape or dtype), "same" (a layout change: must load
    bit for bit) or "either" (refused, or loaded and trained)."""
    shape = array.shape
    is_step = key.endswith("/step")
    shapes = {(), (1,), (*shape, 1), (array.size + 1,), (max(array.size - 1, 0),),
              shape[::-1]}
    if LONG:
        shapes |= {(1, *shape), shape[:-1], (0,), (array.size,), (array.size, 0)}
    for new in sorted(shapes - {shape}, key=str):
        yield f"shape {new}", _resized(array, new), "refuse"
    # Huge: a real 16 MiB array where a few elements belong.
    yield "huge", np.zeros((1 << 22,), array.dtype), "refuse"
    dtypes = ["<f4", "<f8", ">f4", ">f8", "<i8"]
    if LONG:
        dtypes += ["<f2", "<i4", "<u8", "|u1", "|b1"]
    for dtype in dtypes:
        if np.dtype(dtype) != array.dtype:
            yield f"dtype {dtype}", array.astype(dtype), "refuse"
    if array.ndim >= 2:
        yield "fortran order", np.asfortranarray(array), "same"
    if is_step:
        for value in (0, -1, 2**53 + 1, 2**63 - 1):
            yield f"step {value}", np.array(value, np.int64), "refuse"
        yield "step 1", np.array(1, np.int64), "either"
        return
    optimizer = "/" in key
    for what, value in (("nan", np.nan), ("inf", np.inf), ("-inf", -np.inf))[
            : 3 if LONG else 1]:
        poisoned = array.copy()
        poisoned.reshape(-1)[0] = value
        # Weights are loaded as they are (SECURITY.md: the numbers are not trusted);
        # optimizer state feeds the update of every step and must be finite.
        yield what, poisoned, "refuse" if optimizer else "either"
    yield "negative", -np.abs(array) - 1, "either"
    if LONG:
        yield "1e38", np.full_like(array, 1e38), "either"
    yield "deleted", None, "either" if optimizer else "refuse"


def mutants(blob: bytes, whole: bool):
    """Every mutant of the model file ``blob``: ``(name, members, expectation)``.
    Only with ``whole`` (or FASTCNN_FUZZ=long) the parts that do not depend on the
    optimizer: weights.npz, the Dropout generator, the loss and the layers."""
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    for member in ("weights.npz", "optimizer.npz")[0 if whole or LONG else 1:]:
        arrays = _read_npz(members[member])
        for key, array in arrays.items():
            for what, value, expect in _array_mutants(key, array):
                changed = dict(arrays)
                if value is None:
                    del changed[key]
                else:
                    changed[key] = value
                yield (f"{member} {key} {what}",
                       {**members, member: _npz(changed)}, expect)
        first = next(iter(arrays))
        for extra in ("9.weight", f"{first}.extra", "0.weight/bogus",
                      "9.weight/momentum_buffer", f"{first}/step"):
            if extra in arrays:
                continue
            changed = {**arrays, extra: np.zeros(3, np.float32)}
            yield (f"{member} extra {extra}",
                   {**members, member: _npz(changed)}, "refuse")
    for member in ("training_state.json", "config.json"):
        document = json.loads(members[member])
        for path in _leaves(document):
            if not (LONG or _mutated_by_default(member, path, whole)):
                continue
            for value in [*HOSTILE_JSON, _DELETE] if path else HOSTILE_JSON:
                text = json.dumps(_replaced(document, path, value))
                shown = "<deleted>" if value is _DELETE else f"{value!r:.40}"
                yield (f"{member} {list(path)} = {shown}",
                       {**members, member: text.encode()}, "either")


def _mutated_by_default(member: str, path: tuple, whole: bool) -> bool:
    """The JSON leaves the default run mutates: the optimizer's (config and state)
    for every model; the rest of the training state and of the compile settings
    only with ``whole``; the layer configs (tests/io/test_hostile_files.py's subject)
    only in the long run."""
    if member == "training_state.json":
        return whole or path[:1] in ((), ("optimizer",))
    if path[:1] != ("compile",):
        return not path  # the whole document replaced
    return whole or path[:2] == ("compile", "optimizer")


def _zip(members: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _fingerprint(model: Sequential) -> tuple:
    arrays, scalars = model.optimizer.get_state()
    return (tuple((k, v.dtype.str, v.tobytes()) for k, v in model.state_dict().items()),
            tuple(sorted((k, v.tobytes()) for k, v in arrays.items())),
            json.dumps(scalars, sort_keys=True), model.epoch, model.fit_seed)


def run_mutants(kind: str, workdir: str) -> dict:
    """The child's work: load every mutant of ``kind``'s model file, train a step and
    predict with the ones that load. Prints ``CASE <name>`` before each (flushed),
    so a crash names its mutant; returns the tally (or raises AssertionError)."""
    from fastcnn.saving import load_model

    model = trained(kind)
    path = os.path.join(workdir, f"{kind}.zip")
    model.save(path)
    with open(path, "rb") as file:
        good = file.read()
    reference = _fingerprint(load_model(path))
    x, y = batch()
    tally = {"refused": 0, "loaded": 0, "same": 0}
    problems = []
    target = os.path.join(workdir, "mutant.zip")
    for name, members, expect in mutants(good, whole=kind == "sgd"):
        print(f"CASE {kind}: {name}", flush=True)
        with open(target, "wb") as file:
            file.write(_zip(members))
        try:
            loaded = load_model(target)
        except ValueError as error:
            if repr(target) not in str(error):
                problems.append(f"{name}: the error does not name the file: {error}")
            tally["refused"] += 1
            continue
        except Exception as error:  # noqa: BLE001 - reported as a problem
            problems.append(f"{name}: {type(error).__name__} from load_model: "
                            f"{error}")
            continue
        tally["loaded"] += 1
        if expect == "refuse":
            problems.append(f"{name}: loaded, but it breaks an exact shape/dtype")
            continue
        if expect == "same":
            if _fingerprint(loaded) != reference:
                problems.append(f"{name}: loaded, but not bit for bit")
            tally["same"] += 1
        try:
            if loaded.optimizer is not None:
                loaded.train_step(x, y)
            loaded.predict(x)
        except Exception as error:  # noqa: BLE001 - reported as a problem
            problems.append(f"{name}: loaded, then {type(error).__name__} in "
                            f"training: {error}")
    print("PROBLEMS " + json.dumps(problems), flush=True)
    print("TALLY " + json.dumps(tally), flush=True)
    return tally


CHILD = textwrap.dedent("""
    import sys
    from tests.model.test_model_state_fuzz import run_mutants
    run_mutants(sys.argv[1], sys.argv[2])
""")


def run_child(kind: str, workdir) -> tuple[dict, list]:
    """Run :func:`run_mutants` in a child process; a crash or a hang fails here,
    naming the last mutant started."""
    done = subprocess.run([sys.executable, "-c", CHILD, kind, str(workdir)],
                          cwd=ROOT, capture_output=True, text=True, timeout=1800)
    lines = done.stdout.splitlines()
    cases = [line for line in lines if line.startswith("CASE ")]
    last = cases[-1] if cases else "(none started)"
    assert done.returncode == 0, (
        f"the child died with status {done.returncode} in {last!r}:\n"
        f"{done.stderr[-3000:]}")
    tally = json.loads(next(line for line in lines if line.startswith("TALLY "))[6:])
    problems = json.loads(
        next(line for line in lines if line.startswith("PROBLEMS "))[9:])
    tally["cases"] = len(cases)
    return tally, problems


@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_every_mutant_of_a_model_file_is_refused_or_loads_cleanly(kind, tmp_path):
    tally, problems = run_child(kind, tmp_path)
    assert problems == [], "\n".join(problems[:40])
    assert tally["cases"] > 150 and tally["refused"] > 100, tally
    assert tally["same"] >= 2, tally  # the Fortran-ordered arrays loaded


def test_a_crash_in_the_child_fails_the_test_naming_the_mutant(tmp_path,
                                                               monkeypatch):
    """The harness itself: a child that dies (here by SIGABRT mid-case) is a test
    failure naming the case, not a dead pytest."""
    crash = textwrap.dedent("""
        import os
        print("CASE demo: optimizer.npz 0.weight/momentum_buffer shape ()",
              flush=True)
        os.abort()
    """)
    monkeypatch.setattr(sys.modules[__name__], "CHILD", crash)
    with pytest.raises(AssertionError, match=r"died with status -6 in 'CASE demo: "
                                             r"optimizer.npz"):
        run_child("sgd", tmp_path)


def test_a_custom_optimizer_keeps_its_own_slots_and_scalars():
    """A subclass that does not declare its slots may keep any, 0-d scalars
    included; arrays are still checked against their parameters."""

    class Counting(SGD):
        def update(self, param, grad, state):
            state["count"] = state.get("count", np.zeros((), np.int64)) + 1
            state["last"] = grad.copy()
            param -= self.lr * grad

        def slots(self):
            return None

    params = {"0.weight": np.ones(3)}
    opt = Counting(0.1)
    opt.step([("0.weight", params["0.weight"], np.ones(3))])
    arrays, scalars = opt.get_state()
    restored = Counting(0.1)
    restored.set_state(arrays, scalars, params=params)
    assert int(restored.state["0.weight"]["count"]) == 1
    arrays["0.weight/last"] = np.ones(4)
    with pytest.raises(ValueError, match=r"'0.weight/last' has shape \(4,\)"):
        restored.set_state(arrays, scalars, params=params)
