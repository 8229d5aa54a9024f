"""The README's and the docs' Python examples pass ``mypy --strict`` as user code would.

Every Python code block (see ``doc_blocks``: fragments are marked to be skipped) is
written to its own module and the lot is checked in one ``mypy --strict`` run, against
the installed proxyproto and its ``py.typed`` marker, with no configuration of ours.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from doc_blocks import Block, blocks

pytest.importorskip("mypy")

pytestmark = pytest.mark.slow

#: Blocks known not to pass yet, by ``Block.key`` (path and content digest), with what
#: they need. An entry stops applying as soon as its block is edited; one whose block
#: passes unchanged fails as XPASS (xfail_strict), so the list cannot go stale.
KNOWN_FAILURES: dict[str, str] = {}

BLOCKS = [block for block in blocks() if not block.skipped]
_ERROR = re.compile(r"^(?P<file>[^:]+\.py):(?P<line>\d+): (?P<kind>error|note): (?P<text>.*)$")


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """``mypy --strict`` over every block at once: the messages of each block, by module."""
    folder = tmp_path_factory.mktemp("doc_examples")
    (folder / "mypy.ini").write_text("[mypy]\n", encoding="utf-8")  # not the project's config
    names = []
    for block in BLOCKS:
        (folder / f"{block.module}.py").write_text(block.code, encoding="utf-8")
        names.append(f"{block.module}.py")
    env = {key: value for key, value in os.environ.items() if not key.startswith("MYPY")}
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--config-file", "mypy.ini",
         "--cache-dir", str(folder / ".mypy_cache"), "--no-color-output",
         "--no-error-summary", "--show-error-codes", *names],
        cwd=folder, capture_output=True, text=True, timeout=600, env=env, check=False,
    )
    errors: dict[str, list[str]] = defaultdict(list)
    for line in result.stdout.splitlines():
        match = _ERROR.match(line)
        if match is not None:
            errors[Path(match["file"]).stem].append(
                f"line {match['line']}: {match['kind']}: {match['text']}")
        elif line.strip():
            errors["<mypy>"].append(line)
    assert result.returncode in (0, 1), result.stderr  # 2: mypy itself failed
    assert not errors["<mypy>"], "\n".join(errors["<mypy>"])
    return errors


def _params() -> list[object]:
    params: list[object] = []
    for block in BLOCKS:
        marks = []
        if block.key in KNOWN_FAILURES:
            marks.append(pytest.mark.xfail(reason=KNOWN_FAILURES[block.key], strict=True))
        params.append(pytest.param(block, id=f"{block.path}:{block.line}", marks=marks))
    return params


@pytest.mark.parametrize("block", _params())
def test_example_passes_mypy_strict(block: Block, mypy_errors: dict[str, list[str]]) -> None:
    messages = mypy_errors.get(block.module, [])
    code = "".join(f"{number:4d} | {text}\n"
                   for number, text in enumerate(block.code.splitlines(), start=1))
    assert not messages, (
        f"{block.path}, block at line {block.line} (key {block.key}), under mypy --strict:\n"
        + "\n".join(messages) + "\n\n" + code
    )


def test_every_document_has_its_blocks_found() -> None:
    """The extractor sees the blocks it must (so an empty run cannot pass)."""
    found = blocks()
    paths = {block.path for block in found}
    assert "README.md" in paths and "docs/strategies.rst" in paths
    assert all(block.code.strip() for block in found)
    assert len({block.module for block in found}) == len(found)
