"""Every Python block of README.md runs, in order, as one module: the README cannot rot.

The blocks build on each other like a tutorial (the job of *A job* is tested in *Testing your
jobs*), so they share one namespace: a real module (``readme_examples`` in ``sys.modules``), so
that errors a job raises are rebuilt by their type on replay exactly as in a user's own module.
"""

from __future__ import annotations

import re
import sys
import traceback
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(line number, source)`` of every fenced ``python`` block."""
    return [(text.count("\n", 0, match.start()) + 2, match.group(1)) for match in _BLOCK.finditer(text)]


@pytest.fixture
def module() -> Iterator[types.ModuleType]:
    namespace = types.ModuleType("readme_examples")
    sys.modules[namespace.__name__] = namespace
    yield namespace
    del sys.modules[namespace.__name__]


def test_readme_python_blocks_all_run_in_order(module: types.ModuleType) -> None:
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 12, "the README lost its examples"

    for line, source in blocks:
        try:
            exec(compile(source, f"README.md:{line}", "exec"), module.__dict__)
        except Exception:  # noqa: BLE001 - any failure of a block is reported with its place
            pytest.fail(f"the README's Python block at line {line} fails:\n{traceback.format_exc()}")


def test_python_blocks_extraction_finds_each_block_with_its_line() -> None:
    text = "intro\n```python\nx = 1\n```\n\n```bash\nls\n```\n```python\ny = 2\nz = 3\n```\n"

    assert python_blocks(text) == [(3, "x = 1\n"), (10, "y = 2\nz = 3\n")]


def test_readme_failing_block_is_reported_with_its_line(module: types.ModuleType) -> None:
    ((line, source),) = python_blocks("a\n\n```python\nassert 1 == 2, 'README says so'\n```\n")

    with pytest.raises(AssertionError, match="README says so"):
        exec(compile(source, f"README.md:{line}", "exec"), module.__dict__)
