"""The HTTP API fuzzed by schemathesis against its own ``/openapi.json``, on a running ``LocalStack``.

Every check (server errors, status codes, content types, response schemas, schema-valid requests
accepted and schema-invalid ones refused, undeclared methods answered 405, ...), the coverage,
fuzzing and stateful phases (the document's links lead from a started job to every operation on
it), a bounded number of examples per operation, a fixed seed and no example database, so that a
run is short and repeatable. A failure prints schemathesis's report: each case with a curl line.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field

from aetheris import App, JobContext, StepContext
from aetheris_infra.local_stack import LocalStack

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
MAX_EXAMPLES = 8  # per operation and phase: about a minute on a busy 2-core machine
SEED = 20261201


class Order(BaseModel):
    """An input with the shapes a fuzzer should reach: bounded numbers, lists, optional fields."""

    order_id: str = Field(min_length=1, max_length=64)
    amount_cents: int = Field(ge=0, le=10_000_000)
    items: list[str] = Field(default_factory=list, max_length=5)
    note: str | None = None
    due: datetime | None = None


fuzz_app = App("fuzz")


def total(sctx: StepContext, order: Order) -> int:
    return order.amount_cents


@fuzz_app.job("fuzz.order")
def order_job(ctx: JobContext, order: Order) -> Any:
    ctx.step(total, order)
    return ctx.wait_for_signal("approval", timeout=timedelta(hours=1))


@fuzz_app.job("fuzz.echo")
def echo_job(ctx: JobContext, value: Any) -> Any:
    return value


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack(fuzz_app, workers=1) as running:
        yield running


@pytest.mark.skipif(
    not SCHEMATHESIS.exists() and not shutil.which("schemathesis"), reason="pip install -e .[dev]"
)
def test_api_fuzzed_by_schemathesis_with_all_checks_finds_no_failure(
    stack: LocalStack, tmp_path: Path
) -> None:
    command = [
        str(SCHEMATHESIS if SCHEMATHESIS.exists() else shutil.which("schemathesis")),
        "run",
        f"{stack.api_url}/openapi.json",
        "--url",
        stack.api_url,
        "--checks",
        "all",
        "--phases",
        "coverage,fuzzing,stateful",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--generation-database",
        "none",
        "--request-timeout",
        "30",
        "--no-color",
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)

    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
    assert " passed" in run.stdout or "No issues found" in run.stdout, run.stdout[-5000:]
