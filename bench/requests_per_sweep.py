"""Requests per sweep: what the sweeper costs with many healthy jobs, with stalled ones, and what the
worker pays to keep a stepping job off the attention index (botocore hooks count the real calls).

Runs on the embedded stack (moto in-process: the counts, not the timings, are the point), prints
the figures and writes bench/results/requests_per_sweep.json.

    .venv/bin/python bench/requests_per_sweep.py
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from aetheris_infra.offline import use_offline_defaults

use_offline_defaults(POWERTOOLS_METRICS_DISABLED="true")

from aetheris import App, JobContext, StepContext  # noqa: E402
from aetheris._store import schema  # noqa: E402
from aetheris.testing import LocalRuntime  # noqa: E402

HEALTHY = (0, 100, 400)
STALLED = 20
STEPS, STEP_EVERY = 60, timedelta(seconds=5)


def build_app() -> App:
    app = App("bench-sweep")

    def plain(sctx: StepContext, n: int) -> int:
        return n

    @app.job("plain")
    def plain_job(ctx: JobContext, steps: int) -> int:
        return sum(ctx.step(plain, n) for n in range(steps))

    return app


@contextmanager
def counting(local: LocalRuntime) -> Iterator[Counter[str]]:
    calls: Counter[str] = Counter()

    def count(model: Any, params: dict[str, Any], **_: Any) -> None:
        calls[model.name] += 1
        if model.name == "UpdateItem" and params.get("Key", {}).get("sk", {}).get("S") == schema.JOB_SK:
            calls["UpdateItem (job item)"] += 1

    for client in (local.dynamodb, local.sqs):
        client.meta.events.register("provide-client-params.*.*", count)
    try:
        yield calls
    finally:
        for client in (local.dynamodb, local.sqs):
            client.meta.events.unregister("provide-client-params.*.*", count)


def drop_ticks(local: LocalRuntime) -> None:
    url = local.stack.step_queue_url
    while messages := local.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        for message in messages:
            local.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def sweep_with_healthy(healthy: int) -> dict[str, int]:
    """``healthy`` jobs mid-flight (ticks queued, deadlines ahead) and 1 stalled one: one sweep."""
    with LocalRuntime(build_app(), workers=1) as local:
        stalled = local.start("plain", 1)
        drop_ticks(local)
        local.clock.advance(local.settings.stall_after + timedelta(seconds=1))
        for _ in range(healthy):
            local.start("plain", 1)
        with counting(local) as calls:
            report = local.sweep()
        assert report["ticked"] == [stalled], report
    return dict(sorted(calls.items()))


def sweeps_with_stalled(stalled: int) -> list[dict[str, int]]:
    """``stalled`` jobs whose ticks are lost and whose rescues do not help: three sweeps."""
    with LocalRuntime(build_app(), workers=1) as local:
        for _ in range(stalled):
            local.start("plain", 1)
        figures = []
        for _ in range(3):
            drop_ticks(local)
            local.clock.advance(local.settings.stall_after + timedelta(seconds=1))
            with counting(local) as calls:
                local.sweep()
            figures.append(dict(sorted(calls.items())))
    return figures


def worker_refreshes() -> dict[str, float]:
    """Job-item writes a stepping job's worker makes to stay off the index, per step."""
    with LocalRuntime(build_app(), workers=1) as local:
        job_id = local.start("plain", STEPS)
        with counting(local) as calls:
            while not local.get(job_id).status.is_terminal:
                local.sources[0].poll_once()
                local.clock.advance(STEP_EVERY)
    return {
        "steps": STEPS,
        "seconds_between_steps": STEP_EVERY.total_seconds(),
        "job_item_refreshes": calls["UpdateItem (job item)"],
        "refreshes_per_step": round(calls["UpdateItem (job item)"] / STEPS, 3),
    }


def main() -> None:
    results = {
        "sweep_shards": 32,
        "one_sweep_with_healthy_jobs_and_one_stalled": {str(h): sweep_with_healthy(h) for h in HEALTHY},
        f"three_sweeps_with_{STALLED}_stalled_jobs_never_helped": sweeps_with_stalled(STALLED),
        "worker_refresh": worker_refreshes(),
        "note": "the sweeper's calls include the handler's 4 GetQueueAttributes for the backlog gauges; "
        "healthy jobs add nothing: they are never due",
    }
    print(json.dumps(results, indent=2))
    out = Path(__file__).parent / "results" / "requests_per_sweep.json"
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
