"""MkDocs hook: the "Getting started" page is the README itself (one source, no
copy to drift). Its links into docs/ are made relative to the site; links to
other files of the repository (which the site does not hold) become their path
in code, so no link is left broken."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_LINK = re.compile(r"\[([^\]]+)\]\((?!https?:|#|mailto:)([^)\s]+)\)")


def _relink(match: re.Match) -> str:
    text, target = match.group(1), match.group(2)
    if target.startswith("docs/"):
        return f"[{text}]({target[len('docs/'):]})"
    return text if text.strip("`") == target else f"{text} (`{target}`)"


def on_page_read_source(page, config):
    if page.file.src_uri == "getting-started.md":
        return _LINK.sub(_relink, (ROOT / "README.md").read_text(encoding="utf-8"))
    return None
