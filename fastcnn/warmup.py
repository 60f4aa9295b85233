"""Compile a model's kernels ahead of time, with progress, on every core.

Numba compiles each kernel on its first call (and caches it on disk). A fresh
machine therefore pays tens of seconds on the first training step; ``warmup`` moves
that cost to a moment of the user's choosing, shows which layer is compiling, and
spreads the compiling over worker processes: Numba compiles one function at a time
in a process (under a global lock), but separate processes compile in parallel and
share the results through the on-disk cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

#: Rough compile seconds of a layer type on a cold cache (Conv2D and Dense are
#: counted kernel by kernel, in :data:`_KERNEL_COST`); a type not listed, like
#: an activation, about half a second.
_COMPILE_COST = {"DepthwiseConv2D": 4.0, "SeparableConv2D": 10.0,
                 "BatchNorm2D": 2.2, "BatchNorm1D": 3.0,
                 "LayerNorm": 1.5, "GroupNorm": 2.0, "LayerNorm2D": 4.0,
                 "MaxPool2D": 2.0, "AvgPool2D": 1.0, "GlobalAvgPool2D": 2.3,
                 "AdaptiveAvgPool2D": 2.0,
                 "Dropout": 0.5, "SpatialDropout2D": 1.0, "Multiply": 2.0,
                 "ZeroPadding2D": 1.0, "Scale": 1.5, "Flatten": 0.0}
_LOSS_COST = 1.1

#: Compile seconds of the kernels that layers share: what the schedule of
#: :func:`_split` simulates. Measured cold with two processes compiling at once on
#: two cores (AMD EPYC, float32; each about 1.25x its time alone). A convolution's
#: kernels are named by ``kernels.cpu._conv_plan.kernel_plan``, so two convolutions
#: that run the same kernel are known to share it. The two "depthwise_rows" kernels
#: were measured alone in one process (5.1 s and 3.2 s), times 1.25; the strided
#: depthwise input gradient ("depthwise_phases") 5.3 s alone. The kernels LeNet-5
#: runs (the three rows kernels, dense, the optimizer; MaxPool2D and the loss
#: above) were measured again on 2026-12-07, after their loop bodies became
#: tasks (``kernels/cpu/_tasks.py``), in its cold warmup on two processes, each
#: with the helpers it compiled first (Numba's compile events; the helpers they
#: share are kernels of their own here, :data:`_SHARED_HELPERS`); Winograd's, the
#: bias gradient, BatchNorm2D, GlobalAvgPool2D and Dropout the same way in
#: ``python -m fastcnn train``'s (simple_cnn on 8x8 digits).
_KERNEL_COST = {"conv2d/forward:rows": 1.8,
                "conv2d/helpers:row-products": 2.0, "conv2d/helpers:band-rows": 1.1,
                "conv2d/forward:shifted": 2.7,
                "conv2d/forward:im2col": 3.1, "conv2d/forward:depthwise": 2.5,
                "conv2d/forward:depthwise_rows": 6.4,
                "conv2d/weight:depthwise_rows": 4.0,
                "conv2d/winograd": 6.3, "conv2d/input:direct": 6.3,
                "conv2d/input:rows": 2.2,
                "conv2d/input:depthwise": 2.5,
                "conv2d/input:depthwise_phases": 5.0, "conv2d/weight:direct": 5.0,
                "conv2d/weight:rows": 4.0, "helpers:dots": 0.3,
                "conv2d/weight:gemm": 3.7, "conv2d/weight:winograd": 8.0,
                "conv2d/weight:depthwise": 2.5, "conv2d/bias": 1.2,
                "dense/forward": 0.65, "dense/helpers:gemm": 1.4, "dense/input": 0.7,
                "dense/weight": 0.85, "optimizer": 0.7}

#: Seconds to load a kernel that another process has already put in the cache.
_LOAD_COST = 0.1

#: How much earlier than needed the schedule wants a kernel in the cache before it
#: counts on loading it: the estimates are off by a second either way from run to
#: run, and a process that needs a kernel a moment before the other has cached it
#: compiles it again (LeNet-5's shared product helpers, 2.5 s twice, when the
#: simulation had them cached 0.1 s before they were needed).
_CACHE_MARGIN = 1.5

#: What a process's first compile costs on top (LLVM and Numba setting up).
_START_COST = 1.8

#: What a worker process costs before that: starting Python and importing
#: fastcnn (measured: its first compile begins about 1 s after this process's).
_SPAWN_COST = 1.0


def warmup(model, batch_size: int = 2, loss: str | None = None,
           verbose: bool = True, workers: int | None = None) -> float:
    """Compile every kernel ``model`` needs for training and inference.

    Runs, on zeros of the model's input shape and dtype, what a training step
    runs (forward, backward, an optimizer step on copies of the parameters, the
    loss) and the evaluation-mode forward, on a *copy* of the model. The model
    itself, its optimizer state and NumPy's global RNG are left untouched.

    With a writable kernel cache, the layers are shared out between this process
    and ``workers - 1`` worker processes that compile at the same time (Numba
    compiles one function at a time per process); this process then loads what
    they compiled from the cache.

    Parameters
    ----------
    model : fastcnn.Sequential
        A built model (``input_shape`` given or inferred).
    batch_size : int
        Rows of the dummy batch. Kernels compile per dtype and layout, but which
        kernel a convolution runs can depend on the batch size: give the one you
        will train with.
    loss : str, optional
        A loss name to compile too; default the compiled model's loss, or
        ``"cross_entropy"`` for an uncompiled model with a 1-D output.
    verbose : bool
        Print one progress line per layer to stderr.
    workers : int, optional
        Processes that compile, this one included; default the number of CPUs
        this process may use. 1 compiles in this process only.

    Returns
    -------
    float
        Seconds spent.

    Shape: dummy x (batch_size, *model.input_shape).
    """
    from . import losses, optimizers
    from .network import Network

    if not isinstance(model, Network):
        raise TypeError(f"warmup: model must be a fastcnn.Sequential or Model, got "
                        f"{type(model).__name__}.")
    if not model.built:
        raise ValueError("warmup: the model is not built; give it an input_shape or "
                         "call it on data first.")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) \
            or batch_size < 1:
        raise ValueError(f"warmup: batch_size must be a positive int, got "
                         f"{batch_size!r}.")
    if workers is not None and (not isinstance(workers, int)
                                or isinstance(workers, bool) or workers < 1):
        raise ValueError(f"warmup: workers must be a positive int or None, got "
                         f"{workers!r}.")
    start = time.perf_counter()
    state = np.random.get_state()
    try:
        # The config comes from a live model, not a file: no size limit.
        twin = type(model).from_config(model.get_config(), max_params=None)
        twin.load_state_dict(model.state_dict())
        # from_config builds on the default device; compile where the model runs.
        twin.to(getattr(model, "device", "cpu"))
    finally:
        np.random.set_state(state)
    count = len(twin.layers)
    chosen = loss if loss is not None else (model.loss or (
        "cross_entropy" if len(twin.output_shape) == 1 else None))
    loss_fn = losses.get(chosen) if chosen is not None else None
    optimizer = (optimizers.from_config(_entry(model.optimizer))
                 if model.optimizer is not None else None)

    def report(step: str, index: int, layer) -> None:
        if verbose:
            elapsed = time.perf_counter() - start
            print(f"\rwarmup: {step} {index + 1}/{count} {layer.name:<20s} "
                  f"{elapsed:6.1f} s", end="", file=sys.stderr, flush=True)

    processes = _default_workers() if workers is None else workers
    if processes > 1 and getattr(model, "device", "cpu") == "cpu" and _cache_shared():
        job = _job(twin, batch_size, optimizer, loss_fn)
        if verbose:
            print(f"\rwarmup: compiling in {processes} processes", end="",
                  file=sys.stderr, flush=True)
        _compile_in_parallel(job, processes, verbose)

    x = np.zeros((batch_size, *twin.input_shape), dtype=twin.dtype)
    if getattr(twin, "inbound", None) is None:  # a Sequential: layer by layer
        out = x
        for i, layer in enumerate(twin.layers):
            report("forward ", i, layer)
            if _applied_before(twin.layers, i):
                out = layer.adopt_clamped(out)  # as the model runs it
                continue
            layer.forward(out, training=False)
            out = layer.forward(out, training=True)
        dy = np.ones_like(out)
        for i in range(count - 1, -1, -1):
            report("backward", i, twin.layers[i])
            # The first layer as training runs it: no gradient of the images.
            dy = twin.layers[i].backward(dy, input_grad=i > 0)
    else:
        report("forward ", count - 1, twin.layers[-1])
        twin.forward(x, training=False)
        out = twin.forward(x, training=True)
        report("backward", 0, twin.layers[0])
        twin.backward(np.ones_like(out), input_grad=False)
    if optimizer is not None:
        optimizer.step(twin._named_grads())
    if loss_fn is not None:
        target = loss_fn.prepare_target(np.zeros((batch_size, *out.shape[2:]), np.int64)
                                        if isinstance(loss_fn, losses.CrossEntropy)
                                        else np.zeros_like(out), out)
        loss_fn.forward(out, target)
        loss_fn.backward(out, target)
    seconds = time.perf_counter() - start
    if verbose:
        print(f"\rwarmup: compiled {count} layers in {seconds:.1f} s" + " " * 30,
              file=sys.stderr, flush=True)
    return seconds


def _entry(obj) -> dict:
    """``{"class_name": ..., "config": ...}`` of an optimizer or a loss."""
    return {"class_name": type(obj).__name__, "config": obj.get_config()}


def _default_workers() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _cache_shared() -> bool:
    """Whether the CPU kernels have an on-disk cache, through which worker
    processes can hand over what they compile (not with ``FASTCNN_CACHE=0`` or a
    read-only install)."""
    from .kernels.cpu import conv

    return type(conv.conv2d_backward_bias._cache).__name__ != "NullCache"


def _job(twin, batch_size: int, optimizer, loss_fn) -> dict:
    """The whole warm-up as one job of :mod:`fastcnn._warmup_worker`, every layer
    once (layers of the same configuration and input shape run the same
    kernels)."""
    from .layers import BUILTIN_LAYERS

    config = twin.get_config()["layers"]
    inbound = getattr(twin, "inbound", None)
    specs, seen = [], set()
    for i, layer in enumerate(twin.layers):
        entry = {k: v for k, v in config[i].items() if k not in ("key", "inbound")}
        if entry["class_name"] not in BUILTIN_LAYERS or layer.takes_many:
            # A custom layer (a worker process does not know its class), or a
            # merge layer (cheap to compile, and not a one-input layer).
            continue
        # The model's input needs no gradient: a layer reading only it skips dx.
        input_grad = i > 0 if inbound is None else any(k > 0 for k in inbound[i])
        spec = {"entry": entry, "input_shape": list(layer.input_shape),
                "input_grad": input_grad,
                "adopt": inbound is None and _applied_before(twin.layers, i)}
        key = json.dumps([entry["class_name"],
                          {k: v for k, v in entry["config"].items() if k != "name"},
                          spec["input_shape"], spec["input_grad"], spec["adopt"]],
                         sort_keys=True)
        if key not in seen:
            seen.add(key)
            spec["kernels"] = _kernels_of(layer, entry, batch_size, input_grad)
            if spec["adopt"]:
                spec["kernels"] = [spec["kernels"][0] + "/backward"]
            for part in _conv_parts(layer, entry, spec):
                part["kernels"] = _with_shared_helpers(part["kernels"])
                specs.append(part)
    return {"dtype": twin.dtype.name, "batch_size": batch_size, "layers": specs,
            "optimizer": _entry(optimizer) if optimizer is not None else None,
            "loss": _entry(loss_fn) if loss_fn is not None else None,
            "output_shape": list(twin.output_shape)}


def _conv_parts(layer, entry: dict, spec: dict) -> list[dict]:
    """A plain Conv2D's spec cut into parts that a process runs on its own
    (``"part"`` in the worker): the forward, the parameter gradients with the
    optimizer step, and the input gradient. So the schedule can give one
    convolution's weight gradient, or the second's input gradient, to the
    other process: as whole layers, LeNet-5's first convolution alone was most
    of one process's compiling; and the second process reached the second
    convolution before the first had put the kernels they share in the cache,
    and compiled them again (5 s more on 2 cores). An input gradient that runs
    forward kernels (Winograd, 1x1, depthwise) is run by the forward's part
    (``"forward+input"``). Other layers: ``[spec]``."""
    if (entry["class_name"] != "Conv2D" or getattr(layer, "_geo", None) is None
            or entry["config"].get("activation") not in (None, "linear")):
        return [spec]
    kernels = spec["kernels"]
    inputs = [k for k in kernels if k.startswith("conv2d/input:")]
    weights = [k for k in kernels if k.startswith("conv2d/weight:")
               or k in ("conv2d/bias", "optimizer")]
    forwards = [k for k in kernels if k not in inputs and k not in weights]
    forward_part = "forward+input" if spec["input_grad"] and not inputs else "forward"
    parts = [{**spec, "part": part, "kernels": chosen}
             for part, chosen in ((forward_part, forwards), ("weight", weights),
                                  ("input", inputs)) if chosen]
    return parts if len(parts) > 1 else [spec]


def _applied_before(layers, i: int) -> bool:
    """Whether a Sequential applies ``layers[i]`` (a ReLU or ReLU6) in the kernel
    of the layer before it (``model._fusable_clamp``): its forward then runs no
    kernel of its own, only its backward does, so warming it up alone would
    compile a kernel that training never runs."""
    from .model import _fusable_clamp

    return i > 0 and _fusable_clamp(layers[i - 1], layers[i]) is not None


def _kernels_of(layer, entry: dict, batch_size: int, input_grad: bool) -> list[str]:
    """Names of the kernels (or kernel families) running ``layer`` compiles, in the
    order it compiles them: what :func:`_split` shares out. Layers of one name
    share those kernels (same dtype, one model)."""
    from .kernels.cpu._conv_plan import kernel_plan

    name = entry["class_name"]
    config = entry["config"]
    if name == "Conv2D":
        weight = layer.params["weight"].shape
        kernels = ["conv2d/" + k for k in kernel_plan(
            (batch_size, *layer.input_shape), weight, (batch_size, *layer.output_shape),
            layer.stride, layer.dilation, layer.groups, input_grad)]
        if not layer.use_bias and "conv2d/bias" in kernels:
            kernels.remove("conv2d/bias")
    elif name == "Dense":
        # The weight gradient's kernel sums the bias gradient too.
        kernels = ["dense/forward", *(["dense/input"] if input_grad else []),
                   "dense/weight"]
    else:
        settings = {k: v for k, v in config.items() if k != "name"}
        kernels = [name + "/" + json.dumps(settings, sort_keys=True)]
    if config.get("activation") not in (None, "linear"):
        kernels.append("activation/" + str(config["activation"]))
    if layer.params and layer.trainable:
        kernels.append("optimizer")
    return kernels


#: Helpers that several convolution kernels call, compiled once per process by
#: whichever runs first (their seconds are not in :data:`_KERNEL_COST`): the
#: schedule then sees that, say, the rows input gradient compiles faster where
#: the rows forward ran before it.
_SHARED_HELPERS = {
    "conv2d/forward:rows": ("conv2d/helpers:band-rows", "conv2d/helpers:row-products"),
    "conv2d/weight:rows": ("conv2d/helpers:band-rows", "helpers:dots"),
    "conv2d/input:rows": ("conv2d/helpers:row-products",),
    "dense/forward": ("helpers:dots",),
    "dense/input": ("dense/helpers:gemm",),
    "dense/weight": ("dense/helpers:gemm",),
}


def _with_shared_helpers(kernels: list[str]) -> list[str]:
    """``kernels`` with the shared helpers (:data:`_SHARED_HELPERS`) each first
    needs named before it."""
    out: list[str] = []
    for kernel in kernels:
        out.extend(h for h in _SHARED_HELPERS.get(kernel, ()) if h not in out)
        out.append(kernel)
    return out


def _kernel_cost(kernel: str) -> float:
    """Estimated compile seconds of a name :func:`_kernels_of` gives."""
    if kernel in _KERNEL_COST:
        return _KERNEL_COST[kernel]
    return _COMPILE_COST.get(kernel.split("/", 1)[0], 0.55)


def _split(job: dict, parts: int) -> list[dict]:
    """``job`` shared out into at most ``parts`` jobs that finish at about the same
    time, without two compiling one kernel where that can be helped.

    A list schedule, simulated with the kernels' estimated compile seconds
    (:func:`_schedule`), tried with each layer as the first one this process
    compiles; the one that finishes first is kept. For LeNet-5 that starts one
    process on the first convolution, whose kernels the second then finds in the
    cache, so it compiles only the input gradient.
    """
    best = None
    for first in [None, *range(len(job["layers"]))]:
        makespan, order = _schedule(job["layers"], parts, first)
        if best is None or makespan < best[0] - 1e-9:
            best = (makespan, order)
    orders, loss_part, compiles = best[1]
    # A layer that compiles no kernel first would only load them here, or,
    # where the process compiling them runs late, compile them a second time:
    # left out (the calling process runs every layer at the end, loading all).
    shares = [{**job, "layers": [job["layers"][k] for k in order if k in compiles],
               "loss": job["loss"] if part == loss_part else None}
              for part, order in enumerate(orders)]
    return [share for share in shares if share["layers"] or share["loss"]]


def _schedule(specs: list[dict], parts: int, first: int | None):
    """Simulate a list schedule of ``specs`` on ``parts`` processes: the process
    that is free first takes the layer that would compile least of what another
    process is compiling at that moment (a kernel already in the cache only
    loads), and among those the longest. With ``first``, process 0 starts with
    that layer. Returns (seconds until all finish, ([layer indices per process],
    the process that runs the loss, the layers that compile a kernel
    first))."""
    clocks = [_START_COST] + [_START_COST + _SPAWN_COST] * (parts - 1)
    known = [set() for _ in range(parts)]  # kernels each process has compiled/loaded
    cached: dict[str, float] = {}  # kernel -> when some process has it in the cache
    compiles: set[int] = set()
    orders: list[list[int]] = [[] for _ in range(parts)]

    def run(spec, part, commit=False, index=None):
        """(seconds of duplicated compiling, seconds) of ``spec`` on ``part``."""
        clock, duplicated = clocks[part], 0.0
        for kernel in spec["kernels"]:
            if kernel in known[part]:
                continue
            ready = cached.get(kernel)
            if ready is not None and ready + _CACHE_MARGIN <= clock:
                clock += _LOAD_COST
            else:
                cost = _kernel_cost(kernel)
                duplicated += cost if ready is not None else 0.0
                clock += cost
                if commit and ready is None:
                    cached[kernel] = clock
                    compiles.add(index)
            if commit:
                known[part].add(kernel)
        return duplicated, clock - clocks[part]

    remaining = list(range(len(specs)))
    while remaining:
        part = clocks.index(min(clocks))
        if first is not None and not orders[0]:
            part, pick = 0, first
        else:
            def rank(k, part=part):
                duplicated, seconds = run(specs[k], part)
                return duplicated, -seconds

            pick = min(remaining, key=rank)
        remaining.remove(pick)
        clocks[part] += run(specs[pick], part, commit=True, index=pick)[1]
        orders[part].append(pick)
    loss_part = clocks.index(min(clocks))
    clocks[loss_part] += _LOSS_COST
    return max(clocks), (orders, loss_part, compiles)


def _compile_in_parallel(job: dict, processes: int, verbose: bool) -> None:
    """Run the shares of ``job``: all but the first in worker processes, the first
    here, at the same time; then wait for the workers. A worker that fails costs
    only time: whatever it did not compile, the caller compiles itself."""
    from ._warmup_worker import run_job

    shares = _split(job, processes)
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "NUMBA_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(
               [package_root, *filter(None, [os.environ.get("PYTHONPATH")])])}
    started = []
    for share in shares[1:]:
        # stderr to a file, not a pipe: a chatty worker must not block on a full
        # pipe while this process compiles its own share.
        log = tempfile.TemporaryFile(mode="w+")
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "fastcnn._warmup_worker"],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log,
                env=env, text=True)
            proc.stdin.write(json.dumps(share))
            proc.stdin.close()
            started.append((proc, log))
        except OSError as error:
            log.close()
            if verbose:
                print(f"\nwarmup: could not start a compile worker ({error}); "
                      f"compiling here instead", file=sys.stderr)
    if shares:
        run_job(shares[0])
    for proc, log in started:
        failed = proc.wait() != 0
        log.seek(0)
        lines = log.read().strip().splitlines()
        log.close()
        if failed and verbose:
            print(f"\nwarmup: a compile worker failed, so its kernels compile here "
                  f"instead: {lines[-1] if lines else ''}", file=sys.stderr)
