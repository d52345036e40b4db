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


def answers(*flags: str) -> list[object]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run(
        [sys.executable, str(SCENARIO), *flags],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: list[object] = json.loads(done.stdout)
    return result


def test_moto_with_speedups_answers_every_call_as_plain_moto_does() -> None:
    plain, fast = answers(), answers("--speedups")
    assert len(plain) > 40  # the scenario ran to its end on both sides
    for index, (expected, got) in enumerate(zip(plain, fast, strict=True)):
        assert got == expected, f"call {index} differs"
