"""Looking inside a network: the summary maths, receptive fields and gradcheck.

- :func:`layer_stats` / :func:`model_stats` / :func:`summary_table`
  (:mod:`.summary`): per layer the output shape, parameters, MACs, bytes, the
  dense-equivalent parameter count and the sharing ratio, and the receptive field's
  size and jump (``Sequential.summary()`` prints :func:`summary_table`).
- :func:`receptive_field` (:mod:`.receptive`): the input window that feeds one output
  position.
- :func:`gradcheck` (:mod:`.gradient_check`): every analytic gradient against float64
  central differences.

Every function takes a list of layers, a single layer, or any object with a
``.layers`` list (and optionally ``.input_shape``), such as :class:`fastcnn.Sequential`.
"""

from .gradient_check import GradcheckReport, GradcheckRow, gradcheck
from .receptive import RFState, initial_rf, receptive_field
from .summary import (
    DENSE_EQUIVALENT_NOTE,
    LayerStats,
    layer_stats,
    model_stats,
    summary_table,
    totals,
)

__all__ = [
    "DENSE_EQUIVALENT_NOTE",
    "GradcheckReport",
    "GradcheckRow",
    "LayerStats",
    "RFState",
    "gradcheck",
    "initial_rf",
    "layer_stats",
    "model_stats",
    "receptive_field",
    "summary_table",
    "totals",
]
