"""fastcnn's tests, one folder per subject.

- ops/: the functional ops and their kernels (references, finite differences,
  PyTorch, fuzzing, zero sizes, Winograd, the optimizer kernels);
- layers/: every layer through one harness, and layer fuzzing;
- model/: Sequential, training (guards, PyTorch parity, threads), optimizers,
  callbacks, the model zoo, model-file state fuzzing, the MNIST acceptance run;
- io/: model and weight files, hostile files, crash safety of checkpoints;
- datasets/: IDX parsing, loaders, transforms and the real download code;
- cuda/: the CUDA kernels and model on the simulator, PTX compilation, the GPU check;
- distributed/: data parallel training over MPI;
- support/: packaging, README, CLI, warm-up, inspect, plots, the buffer pool, the
  benchmarks run as tests, the bounds-checked rerun of the kernel suites, the soak.

Helpers that several folders use sit here (``naive.py``, the slow, obviously right
references; ``gradcheck.py``; ``threads.py``; ``fuzz_support.py``); a helper that
one folder uses sits in that folder. ``conftest.py`` here serves every folder.
"""
