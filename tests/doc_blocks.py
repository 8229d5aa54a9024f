"""The Python code blocks of README.md and the docs, for the tests that check them.

A block is a Markdown fence opened with ```python or an reST ``.. code-block:: python``
directive. A fragment that is not meant to be complete code (a call shown on its own, an
excerpt of a larger program) is marked by a comment on the line before it, invisible in
the rendered page: ``<!-- mypy: skip -->`` in Markdown, ``.. mypy: skip`` in reST.
"""

from __future__ import annotations

import hashlib
import re
import textwrap
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
SKIP_MARKDOWN = "<!-- mypy: skip -->"
SKIP_REST = ".. mypy: skip"

_FENCE = re.compile(r"^(\s*)```python\s*$")
_DIRECTIVE = re.compile(r"^(\s*)\.\. code-block:: python\s*$")


class Block(NamedTuple):
    """One code block: where it is, its code (dedented), whether it is marked as a fragment."""

    path: str  # relative to the repository root
    line: int  # 1-based line of the fence or directive
    code: str
    skipped: bool

    @property
    def key(self) -> str:
        """``path#digest``: names the block by its content, not by where it sits."""
        return f"{self.path}#{hashlib.sha1(self.code.encode()).hexdigest()[:10]}"

    @property
    def module(self) -> str:
        """A module name for the block's code, unique among the blocks."""
        stem = re.sub(r"\W", "_", self.path.lower())
        return f"{stem}_{self.line}"


def _previous_text(lines: list[str], index: int) -> str:
    for line in reversed(lines[:index]):
        if line.strip():
            return line.strip()
    return ""


def _markdown_blocks(path: str, lines: list[str]) -> list[Block]:
    blocks = []
    index = 0
    while index < len(lines):
        match = _FENCE.match(lines[index])
        if match is None:
            index += 1
            continue
        end = index + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        code = textwrap.dedent("\n".join(lines[index + 1 : end])) + "\n"
        skipped = _previous_text(lines, index) == SKIP_MARKDOWN
        blocks.append(Block(path, index + 1, code, skipped))
        index = end + 1
    return blocks


def _rest_blocks(path: str, lines: list[str]) -> list[Block]:
    blocks = []
    for index, line in enumerate(lines):
        match = _DIRECTIVE.match(line)
        if match is None:
            continue
        indent = len(match.group(1))
        body: list[str] = []
        start = index + 1
        # Directive options (":linenos:") come first, then a blank line, then the code.
        while start < len(lines) and lines[start].strip().startswith(":"):
            start += 1
        for text in lines[start:]:
            if text.strip() and len(text) - len(text.lstrip()) <= indent:
                break
            body.append(text)
        code = textwrap.dedent("\n".join(body)).strip("\n") + "\n"
        skipped = _previous_text(lines, index) == SKIP_REST
        blocks.append(Block(path, index + 1, code, skipped))
    return blocks


def document_paths() -> list[Path]:
    """README.md, then docs/*.rst and docs/guides/*.rst, sorted."""
    docs = ROOT / "docs"
    return [ROOT / "README.md", *sorted(docs.glob("*.rst")), *sorted(docs.glob("guides/*.rst"))]


def blocks(paths: list[Path] | None = None) -> list[Block]:
    """Every Python code block of ``paths`` (default: :func:`document_paths`), in order."""
    found: list[Block] = []
    for path in paths if paths is not None else document_paths():
        relative = path.relative_to(ROOT).as_posix()
        lines = path.read_text(encoding="utf-8").splitlines()
        if path.suffix == ".md":
            found.extend(_markdown_blocks(relative, lines))
        else:
            found.extend(_rest_blocks(relative, lines))
    return found
