"""What a status change costs as the job's input grows: write and read units per tick of a job that
steps, parks on a signal, wakes and ends — with a 20 KB input and with a tiny one.

A status change rewrites the job item (and moves it between partitions of the ``by-status`` index);
a job item that carries its input inline, projected whole into the index, pays for the input on
every park and wake, and every tick's Query reads it again. One job on the embedded stack (moto
in-process, one worker), driven one tick at a time, every botocore call billed by ``meter.py``
(DynamoDB units from real item sizes, index writes from the template's projections).

    .venv/bin/python bench/status_change.py      # writes bench/results/status_change.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from aetheris_infra.offline import use_offline_defaults

use_offline_defaults(POWERTOOLS_METRICS_DISABLED="true", POWERTOOLS_LOG_LEVEL="ERROR")

from cost import _machine  # noqa: E402
from meter import Bill, Meter  # noqa: E402
from template_facts import table_shapes  # noqa: E402

from aetheris import App, JobContext, StepContext  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "status_change.json"
INPUTS = {"20 KB": 20 * 1024, "tiny": 8}
TICKS = ("step (PENDING -> RUNNING)", "park (-> WAITING)", "wake (-> RUNNING)", "step", "end (-> COMPLETED)")


def plain(sctx: StepContext, i: int) -> int:
    return i


def build_app() -> App:
    app = App("status")

    @app.job("park")
    def park(ctx: JobContext, payload: dict[str, str]) -> int:
        ctx.step(plain, 0)
        ctx.wait_for_signal("go")
        return ctx.step(plain, 1)

    return app


def figures(bill: Bill) -> dict[str, Any]:
    return {
        "wru": round(bill.wru, 1),
        "index_wru": round(bill.index_wru, 1),
        "rru": round(bill.rru, 1),
        "requests": sum(bill.calls.values()),
    }


def measure(input_bytes: int) -> dict[str, Any]:
    from aetheris.testing import LocalRuntime

    meter = Meter().install()
    ticks: dict[str, Any] = {}
    try:
        with LocalRuntime(build_app(), workers=1) as local:
            meter.shapes = table_shapes(
                {"JobsTable": local.stack.jobs_table, "InboxTable": local.stack.inbox_table}
            )
            source = local.sources[0]
            with meter.paused():
                job_id = local.start("park", {"text": "x" * input_bytes})
            for name in TICKS:
                if name.startswith("wake"):
                    with meter.paused():
                        local.signal(job_id, "go", {"ok": True})
                        local.sources[-1].poll_once()  # the signal into the inbox (not billed)
                before = meter.snapshot()
                result = source.poll_once()
                if result.received != 1 or result.crashed is not None:
                    raise RuntimeError(f"tick {name!r} did not run cleanly: {result}")
                ticks[name] = figures(meter.snapshot().minus(before))
            with meter.paused():
                status = local.get(job_id).status.value
    finally:
        meter.uninstall()
    if status != "COMPLETED":
        raise RuntimeError(f"the job ended {status}")
    park, wake = ticks[TICKS[1]], ticks[TICKS[2]]
    return {
        "ticks": ticks,
        "park_plus_wake_wru": round(park["wru"] + park["index_wru"] + wake["wru"] + wake["index_wru"], 1),
        "rru_per_tick": round(sum(t["rru"] for t in ticks.values()) / len(ticks), 2),
    }


def main() -> None:
    results = {
        "what": "one job that steps, parks on a signal, wakes and ends, billed per tick (WRU: table, "
        "index_wru: index writes; the signal's own ingest is not billed)",
        "machine": _machine(),
        "inputs": {label: measure(size) for label, size in INPUTS.items()},
    }
    for label, row in results["inputs"].items():
        print(
            f"{label:>6} input: park + wake {row['park_plus_wake_wru']} WRU (index included), "
            f"{row['rru_per_tick']} RRU per tick"
        )
        for name, t in row["ticks"].items():
            print(f"    {name:28} WRU {t['wru']:6} index {t['index_wru']:6} RRU {t['rru']:6}")
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
