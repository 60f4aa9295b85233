"""Pictures of training: learning curves, conv filters, feature maps.

matplotlib is an optional extra (``pip install fastcnn[plot]``); it is imported only
when a function here is called, with the non-interactive Agg backend when no display
is set up, so plotting works on a headless machine.
"""

from __future__ import annotations

import math

import numpy as np

from .layers.graph import forward_graph

#: History keys that schedulers add (hyper-parameters, not metrics): not plotted.
SCHEDULE_KEYS = ("lr", "momentum", "beta1")


def _pyplot():
    try:
        import matplotlib
    except ImportError:  # pragma: no cover - exercised where matplotlib is absent
        raise ImportError(
            "fastcnn.plot needs matplotlib: pip install 'fastcnn[plot]'"
        ) from None
    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps", "cairo"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    if path is not None:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def learning_curves(history, path=None):
    """The cost J of every iteration (left) and every metric per epoch (right).

    Parameters
    ----------
    history : fastcnn.callbacks.History
        What ``fit`` returned.
    path : str, optional
        Save the figure there (PNG, PDF or SVG by extension).

    Returns the matplotlib Figure.

    Shape: no arrays.
    """
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    j = np.asarray(history.iterations, dtype=float)
    left.plot(np.arange(1, j.size + 1), j, lw=0.5, alpha=0.3, label="J per batch")
    if j.size >= 10:
        k = max(1, j.size // 50)
        smooth = np.convolve(j, np.ones(k) / k, mode="valid")
        left.plot(np.arange(k, j.size + 1), smooth, lw=1.6, label=f"mean of {k}")
    left.set(xlabel="iteration", ylabel="J = (1/m) Σ L(ŷ, y)",
             title="Cost per iteration")
    left.set_yscale("log")
    left.legend()
    epochs = np.asarray(history.epoch) + 1
    for key, values in history.history.items():
        if key in SCHEDULE_KEYS:
            continue  # hyper-parameters a scheduler logged, not metrics
        style = "--" if key.startswith("val_") else "-"
        right.plot(epochs, values, style, marker="o", label=key)
    right.set(xlabel="epoch", title="Metrics per epoch")
    right.legend()
    right.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def filters(weight: np.ndarray, path=None, max_filters: int = 64):
    """Each filter of a conv layer as a small image (one panel per output channel;
    multi-channel filters show channel 0, or RGB when there are exactly 3).

    Shape: weight (C_out, C_in, KH, KW).
    """
    weight = np.asarray(getattr(weight, "params", {}).get("weight", weight))
    if weight.ndim != 4:
        raise ValueError(
            f"plot.filters: weight must be 4-D (C_out, C_in, KH, KW), got shape "
            f"{weight.shape}."
        )
    plt = _pyplot()
    count = min(weight.shape[0], max_filters)
    cols = min(count, 8)
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols, 1.4 * rows + 0.4),
                             squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i >= count:
            continue
        f = weight[i]
        if f.shape[0] == 3:
            img = np.moveaxis(f, 0, -1)
            img = (img - img.min()) / (np.ptp(img) or 1.0)
            ax.imshow(img, interpolation="nearest")
        else:
            lim = np.abs(f[0]).max() or 1.0
            ax.imshow(f[0], cmap="RdBu_r", vmin=-lim, vmax=lim,
                      interpolation="nearest")
        ax.set_title(str(i), fontsize=8)
    fig.suptitle(f"{weight.shape[0]} filters of {weight.shape[2]}x{weight.shape[3]} "
                 f"(red +, blue -)")
    return _save(fig, path)


def feature_maps(model, x: np.ndarray, layer: int, path=None, max_maps: int = 32):
    """The activations of layer ``layer`` (an index into ``model.layers``, for a
    Sequential or a graph Model) for one input image, one panel per channel,
    beside the input.

    Shape: x (C, H, W) or (1, C, H, W).
    """
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(
            f"plot.feature_maps: x must be one image (C, H, W) or (1, C, H, W), got "
            f"shape {x.shape}."
        )
    if not isinstance(layer, int) or not 0 <= layer < len(model.layers):
        raise ValueError(
            f"plot.feature_maps: layer must be an index in [0, {len(model.layers)}), "
            f"got {layer!r}."
        )
    out = x.astype(model.dtype)
    inbound = getattr(model, "inbound", None)
    if inbound is not None:  # a graph Model: layers run in topological order, so
        # the first layer + 1 of them compute that layer's output
        out = forward_graph(model.layers[:layer + 1], inbound[:layer + 1], out,
                            training=False)
    else:
        for index in range(layer + 1):
            out = model.layers[index].forward(out, training=False)
    if out.ndim != 4:
        raise ValueError(
            f"plot.feature_maps: layer {layer} outputs shape {out.shape[1:]}, not "
            f"feature maps (C, H, W)."
        )
    plt = _pyplot()
    maps = out[0]
    count = min(maps.shape[0], max_maps)
    cols = min(count + 1, 8)
    rows = math.ceil((count + 1) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.6 * rows + 0.4),
                             squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i == 0:
            ax.imshow(x[0, 0], cmap="gray")
            ax.set_title("input", fontsize=8)
        elif i <= count:
            ax.imshow(maps[i - 1], cmap="viridis")
            ax.set_title(str(i - 1), fontsize=8)
    name = getattr(model.layers[layer], "name", str(layer))
    fig.suptitle(f"Feature maps after layer {layer} ({name})")
    return _save(fig, path)
