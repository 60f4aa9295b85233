"""Running layers joined as a graph: forward in a topological order, backward in
the reverse one. :class:`fastcnn.Model` runs its layers with these, and
:func:`fastcnn.gradcheck` its float64 copies.

``inbound[k]`` lists the tensors layer ``k`` reads: 0 is the graph's input,
``j + 1`` the output of layer ``j`` (always an earlier layer).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..functional.merge import add_trusted
from .base import Layer


def forward_graph(layers: Sequence[Layer], inbound: Sequence[Sequence[int]], x,
                  training: bool):
    """Run ``layers`` in order, layer ``k`` on the tensors ``inbound[k]`` (0 is
    ``x``, ``j + 1`` the output of layer ``j``); returns the last output.

    Shape: x (N, *input_shape) -> (N, *output_shape).
    """
    values = [x]
    for layer, sources in zip(layers, inbound, strict=True):
        inputs = [values[i] for i in sources]
        values.append(layer.forward(inputs if layer.takes_many else inputs[0],
                                    training=training))
    return values[-1]


def backward_graph(layers: Sequence[Layer], inbound: Sequence[Sequence[int]], dy,
                   input_grad: bool = True):
    """Backpropagate ``dy`` through what :func:`forward_graph` ran, in reverse
    order; a tensor read by several layers gets the sum of their gradients, added
    in that order into new arrays (a layer's returned gradient is never written
    to). Returns the gradient of ``x``, or None with ``input_grad=False``.

    Shape: dy (N, *output_shape) -> dx (N, *input_shape).
    """
    grads = {len(layers): dy}
    for k in range(len(layers) - 1, -1, -1):
        layer, sources = layers[k], inbound[k]
        wanted = [i > 0 or input_grad for i in sources]
        result = layer.backward(grads.pop(k + 1), input_grad=any(wanted))
        if not any(wanted):
            continue
        parts = result if layer.takes_many else [result]
        for i, want, part in zip(sources, wanted, parts, strict=True):
            if want:
                grads[i] = part if i not in grads else add_trusted(grads[i], part)
    return grads.get(0) if input_grad else None
