"""Training: the loop behind ``Sequential.fit``/``evaluate``, apart from the layer
stack (as Keras 3 keeps its Trainer apart from its layers).

- :mod:`.loop`: the one fit/evaluate loop, over epochs, steps and callbacks;
- :mod:`.strategy`: how steps run (:class:`SingleProcess`; MPI's
  :class:`fastcnn.distributed.DataParallel` has the same interface);
- :mod:`.step`: one step in one process; :mod:`.data`: fit's data checks, the
  validation split, class and sample weights; :mod:`.streams`: streams of batches
  (generators, lists, :class:`fastcnn.datasets.Loader`) and their epochs;
  :mod:`.non_finite`: the error for a NaN loss.
"""

from .loop import evaluate, fit
from .step import train_batch
from .strategy import SingleProcess, make_strategy

__all__ = ["SingleProcess", "evaluate", "fit", "make_strategy", "train_batch"]
