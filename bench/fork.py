"""What a fork costs: the DynamoDB, S3 and SQS requests ``Runtime.fork`` makes, and its wall time on
the embedded stack, for logs of growing length (each step makes one recorded tool call).

A fork copies each event and each kept ledger entry with one conditional PutItem, then writes the
job item and its ``JobCreated`` in one transaction and sends one tick: so the requests grow
linearly with the copied log (two puts per copied step here), which is what this measures. The
timings are moto's, not DynamoDB's. Writes bench/results/fork.json.

    .venv/bin/python bench/fork.py
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aetheris_infra.offline import use_offline_defaults

use_offline_defaults(POWERTOOLS_METRICS_DISABLED="true")

from aetheris import App, JobContext, StepContext  # noqa: E402
from aetheris.testing import LocalRuntime  # noqa: E402

LENGTHS = (10, 50, 200)


def build_app() -> App:
    app = App("bench-fork")

    def echo(value: int) -> int:
        return value

    def step(sctx: StepContext, n: int) -> int:
        return sctx.tool("echo", echo, n)

    @app.job("steps")
    def steps(ctx: JobContext, count: int) -> int:
        return sum(ctx.step(step, n, name=f"s{n}") for n in range(count))

    return app


def measure(length: int) -> dict[str, Any]:
    calls: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    with LocalRuntime(build_app(), workers=1) as local:
        job_id = local.start("steps", length)
        assert local.wait(job_id, timeout=600).status.value == "COMPLETED"
        last = local.events(job_id)[-2].seq  # the last step's commit: everything but the end
        for client in (local.dynamodb, local.sqs, local.s3):
            client.meta.events.register("after-call", count)
        started = time.perf_counter()
        fork_id = local.fork(job_id, last)
        took = time.perf_counter() - started
        for client in (local.dynamodb, local.sqs, local.s3):
            client.meta.events.unregister("after-call", count)
        assert local.wait(fork_id, timeout=600).result == sum(range(length))
    return {
        "steps": length,
        "copied_through_seq": last,
        "requests": dict(sorted(calls.items())),
        "ms": round(took * 1000, 1),
    }


def main() -> None:
    results = {
        "runs": [measure(length) for length in LENGTHS],
        "note": "moto in-process; counts are the point",
    }
    print(json.dumps(results, indent=2))
    (Path(__file__).parent / "results" / "fork.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
