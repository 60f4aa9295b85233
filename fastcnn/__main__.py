"""The command line: ``python -m fastcnn {train,evaluate,predict,summary}``.

``python -m fastcnn train`` with no arguments trains a small batch-normalised CNN on
the 8x8 digits that ship with scikit-learn, offline. Errors in options or data print
one line that says what to do and exit with status 2; no traceback. Every option is
checked (:mod:`fastcnn._cli_checks`) before a dataset is read or a step is trained.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time

import numpy as np

from . import _cli_checks as checks
from ._cli_checks import DATASET_SHAPES, NUM_CLASSES, CLIError

__all__ = ["CLIError", "main", "parser"]

DATASETS = tuple(DATASET_SHAPES)
#: Epochs when --epochs is not given: enough for the accuracy the README promises.
DEFAULT_EPOCHS = {"digits": 15, "mnist": 6, "fashion-mnist": 10, "cifar10": 10}
#: Models when --model is not given: LeNet-5 overfits the 1,438 digits images (about
#: 96-98% test accuracy across seeds); the batch-normalised simple_cnn holds 98-99%.
DEFAULT_MODEL = {"digits": "simple_cnn", "mnist": "lenet5", "fashion-mnist": "lenet5",
                 "cifar10": "simple_cnn"}
#: Learning rates when --lr is not given (SGD also gets momentum 0.9).
DEFAULT_LR = {"sgd": 0.05, "adam": 3e-3, "adamw": 3e-3, "rmsprop": 1e-3}
#: How the dataset loaders say that a folder holds the other dataset (MNIST and
#: Fashion-MNIST share file names); the CLI then stops there instead of downloading.
_OTHER_DATASET = re.compile(r"holds [\w-]+ instead")


def _load(dataset: str, data_dir: str | None, download: bool):
    from . import datasets

    try:
        if dataset == "digits":
            return datasets.load_digits()
        loader = {"mnist": datasets.load_mnist,
                  "fashion-mnist": datasets.load_fashion_mnist,
                  "cifar10": datasets.load_cifar10}[dataset]
        try:
            # Look without downloading first: a folder holding the other dataset
            # gets the loader's own message rather than a silent download.
            return loader(path=data_dir, download=False)
        except (FileNotFoundError, ValueError) as error:
            if not download or _OTHER_DATASET.search(str(error)):
                raise
        return loader(path=data_dir, download=True)
    except ImportError as error:
        raise CLIError(f"{error}") from None
    except (FileNotFoundError, OSError, ValueError) as error:
        raise CLIError(
            f"could not load {dataset}: {error} (pass --data-dir DIR holding the "
            f"dataset's files, or set FASTCNN_DATA)"
        ) from None


def _normalised(train, test):
    """Standardise both splits with the training set's per-channel statistics."""
    from .datasets import channel_stats, normalize

    mean, std = channel_stats(train[0])
    return ((normalize(train[0], mean, std), train[1]),
            (normalize(test[0], mean, std), test[1]))


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive ints such as 1,28,28, got {text!r}"
        ) from None
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return shape


def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            message = f"expected a number, got {text!r}"
            raise argparse.ArgumentTypeError(message) from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
        return value

    return parse


def _set_device(device: str) -> None:
    from .backend import set_device

    try:
        set_device(device)
    except (RuntimeError, ValueError) as error:
        raise CLIError(str(error)) from None


def _build_model(name: str, input_shape, num_classes: int):
    from . import models

    try:
        return models.get(name)(input_shape=input_shape, num_classes=num_classes)
    except ValueError as error:
        raise CLIError(str(error)) from None


