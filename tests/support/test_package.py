"""Packaging promises: a light import, lazy compilation, the cache fallback."""

import subprocess
import sys
import textwrap

import fastcnn


def _run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_version_is_a_string():
    assert isinstance(fastcnn.__version__, str) and fastcnn.__version__.count(".") >= 1


def test_import_compiles_no_kernel_and_skips_numba_cuda():
    out = _run("""
        import sys
        import fastcnn, fastcnn.functional
        from fastcnn.kernels.cpu import conv
        compiled = [k for k in vars(conv).values()
                    if hasattr(k, "signatures") and k.signatures]
        print(len(compiled), "numba.cuda" in sys.modules)
    """)
    assert out == "0 False"


def test_import_does_not_import_numba():
    # Importing numba costs about 0.5 s; import fastcnn (and building and
    # inspecting a model, fastcnn.io) must not pay it: the first kernel call does.
    # (fastcnn.seed does: it seeds Numba's generator inside jitted code.)
    out = _run("""
        import sys
        import fastcnn, fastcnn.io
        model = fastcnn.models.lenet5()
        model.build((1, 28, 28))
        model.summary(print_fn=lambda line: None)
        print("numba" in sys.modules)
    """)
    assert out == "False"


def test_read_only_cache_falls_back_to_no_cache(tmp_path):
    # Numba raises RuntimeError at decoration time when no cache locator works; the
    # decorator must then compile without a cache instead of failing the import.
    out = _run("""
        import numba.core.caching as caching
        # As on a read-only install with a read-only HOME: no cache locator applies.
        caching.CacheImpl._locator_classes = []
        from fastcnn.kernels import _jit
        @_jit.cpu_kernel
        def add_one(x):
            for i in range(x.size):
                x[i] += 1
        import numpy as np
        a = np.zeros(3)
        add_one(a)
        print(a.sum(), add_one._cache.__class__.__name__)
    """)
    assert out == "3.0 NullCache"


def test_stale_kernel_cache_is_dropped_when_any_kernel_source_changes(tmp_path):
    # Numba checks only the defining file's timestamp; a changed helper in another
    # kernel file must still invalidate every cached kernel.
    from fastcnn.kernels._jit import _drop_stale_cache

    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "b.py").write_text("y = 2\n")
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    (cache / "a.f-1.py311.nbi").write_bytes(b"old")
    _drop_stale_cache(str(tmp_path))  # no stamp yet: cleared, stamp written
    assert not list(cache.glob("*.nbi"))
    (cache / "a.f-1.py311.nbi").write_bytes(b"fresh")
    _drop_stale_cache(str(tmp_path))  # nothing changed: kept
    assert list(cache.glob("*.nbi"))
    (tmp_path / "b.py").write_text("y = 3\n")
    _drop_stale_cache(str(tmp_path))  # another file changed: cleared
    assert not list(cache.glob("*.nbi"))


def test_kernel_cache_stamp_is_the_same_in_every_process():
    # The stamp covers the fastmath flag sets; a set's repr order follows string
    # hashing, which Python seeds per process. A stamp that differed between
    # processes dropped the whole kernel cache in about every other new process.
    code = "from fastcnn.kernels._jit import _options_key; print(_options_key())"
    keys = set()
    for seed in ("1", "2", "3", "4"):
        env = {**__import__("os").environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                             text=True, env=env, check=True).stdout
        keys.add(out)
    assert len(keys) == 1
