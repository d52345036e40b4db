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
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
