"""The README's code runs, and CI runs the README's test command."""

import contextlib
import io
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_ci_runs_the_readme_test_command():
    commands = [c.strip() for c in _blocks("bash") if "pytest" in c]
    assert len(commands) == 1
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[0] in ci.splitlines()


def test_python_blocks_run_in_order(monkeypatch, tmp_path):
    """Every python block runs, in order, in one namespace (as a reader would paste
    them); a block followed by a plain ``` block shows what it prints."""
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__readme__"}
    for index, code in enumerate(_blocks("python")):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(code, f"README python block {index}", "exec"), namespace)
        following = README.split(code, 1)[1].lstrip("`").lstrip()
        if following.startswith("```\n"):
            shown = following[4:].split("```", 1)[0].strip()
            assert printed.getvalue().strip() == shown, f"block {index}"
