"""Start-up costs, each sample in a fresh interpreter (asv's ``timeraw_``).

Targets of issue 5: ``import fastcnn`` under 0.5 s; the first LeNet-5 ``train_step``
of a new process under 1 s when Numba's cache is warm. The cold compile time (empty
cache) is measured by ``tools/compare_torch.py --only startup``, not here: asv would
pay it on every sample.
"""

from ._common import LR, THREADS, build_model, model_batch, use_threads

# The timed child cannot import this package (its working directory is asv's), so
# the code is spelled out; it matches build_model / model_batch.
_FIRST_STEP_SETUP = f"""
import numba
import numpy as np
import fastcnn
from fastcnn import models, optimizers
numba.set_num_threads(min({THREADS}, numba.config.NUMBA_NUM_THREADS))
rng = np.random.default_rng(1)
x = rng.standard_normal((64, 1, 28, 28), dtype=np.float32)
y = rng.integers(0, 10, 64)
"""

_FIRST_STEP = f"""
fastcnn.seed(0)
model = models.lenet5()
model.compile(optimizers.SGD(lr={LR}), "cross_entropy")
model.train_step(x, y)
"""


def timeraw_import_fastcnn():
    """``import fastcnn`` in a new process (numpy and numba included)."""
    return "import fastcnn"


class FirstTrainStep:
    """Build, compile and run one LeNet-5 ``train_step`` (batch 64) in a new
    process whose Numba cache this benchmark's ``setup`` has just filled; the import
    of fastcnn is not timed."""

    timeout = 300
    repeat = (3, 5, 60.0)

    def setup(self):
        use_threads()
        model = build_model("lenet5")
        model.train_step(*model_batch("lenet5", 64))  # fills the on-disk cache

    def timeraw_lenet5_first_train_step(self):
        return _FIRST_STEP, _FIRST_STEP_SETUP