def _schedule_callbacks(name: str, lr: float, epochs: int, steps_per_epoch: int):
    """The learning-rate policy: one-cycle (torch's OneCycleLR) per batch by default,
    which reaches a given accuracy in fewer epochs than a constant rate."""
    from .callbacks import LearningRateScheduler
    from .schedules import CosineWithWarmup, OneCycle

    total = epochs * steps_per_epoch
    if name == "onecycle":
        return [LearningRateScheduler(OneCycle(lr, total_steps=total), per="batch")]
    if name == "cosine":
        warmup = min(steps_per_epoch, total // 10)
        return [LearningRateScheduler(CosineWithWarmup(warmup, total), per="batch")]
    return []


def _mpi_world(distributed: bool) -> tuple[int, bool]:
    """``(number of ranks, whether this is rank 0)``: (1, True) unless distributed."""
    if not distributed:
        return 1, True
    from .distributed import import_mpi

    try:
        world = import_mpi().COMM_WORLD
    except ImportError as error:
        raise CLIError(str(error)) from None
    return world.Get_size(), world.Get_rank() == 0


def _silent(*args, **kwargs) -> None:
    """print() for ranks other than 0 of a distributed run."""


def _check_train_options(args) -> None:
    """Everything about ``train``'s options that can fail, before any data or
    training: the files it will write at the end, and what writing them needs."""
    if args.distributed and args.device != "cpu":
        raise CLIError("--distributed trains on the CPU only for now; drop --device")
    if args.save:
        checks.writable_file("--save", args.save)
    if args.plot:
        checks.plot_target(args.plot)


def cmd_train(args) -> int:
    from . import optimizers, plot, seed, warmup

    _check_train_options(args)
    _set_device(args.device)
    world, root = _mpi_world(args.distributed)
    say = print if root else _silent
    seed(args.seed)
    train, test = _normalised(*_load(args.dataset, args.data_dir, not args.offline))
    n_train, n_val = checks.split_sizes(train[0].shape[0], args.validation_split)
    model_name = args.model or DEFAULT_MODEL[args.dataset]
    model = _build_model(model_name, train[0].shape[1:], NUM_CLASSES)
    opt_cls = {name.lower(): cls for name, cls in optimizers.OPTIMIZERS.items()}
    lr = args.lr or DEFAULT_LR[args.optimizer]
    extra = {"momentum": 0.9} if args.optimizer == "sgd" else {}
    model.compile(optimizer=opt_cls[args.optimizer](lr=lr, **extra),
                  loss="cross_entropy", metrics=["accuracy"])
    epochs = args.epochs or DEFAULT_EPOCHS[args.dataset]
    ranks = f" on each of {world} ranks" if args.distributed else ""
    held = f" ({n_val} held out for validation)" if n_val else ""
    say(f"training {model_name} on {args.dataset}: {n_train} images{held}, "
        f"{epochs} epochs, batch {args.batch_size}{ranks}, {args.optimizer} lr={lr} "
        f"({args.schedule})")
    start = time.perf_counter()
    if not args.quiet:
        # Compile first, with progress, rather than stall inside the first batch.
        # One process per rank in a distributed run: no compile workers.
        warmup(model, batch_size=args.batch_size, verbose=root,
               workers=1 if args.distributed else None)
    # Optimizer steps per epoch: each takes batch_size rows from every rank.
    steps = -(-n_train // (args.batch_size * world))
    history = model.fit(train[0], train[1], epochs=epochs, batch_size=args.batch_size,
                        validation_split=args.validation_split,
                        verbose=0 if args.quiet else 1, seed=args.seed,
                        callbacks=_schedule_callbacks(args.schedule, lr, epochs, steps),
                        distributed=args.distributed)
    if not root:
        return 0  # rank 0 evaluates, saves and reports; the ranks hold the same model
    result = model.evaluate(test[0], test[1], batch_size=256)
    wall = time.perf_counter() - start
    if args.save:
        model.save(args.save)
        print(f"saved the model to {args.save}")
    if args.plot:
        plot.learning_curves(history, args.plot)
        print(f"wrote learning curves to {args.plot}")
    if n_val:
        logs = history.history
        print(f"validation accuracy: {logs['val_accuracy'][-1]:.4f}  validation "
              f"loss: {logs['val_loss'][-1]:.4f}")
    print(f"test accuracy: {result['accuracy']:.4f}  test loss: {result['loss']:.4f}  "
          f"wall time: {wall:.1f} s")
    return 0


def _load_model_file(path: str):
    from .saving import load_model

    try:
        return load_model(path)
    except (OSError, ValueError) as error:
        raise CLIError(f"could not load the model from --load {path}: {error}"
                       ) from None


def cmd_evaluate(args) -> int:
    _set_device(args.device)
    model = _load_model_file(args.load)
    # Before the dataset is read (or downloaded): shape and class count must fit.
    checks.model_matches_dataset(model, args.load, args.dataset)
    train, test = _normalised(*_load(args.dataset, args.data_dir, not args.offline))
    if test[0].shape[1:] != model.input_shape:
        raise CLIError(
            f"the model expects inputs of shape {model.input_shape} but {args.dataset} "
            f"has {test[0].shape[1:]}; evaluate it on the dataset it was trained on"
        )
    # What train reports, whatever the file was compiled with (or if it was not):
    # the optimizer is not used here.
    model.compile(loss="cross_entropy", metrics=["accuracy"])
    start = time.perf_counter()
    result = model.evaluate(test[0], test[1], batch_size=256)
    wall = time.perf_counter() - start
    print(f"test accuracy: {result['accuracy']:.4f}  test loss: {result['loss']:.4f}  "
          f"wall time: {wall:.1f} s")
    warning = checks.chance_warning(result["accuracy"], args.dataset)
    if warning:
        print(warning, file=sys.stderr)
    return 0


def cmd_predict(args) -> int:
    """Class probabilities (softmax of the logits; ``--logits``: the logits) of
    every image in a ``.npy`` file, or of one PNG or JPEG image, written to a
    ``.npy`` file."""
    checks.writable_file("--output", args.output)
    image = checks.is_image_file(args.input)
    if image:
        checks.needs_pillow("--input", args.input)
    _set_device(args.device)
    model = _load_model_file(args.load)
    softmaxed = checks.ends_in_softmax(model)
    if args.logits and softmaxed:
        raise CLIError(f"--logits: the model in {args.load} ends in a Softmax layer, "
                       f"so it outputs probabilities; leave --logits out")
    if args.dataset:
        checks.model_matches_dataset(model, args.load, args.dataset,
                                     check_classes=False)
    if image:
        x = checks.load_image("--input", args.input, model.input_shape)
    else:
        x = checks.load_npy("--input", args.input)
        x = checks.as_batch("--input", args.input, x, model.input_shape)
    if args.dataset:
        from .datasets import channel_stats, normalize

        if x.dtype.kind != "f":
            raise CLIError(f"--input {args.input}: holds {x.dtype} values; with "
                           f"--dataset give floats in [0, 1] as the dataset loaders "
                           f"return them (e.g. x.astype('float32') / 255)")
        train, _ = _load(args.dataset, args.data_dir, not args.offline)
        mean, std = channel_stats(train[0])
        x = normalize(x.astype(model.dtype, copy=False), mean, std)
    try:
        out = model.predict(x, batch_size=args.batch_size)
    except (TypeError, ValueError) as error:
        raise CLIError(f"--input {args.input}: {error}") from None
    if not args.logits and not softmaxed:
        from .functional import softmax

        out = softmax(out, dim=-1)
    what = "logits" if args.logits else "class probabilities"
    try:
        with open(args.output, "wb") as handle:
            np.save(handle, out, allow_pickle=False)
    except OSError as error:
        raise CLIError(f"--output {args.output}: cannot write it "
                       f"({error.strerror or error})") from None
    print(f"wrote the {what} of {out.shape[0]} images, shape {out.shape}, to "
          f"{args.output}")
    return 0


def cmd_export(args) -> int:
    """A saved model written as ONNX (the whole network, evaluation mode, dynamic
    batch axis) or its weights as ``.safetensors`` / ``.npz`` (torch's keys)."""
    suffix = os.path.splitext(args.output)[1].lower()
    if suffix not in (".onnx", ".safetensors", ".npz"):
        raise CLIError(f"--output {args.output}: give a path ending in .onnx (the "
                       f"whole model), .safetensors or .npz (its weights)")
    checks.writable_file("--output", args.output)
    needs = {".onnx": ("onnx", "fastcnn[onnx]"),
             ".safetensors": ("safetensors", "fastcnn[safetensors]")}.get(suffix)
    if needs is not None:
        try:
            __import__(needs[0])
        except ImportError:
            raise CLIError(f"--output {args.output}: writing {suffix} needs the "
                           f"{needs[0]} package: pip install \"{needs[1]}\"") from None
    model = _load_model_file(args.load)
    from .io import export_onnx, save_weights

    try:
        if suffix == ".onnx":
            export_onnx(model, args.output)
        else:
            save_weights(args.output, model)
    except (TypeError, ValueError) as error:
        raise CLIError(f"--load {args.load}: {error}") from None
    except OSError as error:
        raise CLIError(f"--output {args.output}: cannot write it "
                       f"({error.strerror or error})") from None
    shape = ", ".join(map(str, model.input_shape))
    what = (f"ONNX, input (N, {shape}), output (N, "
            f"{', '.join(map(str, model.output_shape))})" if suffix == ".onnx"
            else f"the weights with torch.nn.Sequential's keys ({suffix[1:]})")
    print(f"wrote {args.output}: {what}")
    return 0


def cmd_summary(args) -> int:
    model = _build_model(args.model, args.input_shape, args.num_classes)
    model.summary()
    return 0


def _prog() -> str:
    """How the user started the CLI, for its usage lines: the ``fastcnn`` console
    script or ``python -m fastcnn``."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "fastcnn" if name in ("fastcnn", "fastcnn.exe") else "python -m fastcnn"


def parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog or _prog(),
                                description="Train, evaluate, use and inspect CNNs.")
    sub = p.add_subparsers(dest="command",
                           metavar="{train,evaluate,predict,export,summary}")

    def data_options(q, dataset="digits", dataset_help=None):
        q.add_argument("--dataset", choices=DATASETS, default=dataset,
                       help=dataset_help or "digits needs scikit-learn; mnist, "
                       "fashion-mnist and cifar10 are read from --data-dir, "
                       "FASTCNN_DATA or the download cache")
        q.add_argument("--data-dir", default=None,
                       help="folder with the IDX files or the CIFAR-10 archive")
        q.add_argument("--offline", action="store_true",
                       help="never download; fail if the files are not found")
        q.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu",
                       help="where the model lives and trains: cuda needs an NVIDIA "
                       "GPU (fastcnn[cuda12] or [cuda13]); auto picks it where usable")

    t = sub.add_parser("train", help="train a model and report its test accuracy")
    data_options(t)
    t.add_argument("--model", choices=("lenet5", "simple_cnn"), default=None,
                   help="default: " + ", ".join(f"{k} {v}"
                                                for k, v in DEFAULT_MODEL.items()))
    t.add_argument("--epochs", type=_positive(int), default=None,
                   help="default: " + ", ".join(f"{k} {v}"
                                                for k, v in DEFAULT_EPOCHS.items()))
    t.add_argument("--batch-size", type=_positive(int), default=32,
                   help="rows per step (per rank with --distributed)")
    t.add_argument("--optimizer", choices=("sgd", "adam", "adamw", "rmsprop"),
                   default="adam")
    t.add_argument("--lr", type=_positive(float), default=None,
                   help="default: " + ", ".join(f"{k} {v}"
                                                for k, v in DEFAULT_LR.items()))
    t.add_argument("--schedule", choices=("onecycle", "cosine", "constant"),
                   default="onecycle",
                   help="learning-rate policy over the run (--lr is its peak)")
    t.add_argument("--validation-split", metavar="FRACTION", type=checks.fraction,
                   default=0.0,
                   help="hold out this fraction of the training images (drawn at "
                   "random, seeded) and report accuracy and loss on them every epoch")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--save", metavar="PATH", default=None,
                   help="write the trained model there (its folder must exist)")
    t.add_argument("--plot", metavar="PNG", default=None,
                   help="write learning curves (needs matplotlib)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--distributed", action="store_true",
                   help="data-parallel over the ranks of an MPI job: run as mpiexec "
                   "-n N python -m fastcnn train --distributed (needs fastcnn[mpi])")
    t.set_defaults(run=cmd_train)

    e = sub.add_parser("evaluate", help="evaluate a saved model on a test set")
    data_options(e)
    e.add_argument("--load", metavar="PATH", required=True)
    e.set_defaults(run=cmd_evaluate)

    r = sub.add_parser("predict", help="write a saved model's class probabilities "
                       "for the images in a .npy file, or for one PNG/JPEG image")
    r.add_argument("--load", metavar="PATH", required=True, help="a saved model")
    r.add_argument("--input", metavar="FILE", required=True,
                   help="images: a .npy array (N, *input_shape) or one image; or a "
                   ".png/.jpg/.jpeg of the model's size (needs Pillow), read as grey "
                   "or RGB in [0, 1]")
    r.add_argument("--output", metavar="NPY", required=True,
                   help="where to write the (N, classes) array")
    r.add_argument("--logits", action="store_true",
                   help="write the logits instead of probabilities (their softmax)")
    r.add_argument("--batch-size", type=_positive(int), default=256)
    data_options(r, dataset=None, dataset_help="standardise the input with this "
                 "dataset's training-set mean and std, as train does (for raw "
                 "images in [0, 1]); without it the input is used as it is")
    r.set_defaults(run=cmd_predict)

    x = sub.add_parser("export", help="write a saved model as ONNX (needs "
                       "fastcnn[onnx]) or its weights as .safetensors / .npz")
    x.add_argument("--load", metavar="PATH", required=True, help="a saved model")
    x.add_argument("--output", metavar="FILE", required=True,
                   help="a path ending in .onnx (the whole model, for deployment "
                   "runtimes), .safetensors or .npz (the weights, with "
                   "torch.nn.Sequential's keys)")
    x.set_defaults(run=cmd_export)

    s = sub.add_parser("summary", help="print a model's layer table")
    s.add_argument("--model", choices=("lenet5", "simple_cnn"), default="lenet5")
    s.add_argument("--input-shape", type=_shape, default=(1, 28, 28))
    s.add_argument("--num-classes", type=_positive(int), default=NUM_CLASSES)
    s.set_defaults(run=cmd_summary)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.command is None:
        args = parser().parse_args(["train", *(argv or [])])
    try:
        return args.run(args)
    except CLIError as error:
        print(f"fastcnn: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fastcnn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
