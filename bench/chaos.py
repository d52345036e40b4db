"""Chaos run: the runtime in real processes under kills, pauses, injected AWS errors and duplicate,
stale and reordered messages — and a check that nothing was lost, duplicated or committed stale.

    .venv/bin/python bench/chaos.py                          # the full run (issue 11's targets, below)
    .venv/bin/python bench/chaos.py --seed 7 --jobs 36 --workload ci --min-jobs 36 --min-faults 150 \
        --min-cancels 0 --some-crash-points                  # the CI run's size (tests/chaos/)
    .venv/bin/python bench/chaos.py --workload ci --enable last_step_cancels   # one element more

The full run's targets: >= 300 jobs, >= 5,000 faults, >= 100 cancels, every crash point hit, 0
violations, with every workload element on (``--workload full``; ``Workload`` in
``aetheris_infra/chaos/workload.py`` lists the elements). ``--workload ci`` is what the suite runs:
the elements today's engine passes.

It prints progress, then the report's table, and writes ``bench/results/chaos.json``. A seed
names the whole plan (jobs, signals, fault streams, crash plans, chaos actions); process timing
still varies between runs, so a failed seed is re-run with the same command to reproduce it.
The run's files (journal, external ledger, fault log, worker logs, observations.json) stay in the
printed run directory when the run fails or with ``--keep``. Exit status 1 if an invariant broke
or a target (``--min-jobs``, ``--min-faults``, every crash point hit) was missed.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aetheris_infra.offline import use_offline_defaults

use_offline_defaults()

from aetheris_infra.chaos import ChaosOptions, ChaosReport, ChaosRun, Observations, check  # noqa: E402
from aetheris_infra.chaos.workload import ELEMENTS, Workload, walks  # noqa: E402

WORKLOADS = {"full": Workload.full, "ci": Workload.ci, "happy": Workload.happy}

RESULTS = Path(__file__).parent / "results" / "chaos.json"


def by_element(observations: Observations, report: ChaosReport) -> dict[str, Any]:
    """Per workload element: the jobs whose plan walks it, and how many of them have a violation."""
    index_of = {job_id: index for index, job_id in observations.job_ids.items()}
    failing: set[int] = set()
    for violation in report.violations:
        named = re.match(r"^job (\d+)\b", violation)
        if named:
            failing.add(int(named.group(1)))
        elif (job_id := violation.split(":", 1)[0]) in index_of:
            failing.add(index_of[job_id])
    verdicts: dict[str, Any] = {}
    for plan in observations.plans:
        for name in walks(plan) or ["happy_path"]:
            entry = verdicts.setdefault(name, {"jobs": 0, "failing_jobs": 0})
            entry["jobs"] += 1
            entry["failing_jobs"] += plan.index in failing
    return dict(sorted(verdicts.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--wave-size", type=int, default=50, help="jobs per wave (fresh tables each)")
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="full")
    parser.add_argument(
        "--focus",
        action="append",
        default=[],
        choices=sorted(ELEMENTS),
        metavar="ELEMENT",
        help="only these elements, on every job they fit (overrides --workload)",
    )
    parser.add_argument(
        "--each",
        action="append",
        default=[],
        metavar="ELEMENT[+ELEMENT]",
        help="job i walks only the i-th of these elements (in turn): which elements fail, in one run",
    )
    parser.add_argument("--enable", action="append", default=[], choices=sorted(ELEMENTS), metavar="ELEMENT")
    parser.add_argument("--disable", action="append", default=[], choices=sorted(ELEMENTS), metavar="ELEMENT")
    parser.add_argument(
        "--stall-window", type=float, default=60.0, help="a wave with no commit for this long is stuck (s)"
    )
    parser.add_argument(
        "--max-wave", type=float, default=None, help="ceiling per wave, seconds (default none)"
    )
    parser.add_argument("--min-jobs", type=int, default=300)
    parser.add_argument("--min-faults", type=int, default=5000)
    parser.add_argument("--min-cancels", type=int, default=100)
    parser.add_argument(
        "--some-crash-points", action="store_true", help="do not require every crash point to be hit"
    )
    parser.add_argument("--run-dir", default=None, help="keep the run's files here")
    parser.add_argument("--keep", action="store_true", help="keep the run directory even if the run passed")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    base = Workload.focused(tuple(args.focus)) if args.focus else WORKLOADS[args.workload]()
    workload = base.with_elements(tuple(args.enable), tuple(args.disable))
    options = ChaosOptions(
        jobs=args.jobs,
        workers=args.workers,
        wave_size=args.wave_size,
        stall_window_s=args.stall_window,
        max_wave_s=args.max_wave,
        workload=workload,
        each=tuple(args.each),
        run_dir=args.run_dir,
        progress=True,
    )
    command = " ".join(["python bench/chaos.py", *(argv if argv is not None else sys.argv[1:])])
    print(f"workload: {', '.join(workload.enabled()) or 'happy path only'}", flush=True)
    print(f"chaos run: {command}", flush=True)
    run = ChaosRun(args.seed, options)
    print(f"run directory: {run.run_dir}", flush=True)
    started = time.monotonic()
    observations = run.run()
    report = check(observations)
    short = report.targets(args.min_jobs, args.min_faults, not args.some_crash_points, args.min_cancels)
    elements = by_element(observations, report)
    print()
    print(report.table())
    print("\nby workload element (jobs walking it / of them with a violation):")
    for name, verdict in elements.items():
        print(f"  {name:24} {verdict['jobs']:4} / {verdict['failing_jobs']}")
    for miss in short:
        print(f"target missed: {miss}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    options_json = {k: v for k, v in asdict(options).items() if k not in ("run_dir", "progress")}
    document = {
        "command": command,
        "wall_clock_s": round(time.monotonic() - started, 1),
        "options": options_json,
        "workload": workload.enabled(),
        "by_element": elements,
        "targets": {
            "min_jobs": args.min_jobs,
            "min_faults": args.min_faults,
            "min_cancels": args.min_cancels,
            "all_crash_points": not args.some_crash_points,
            "missed": short,
        },
        "report": report.to_json(),
    }
    args.out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"written: {args.out}")
    passed = report.ok and not short
    if passed and not args.keep and args.run_dir is None:
        shutil.rmtree(run.run_dir, ignore_errors=True)
    else:
        print(f"run files kept in {run.run_dir}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
