"""The wheel and the sdist build from a clean tree, hold what a user needs, and the
wheel installs into a fresh virtual environment and imports there."""

import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*args, cwd=None, env=None):
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """``(wheel, sdist)`` built by setuptools' PEP 517 hooks, offline (the build
    backend is the test environment's own setuptools, no isolated download)."""
    pytest.importorskip("setuptools")
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the tracked files are what gets built")
    out = tmp_path_factory.mktemp("dist")
    # Build from a copy of the tracked files: the working tree's build/ and
    # egg-info must neither leak in nor be written.
    tree = tmp_path_factory.mktemp("tree")
    files = _run("git", "ls-files", "-z", cwd=ROOT).stdout.split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            dst = tree / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(src.read_bytes())
    # The hooks return the file names; setuptools logs on stdout, so they go
    # through a file, and its hooks read sys.argv, so the paths are in the code.
    code = (f"import pathlib, setuptools.build_meta as b; "
            f"w = b.build_wheel({str(out)!r}); s = b.build_sdist({str(out)!r}); "
            f"pathlib.Path({str(tree / 'built.txt')!r}).write_text(w + ' ' + s)")
    _run(sys.executable, "-c", code, cwd=tree)
    wheel, sdist = (tree / "built.txt").read_text().split()
    return out / wheel, out / sdist


def test_wheel_holds_the_package_licence_and_type_marker(built):
    wheel, _ = built
    names = zipfile.ZipFile(wheel).namelist()
    assert "fastcnn/__init__.py" in names and "fastcnn/py.typed" in names
    assert "fastcnn/kernels/cpu/conv.py" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") or
               n.endswith(".dist-info/LICENSE") for n in names)
    assert not any(n.startswith("tests/") for n in names)
    # No compiled kernel cache or bytecode from the working tree.
    assert not any(n.endswith((".nbi", ".nbc", ".pyc")) for n in names)


def test_sdist_holds_sources_and_licence(built):
    _, sdist = built
    names = tarfile.open(sdist).getnames()
    top = names[0].split("/")[0]
    for needed in ("pyproject.toml", "README.md", "LICENSE", "fastcnn/__init__.py",
                   "fastcnn/py.typed"):
        assert f"{top}/{needed}" in names, needed


def test_wheel_installs_and_imports_in_a_fresh_venv(built, tmp_path):
    wheel, _ = built
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    # --no-deps: no network here; numba and numpy come from this environment's
    # site-packages on PYTHONPATH (which holds no fastcnn of its own: the
    # editable install is a .pth finder, not read from PYTHONPATH).
    _run(str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
         str(wheel))
    site = next(p for p in sys.path if p.endswith("site-packages"))
    code = ("import fastcnn, numpy as np, pathlib; "
            "from fastcnn import functional as F; "
            "print(pathlib.Path(fastcnn.__file__).parent); "
            "x = np.zeros((1, 1, 6, 6), np.float32); x[..., :3] = 10; "
            "w = np.array([[1, 0, -1]] * 3, np.float32)[None, None]; "
            "print(F.conv2d(x, w)[0, 0, 0].tolist())")
    result = _run(str(python), "-c", code, cwd=tmp_path,
                  env={"PYTHONPATH": site, "PATH": "/usr/bin:/bin",
                       "FASTCNN_CACHE": "0", "HOME": str(tmp_path)})
    location, values = result.stdout.strip().splitlines()
    assert Path(location).is_relative_to(env_dir)
    assert values == "[0.0, 30.0, 30.0, 0.0]"
