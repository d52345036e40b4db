"""X-Ray subsegments around the engine's store calls and user steps (Powertools Tracer).

Off locally (``POWERTOOLS_TRACE_DISABLED=true``: the Tracer hands out dummy subsegments); on Lambda
with ``Tracing: Active`` every step body and every DynamoDB call of a tick is its own subsegment,
annotated with the job, so a slow tick shows which call or step took the time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any


@cache
def _tracer() -> Any:
    from aws_lambda_powertools import Tracer

    return Tracer(service="aetheris")


@contextmanager
def subsegment(name: str, **annotations: str | int) -> Iterator[None]:
    with _tracer().provider.in_subsegment(name=name[:200]) as segment:
        for key, value in annotations.items():
            segment.put_annotation(key=key, value=value)
        yield
