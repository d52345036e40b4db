"""moto with our speed-ups gives the same answers as plain moto, call for call (errors included).

The patches (``aetheris._local.moto_speedups``) are process-wide, so each side runs in a fresh
process: ``moto_differential_scenario.py`` plays a fixed sequence of update expressions (valid ones,
and ones moto must refuse: two SET clauses, overlapping paths, a key attribute, a type mismatch, a
missing value, a failed condition), transactions, reads and SQS calls, twice over, and prints every
answer. Both outputs must be identical.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCENARIO = Path(__file__).with_name("moto_differential_scenario.py")


def run(*flags: str) -> dict[str, object]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run(
        [sys.executable, str(SCENARIO), *flags],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def answers(*flags: str) -> list[object]:
    result = run(*flags)["answers"]
    assert isinstance(result, list)
    return result


def test_moto_with_speedups_answers_every_call_as_plain_moto_does() -> None:
    plain, fast = answers(), answers("--speedups")
    assert len(plain) > 40  # the scenario ran to its end on both sides
    for index, (expected, got) in enumerate(zip(plain, fast, strict=True)):
        assert got == expected, f"call {index} differs"


def test_direct_calls_answer_every_call_as_the_http_path_does() -> None:
    """``moto_direct`` (no HTTP layer): the same answers and errors — classes, codes, messages,
    cancellation reasons, returned items, status codes — as botocore over moto's stubber."""
    wire = run("--speedups")
    direct = run("--speedups", "--direct")
    assert isinstance(wire["answers"], list) and len(wire["answers"]) > 100
    assert isinstance(wire["wire_calls"], int) and wire["wire_calls"] > 50  # the plain side did use HTTP
    assert direct["wire_calls"] == 0  # every call was answered directly, none fell back
    for index, (expected, got) in enumerate(zip(wire["answers"], direct["answers"], strict=True)):  # type: ignore[call-overload]
        assert got == expected, f"call {index} differs"
