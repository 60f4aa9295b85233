"""The documentation site builds with no warning (mkdocs --strict): the README as
"Getting started", the API reference from the docstrings, the notes in docs/."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_site_builds_strictly_with_the_api_reference(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stderr
    start = (site / "getting-started" / "index.html").read_text()
    assert "Why convolutions?" in start  # the README's tour
    models = (site / "api" / "models" / "index.html").read_text()
    for name in ("Sequential", "Model", "lenet5", "resnet"):
        assert name in models
    for page in ("layers", "functional", "training", "datasets", "io", "utilities"):
        assert (site / "api" / page / "index.html").stat().st_size > 10_000, page
    assert "load_cifar10" in (site / "api" / "datasets" / "index.html").read_text()
    assert "export_onnx" in (site / "api" / "io" / "index.html").read_text()
    # Every built-in layer has its entry (the package's __all__ is computed, which
    # the reference generator cannot follow, so docs/api/layers.md lists them).
    from fastcnn.layers import BUILTIN_LAYERS

    layers_page = (site / "api" / "layers" / "index.html").read_text()
    missing = [n for n in BUILTIN_LAYERS
               if f'id="fastcnn.layers.{n}"' not in layers_page]
    assert not missing
    for name in ("mobilenet_v2", "efficientnet_lite0", "convnext"):
        assert name in models
