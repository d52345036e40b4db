"""What ``ctx.continue_as_new`` buys a long job: a cold load and a replay of the same job, after the
same number of steps, run as one log or as short runs.

    .venv/bin/python bench/continue_as_new.py            # 1,000 steps; runs of 50
    .venv/bin/python bench/continue_as_new.py --steps 200 --run-length 20

For each shape the job runs to its end on ``LocalRuntime`` (moto, one worker); then a worker that
never saw it loads it cold (``JobStore.load``: the Query requests, the items and bytes they
returned) and replays what it loaded against the job function (``replay_events``: runtime CPU).
Prints a table and writes ``bench/results/continue_as_new.json``. On moto: request and item counts
are what DynamoDB would be asked and return; the CPU is this machine's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from aetheris_infra.offline import use_offline_defaults

use_offline_defaults(POWERTOOLS_METRICS_DISABLED="true", POWERTOOLS_LOG_LEVEL="ERROR")

from cost import _machine  # noqa: E402

from aetheris import App, JobContext, StepContext  # noqa: E402
from aetheris._engine.replayer import replay_events  # noqa: E402
from aetheris._store.jobs import JobStore  # noqa: E402
from aetheris.events import Event  # noqa: E402
from aetheris.testing import LocalRuntime  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "continue_as_new.json"


def plain(sctx: StepContext, i: int) -> int:
    return i


def build_app(run_length: int) -> App:
    app = App("bench-continue")

    @app.job("long")
    def long(ctx: JobContext, state: dict[str, int]) -> int:
        done, total = state["done"], state["total"]
        while done < total:
            ctx.step(plain, done)
            done += 1
            if run_length and done % run_length == 0 and done < total:
                ctx.continue_as_new({"done": done, "total": total})
        return done

    return app


def measure(steps: int, run_length: int) -> dict[str, Any]:
    app = build_app(run_length)
    with LocalRuntime(app, workers=1) as local:
        job_id = local.start("long", {"done": 0, "total": steps})
        view = local.wait(job_id, timeout=3600)
        assert view.result == steps, view
        table = local.runtimes[0].services.jobs.table
        seen: dict[str, int] = {"requests": 0, "items": 0, "bytes": 0}

        def heard(parsed: dict[str, Any], **_: Any) -> None:
            seen["requests"] += 1
            seen["items"] += len(parsed.get("Items", []))
            seen["bytes"] += sum(len(json.dumps(item)) for item in parsed.get("Items", []))

        table.client.meta.events.register("after-call.dynamodb.Query", heard)
        snapshot = JobStore(table).load(job_id)
        table.client.meta.events.unregister("after-call.dynamodb.Query", heard)
        assert snapshot is not None
        events = [Event.from_item(item) for item in snapshot.events]
        stored = local.export(job_id)
        started = time.process_time()
        report = replay_events(app.get("long"), stored.input_json, events)
        cpu_ms = (time.process_time() - started) * 1000
        assert report.consistent and report.reached_end, report
    return {
        "shape": f"runs of {run_length}" if run_length else "one log",
        "steps": steps,
        "runs": view.run,
        "cold_load_requests": seen["requests"],
        "cold_load_items": seen["items"],
        "cold_load_bytes": seen["bytes"],
        "events_replayed": len(events),
        "replay_cpu_ms": round(cpu_ms, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--run-length", type=int, default=50)
    args = parser.parse_args(argv)
    rows = [measure(args.steps, 0), measure(args.steps, args.run_length)]
    header = list(rows[0])
    print("  ".join(f"{h:>18}" for h in header))
    for row in rows:
        print("  ".join(f"{row[h]!s:>18}" for h in header))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    result = {"machine": _machine(), "backend": "moto (in-process)", "rows": rows}
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
