"""The README's CLI walkthrough, run command by command exactly as written, against a local stack.

The block's first command is ``aetheris dev``: the test starts the same stack in-process instead
(``LocalStack`` with the example support agent, on a free port, since ``8765`` may be taken) and
points the other commands at it through ``AETHERIS_API``, as a second terminal would. ``JOB_ID`` is
replaced by the id ``start`` printed; ``history.json`` lands in a temporary working directory.
Each command's exit status is what the README says it is.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from aetheris_infra.cli import main
from aetheris_infra.local_stack import LocalStack

README = Path(__file__).resolve().parents[2] / "README.md"
CLI = ".venv/bin/aetheris"
# The README explains each of these: `start --wait` stops at the approval with exit 5.
EXPECTED_EXIT = {"start": 5}


def walkthrough(text: str) -> list[list[str]]:
    """The commands of the first ``bash`` block under ``## The CLI``, one argv each (quotes span lines)."""
    section = text[text.index("\n## The CLI\n") :]
    block = section[section.index("```bash\n") + len("```bash\n") :]
    block = block[: block.index("```")]
    commands: list[list[str]] = []
    pending = ""
    for line in block.splitlines():
        pending = f"{pending}\n{line}" if pending else line
        try:
            argv = shlex.split(pending, comments=True)
        except ValueError:  # an open quote: the command goes on on the next line
            continue
        if argv:
            commands.append(argv)
        pending = ""
    assert not pending, f"unterminated command in the README's CLI block: {pending!r}"
    return commands


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[LocalStack]:
    monkeypatch.chdir(tmp_path)
    with LocalStack(workers=2, port=0) as running:
        monkeypatch.setenv("AETHERIS_API", running.api_url)
        yield running


def test_readme_cli_walkthrough_runs_as_written_through_approval_to_completed(
    stack: LocalStack, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    commands = walkthrough(README.read_text(encoding="utf-8"))
    assert commands[0] == [CLI, "dev"]
    job_id = None
    seen: list[str] = []

    for argv in commands[1:]:
        assert argv[0] == CLI, f"the walkthrough runs only the CLI, not {argv[0]}"
        args = [job_id if arg == "JOB_ID" else arg for arg in argv[1:]]
        assert None not in args, "JOB_ID used before `start` printed one"
        code = main([str(arg) for arg in args])
        out, err = capsys.readouterr()
        command = args[0]
        assert code == EXPECTED_EXIT.get(command, 0), f"{' '.join(argv)} exited {code}:\n{out}\n{err}"
        if command == "start":
            match = re.search(r"job ([0-9a-f-]{36}) started", out)
            assert match, out
            job_id = match.group(1)
            assert "WAITING for signal 'approval'" in err
        seen.append(f"{command}: {out}")

    assert stack.runtimes[0].get(str(job_id)) is not None
    final = stack.runtimes[0].get(str(job_id))
    assert final is not None and final.status == "COMPLETED"
    assert final.result["status"] == "refunded" and final.result["reviewed_by"] == "ana"
    assert final.result["survey_sent"] is True
    assert (tmp_path / "history.json").is_file()
    assert any(line.startswith("jobs: ") and str(job_id) in line for line in seen)


def test_walkthrough_joins_quoted_lines_and_drops_comments() -> None:
    text = "x\n## The CLI\n```bash\na dev   # run it\na start --input '{\"k\":\n  1}'\n```\n"

    assert walkthrough(text) == [["a", "dev"], ["a", "start", "--input", '{"k":\n  1}']]
