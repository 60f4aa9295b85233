"""Griffe extension: fit fastcnn's docstrings to NumPy-style parsing.

The house style puts prose after a Parameters or Returns section (what happens
when, and the ``Shape: ...`` paragraph). A NumPy parser reads such a paragraph as
more parameters ("Shape", "Each", ...). Those paragraphs are moved, in order, to
the top of the "Notes" section (made when there is none) before parsing. The
source docstrings stay as they are: this is presentation only."""

import re

import griffe

_HEADER = re.compile(r"^[ \t]*(\w[\w ]*)\n[ \t]*-{3,}[ \t]*$", re.MULTILINE)
_NAMES = re.compile(r"\**\w+(, \**\w+)*")  # "x", "x, y", "*args" (no type)


def _is_prose(paragraph: str) -> bool:
    """Whether a paragraph of a Parameters-like section is prose, not an item
    (an item's first line is ``name : type``, bare names, or a type whose
    description is indented under it)."""
    lines = paragraph.strip("\n").splitlines()
    first = lines[0].strip()
    if first.startswith("Shape:"):
        return True
    if " : " in first or _NAMES.fullmatch(first):
        return False
    # A type-only item (Returns) is followed by its indented description; prose
    # goes on at its own indentation.
    indent = len(lines[0]) - len(lines[0].lstrip())
    if len(lines) == 1:
        return first.endswith(".")
    return len(lines[1]) - len(lines[1].lstrip()) <= indent


def _split(text: str):
    """``(sections, order)``: the text before the first header, then each section
    as (header block, body)."""
    heads = list(_HEADER.finditer(text))
    if not heads:
        return text, []
    parts = []
    for k, head in enumerate(heads):
        end = heads[k + 1].start() if k + 1 < len(heads) else len(text)
        parts.append((head.group(1).strip(), text[head.start():head.end()],
                      text[head.end():end]))
    return text[:heads[0].start()], parts


class ShapeNotes(griffe.Extension):
    def on_instance(self, *, obj, **kwargs) -> None:
        doc = obj.docstring
        if doc is None:
            return
        intro, sections = _split(doc.value)
        moved, kept = [], []
        for name, head, body in sections:
            if name in ("Parameters", "Returns", "Raises", "Yields", "Attributes",
                        "Other Parameters"):
                paragraphs = re.split(r"\n[ \t]*\n", body)
                items = [p for p in paragraphs if p.strip() and not _is_prose(p)]
                moved += [p.strip() for p in paragraphs if p.strip() and _is_prose(p)]
                body = "\n" + "\n".join(p.strip("\n") for p in items) + "\n\n"
            kept.append((name, head, body))
        if intro.strip() and "Shape:" in intro and sections:
            paragraphs = re.split(r"\n[ \t]*\n", intro)
            moved += [p.strip() for p in paragraphs if p.strip().startswith("Shape:")]
            intro = "\n\n".join(p for p in paragraphs
                                if not p.strip().startswith("Shape:")) + "\n\n"
        if not moved:
            return
        notes = "\n\n".join(moved)
        out = intro
        placed = False
        for name, head, body in kept:
            if name == "Notes":
                body = "\n" + notes + "\n\n" + body.lstrip("\n")
                placed = True
            out += head + body
        if not placed:
            out = out.rstrip() + "\n\nNotes\n-----\n" + notes
        doc.value = out
