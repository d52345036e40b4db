"""Our local runtime's speed alone, for a before/after comparison of two code trees.

Prints one JSON line: ``LocalRuntime`` steps/s (wall and per CPU second) on 3-step and 20-step
jobs, the drift over ``--drift-jobs`` 3-step jobs in a row (CPU per job, last tenth over first),
and signal → resume on ``aetheris dev``'s stack (``LocalStack``, real clock). Run it alternately
against the tree before a change and after it (``PYTHONPATH`` set to the other tree's
``layers/runtime`` and ``infra``), so both see the same machine:

    for i in 1 2 3; do
        PYTHONPATH=/tmp/before/layers/runtime:/tmp/before/infra .venv/bin/python bench/local_speed.py
        .venv/bin/python bench/local_speed.py
    done

``--components`` instead prints where a step's CPU goes (this process's threads, per-thread CPU
clocks around the layers of a call, outermost call only): moto's backend models (the DynamoDB
and SQS state: conditions, transactions, queries, queues), moto's request handlers around them,
the HTTP stubber (wire path) or ``moto_direct``'s glue (direct path), botocore's client, and
everything outside AWS calls (our engine, the handlers, Powertools, pydantic).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from aetheris_infra.offline import use_offline_defaults

use_offline_defaults(POWERTOOLS_METRICS_DISABLED="true", POWERTOOLS_LOG_LEVEL="ERROR")

from peer_systems import MARKS, Dev, Ours  # noqa: E402

import aetheris  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--drift-jobs", type=int, default=500)
    parser.add_argument("--signals", type=int, default=5)
    parser.add_argument(
        "--components", type=int, metavar="STEPS", help="CPU per step by layer, STEPS-step jobs"
    )
    args = parser.parse_args()
    if args.components:
        print(json.dumps(components(args.jobs, args.components)), flush=True)
        return
    out: dict[str, object] = {"tree": str(Path(aetheris.__file__).parents[3])}
    with Ours() as ours:
        ours.run_job(3)
        for steps in (3, 20):
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(args.jobs):
                ours.run_job(steps)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            total = steps * args.jobs
            out[f"{steps}_step"] = {
                "steps_per_s": round(total / wall, 1),
                "steps_per_cpu_s": round(total / cpu, 1),
            }
    with Ours() as ours:
        cpus = []
        for _ in range(args.drift_jobs):
            cpu = time.process_time()
            ours.run_job(3)
            cpus.append(time.process_time() - cpu)
    tenth = max(1, args.drift_jobs // 10)
    first, last = statistics.mean(cpus[:tenth]), statistics.mean(cpus[-tenth:])
    out["drift"] = {
        "jobs": args.drift_jobs,
        "first_tenth_cpu_ms": round(1000 * first, 1),
        "last_tenth_cpu_ms": round(1000 * last, 1),
        "last_over_first": round(last / first, 2),
    }
    MARKS.clear()
    with Dev() as dev:
        resumes = sorted(dev.signal_resume() for _ in range(args.signals))
    out["dev_signal_resume_ms"] = {
        "p50": round(1000 * statistics.median(resumes), 1),
        "max": round(1000 * resumes[-1], 1),
        "samples": len(resumes),
    }
    print(json.dumps(out), flush=True)


_LAYERS = ("models", "handlers", "stubber", "direct", "botocore")


def components(jobs: int, steps: int) -> dict[str, object]:
    """CPU ms per step inside each layer of an AWS call, exclusive of the layers it calls."""
    import threading
    from collections import Counter

    import botocore.client
    from moto.core.botocore_stubber import BotocoreStubber
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.responses import DynamoHandler
    from moto.sqs.models import SQSBackend
    from moto.sqs.responses import SQSResponse

    try:
        from aetheris._local import moto_direct
    except ImportError:  # a tree from before it
        moto_direct = None

    inside: Counter[str] = Counter()  # CPU seconds, inclusive of inner layers
    state = threading.local()

    def timed(owner: type, name: str, layer: str) -> None:
        method = getattr(owner, name)

        def wrapper(*args: object, **kwargs: object) -> object:
            depth = getattr(state, layer, 0)
            setattr(state, layer, depth + 1)
            started = time.thread_time()
            try:
                return method(*args, **kwargs)
            finally:
                setattr(state, layer, depth)
                if depth == 0:
                    inside[layer] += time.thread_time() - started

        setattr(owner, name, wrapper)

    for name in (
        "update_item",
        "query",
        "transact_write_items",
        "get_item",
        "put_item",
        "batch_get_item",
        "scan",
        "delete_item",
        "describe_table",
    ):
        timed(DynamoDBBackend, name, "models")
    for name in (
        "send_message",
        "send_message_batch",
        "receive_message",
        "delete_message",
        "delete_message_batch",
        "change_message_visibility",
        "get_queue_attributes",
        "get_queue_url",
    ):
        timed(SQSBackend, name, "models")
    timed(DynamoHandler, "call_action", "handlers")
    timed(SQSResponse, "call_action", "handlers")
    timed(BotocoreStubber, "__call__", "stubber")
    if moto_direct is not None:
        timed(moto_direct._Direct, "__call__", "direct")
    timed(botocore.client.BaseClient, "_make_api_call", "botocore")
    with Ours() as ours:
        ours.run_job(steps)
        inside.clear()
        cpu = time.process_time()
        for _ in range(jobs):
            ours.run_job(steps)
        cpu = time.process_time() - cpu
    total = jobs * steps
    per_step = {layer: 1000 * inside[layer] / total for layer in _LAYERS}
    exclusive = {
        "moto_models": per_step["models"],
        "moto_handlers": per_step["handlers"] - per_step["models"],
        "moto_wire_stubber": max(0.0, per_step["stubber"] - per_step["handlers"])
        if per_step["stubber"]
        else 0.0,
        "moto_direct_glue": max(0.0, per_step["direct"] - per_step["handlers"])
        if per_step["direct"]
        else 0.0,
        "botocore": per_step["botocore"] - per_step["stubber"] - per_step["direct"],
        "outside_aws_calls": 1000 * cpu / total - per_step["botocore"],
    }
    return {
        "steps_per_job": steps,
        "jobs": jobs,
        "cpu_ms_per_step": round(1000 * cpu / total, 2),
        "ms_per_step": {k: round(v, 2) for k, v in exclusive.items()},
    }


if __name__ == "__main__":
    main()
