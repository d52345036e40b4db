"""Cost per million operations, all-in, by operation kind — beside Lambda durable functions and Step
Functions Standard for the same work.

For each kind (effect-free step, step with one tool call, wait + signal, timer, one branch of a
``ctx.map`` fan-out) it runs ``JOBS``
jobs at once on the embedded stack (moto in-process, the SQS event sources at the template's batch
size) twice — jobs of ``SHORT`` and of ``LONG`` operations — and bills every botocore call
(``meter.py``: DynamoDB units from real item sizes including index writes, SQS requests, S3,
Lambda requests and measured runtime CPU at the template's memory and architecture). The
difference between the two lengths is the cost of one operation; what is left is the cost of a
job (start, end). ``all-in`` is one operation plus a job's cost spread over ``SPREAD`` operations
(a 1,000-step job, as the issue's figures are).

    .venv/bin/python bench/cost.py            # writes bench/results/cost.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from aetheris_infra.offline import use_offline_defaults

use_offline_defaults(POWERTOOLS_METRICS_DISABLED="true", POWERTOOLS_LOG_LEVEL="ERROR")

from meter import Bill, LambdaModel, Meter  # noqa: E402
from peer_costs import peer_costs, peer_job_overhead  # noqa: E402
from prices import MILLION, PRICES, PRICES_AS_OF  # noqa: E402
from template_facts import function_config, table_shapes  # noqa: E402
from workloads import KINDS, build_app, drive  # noqa: E402

JOBS = 100
SHORT, LONG = 2, 6
SPREAD = 1000
RESULTS = Path(__file__).parent / "results" / "cost.json"


def run(kind: str, n: int, jobs: int = JOBS) -> tuple[Bill, dict[str, Any]]:
    """Bill ``jobs`` concurrent jobs of ``n`` operations of ``kind`` from start to end."""
    from aetheris.testing import LocalRuntime

    meter = Meter()
    meter.install()
    started = time.perf_counter()
    with LocalRuntime(build_app(), workers=2) as local:
        meter.shapes = table_shapes(
            {"JobsTable": local.stack.jobs_table, "InboxTable": local.stack.inbox_table}
        )
        worker, signals = function_config("WorkerFunction"), function_config("SignalsFunction")
        for source in local.sources[:-1]:
            source.batch_size = worker.batch_size or 10
            source.handler = meter.function("worker", source.handler)
        local.sources[-1].batch_size = signals.batch_size or 10
        local.sources[-1].handler = meter.function("signals", local.sources[-1].handler)
        before = meter.snapshot()
        ids = []
        for _ in range(jobs):
            with meter.invocation("api"):
                ids.append(local.start(kind, n))
        drive(local, ids, meter)
        bill = meter.snapshot().minus(before)
    meter.uninstall()
    return bill, {"seconds": round(time.perf_counter() - started, 1)}


def priced(bill: Bill) -> dict[str, float]:
    """USD by line item for ``bill``."""
    lines: dict[str, float] = {
        "dynamodb_writes": bill.wru * PRICES.dynamodb_wru,
        "dynamodb_index_writes": bill.index_wru * PRICES.dynamodb_wru,
        "dynamodb_reads": bill.rru * PRICES.dynamodb_rru,
        "sqs": bill.sqs_requests * PRICES.sqs_request,
        "s3": bill.s3_put * PRICES.s3_put + bill.s3_get * PRICES.s3_get,
        "http_api": bill.lambda_requests["api"] * PRICES.http_api_request,
        "lambda_requests": sum(bill.lambda_requests.values()) * PRICES.lambda_request,
    }
    duration = 0.0
    for function, logical in (
        ("worker", "WorkerFunction"),
        ("signals", "SignalsFunction"),
        ("api", "ApiFunction"),
    ):
        config = function_config(logical)
        model = LambdaModel(config.memory_mb, config.architecture)
        io = {k.split(".", 1)[1]: float(n) for k, n in bill.lambda_io.items() if k.startswith(f"{function}.")}
        duration += model.duration_cost(model.seconds(bill.lambda_cpu_s[function], io))
    lines["lambda_duration"] = duration
    lines["total"] = sum(lines.values())
    return lines


def per(bill: Bill, count: float) -> dict[str, Any]:
    """Counts per operation (or per job) of ``bill`` spread over ``count``."""
    return {
        "calls": {k: round(v / count, 3) for k, v in sorted(bill.calls.items()) if v},
        "wru": round(bill.wru / count, 3),
        "index_wru": round(bill.index_wru / count, 3),
        "rru": round(bill.rru / count, 3),
        "items_read": round(bill.items_read / count, 2),
        "sqs_requests": round(bill.sqs_requests / count, 3),
        "lambda_requests": {k: round(v / count, 3) for k, v in bill.lambda_requests.items()},
        "runtime_cpu_ms": {k: round(1000 * v / count, 2) for k, v in bill.lambda_cpu_s.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kinds", nargs="*", default=list(KINDS), choices=KINDS)
    parser.add_argument(
        "--plain-moto",
        action="store_true",
        help="without aetheris_infra.moto_speedups (the same requests and units, only slower)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the results")
    args = parser.parse_args()
    if not args.plain_moto:
        from aetheris._local import moto_speedups

        moto_speedups.install()
    worker = function_config("WorkerFunction")
    model = LambdaModel(worker.memory_mb, worker.architecture)
    previous = json.loads(args.out.read_text()).get("kinds", {}) if args.out.exists() else {}
    rows: dict[str, Any] = {k: v for k, v in previous.items() if k not in args.kinds}
    for kind in args.kinds:
        short, short_info = run(kind, SHORT)
        long, long_info = run(kind, LONG)
        op = long.minus(short)
        ops = JOBS * (LONG - SHORT)
        _steady_cpu(op, long)
        op_usd = {k: v / ops for k, v in priced(op).items()}
        job_usd = (priced(short)["total"] - op_usd["total"] * SHORT * JOBS) / JOBS
        front_door = priced(short)["http_api"] / JOBS + PRICES.lambda_request  # one API call
        peer = peer_costs(kind, model, front_door)
        peer_job = peer_job_overhead(model)
        rows[kind] = {
            "per_operation_usd_per_million": {k: round(v * MILLION, 3) for k, v in op_usd.items()},
            "per_job_usd_per_million_jobs": round(job_usd * MILLION, 3),
            "all_in_usd_per_million": round((op_usd["total"] + job_usd / SPREAD) * MILLION, 3),
            "ldf_usd_per_million": round((peer.ldf + peer_job.ldf / SPREAD) * MILLION, 3),
            "sfn_usd_per_million": round((peer.sfn + peer_job.sfn / SPREAD) * MILLION, 3),
            "per_operation_counts": per(op, ops),
            "per_job_counts": per(short.minus(_scaled(op, SHORT * JOBS / ops)), JOBS),
            "mean_step_batch": round(short.records["worker"] / max(1, short.lambda_requests["worker"]), 2),
            "run_seconds": [short_info["seconds"], long_info["seconds"]],
        }
        print(f"{kind:6} all-in ${rows[kind]['all_in_usd_per_million']:.2f}/M", flush=True)
        _write(rows, worker, model, args.out)
    print(table(rows))


def _write(rows: dict[str, Any], worker: Any, model: LambdaModel, out: Path = RESULTS) -> None:
    results = {
        "what": "USD per million operations, all-in, us-east-1 list prices; ours measured on the embedded "
        "stack (counts exact, Lambda duration modelled from measured CPU), peers computed from pricing",
        "prices_as_of": PRICES_AS_OF,
        "jobs_concurrently": JOBS,
        "lengths": [SHORT, LONG],
        "all_in_spread_over_operations": SPREAD,
        "lambda": {
            "memory_mb": worker.memory_mb,
            "architecture": worker.architecture,
            "cpu_scale": round(model.cpu_scale, 2),
            "latency_s": model.latency_s,
        },
        "step_batch_size": worker.batch_size,
        "machine": _machine(),
        "kinds": {k: rows[k] for k in KINDS if k in rows},
    }
    out.write_text(json.dumps(results, indent=2) + "\n")


def _steady_cpu(op: Bill, long: Bill) -> None:
    """An operation's CPU as its share of the long run's: CPU per message handled (per API call)
    times the messages (calls) one operation adds. The plain difference of two runs' CPU is noise
    on a busy machine (it once came out negative); the counts' difference is exact."""
    for function, cpu in long.lambda_cpu_s.items():
        per = long.records[function] or long.lambda_requests[function]
        added = op.records[function] if long.records[function] else op.lambda_requests[function]
        op.lambda_cpu_s[function] = cpu / per * added if per else 0.0


def _scaled(bill: Bill, factor: float) -> Bill:
    out = Bill()
    for name in ("calls", "lambda_requests", "lambda_cpu_s", "lambda_io", "records"):
        setattr(out, name, type(getattr(bill, name))({k: v * factor for k, v in getattr(bill, name).items()}))
    for name in ("wru", "index_wru", "rru", "items_read", "bytes_read", "sqs_requests", "s3_put", "s3_get"):
        setattr(out, name, getattr(bill, name) * factor)
    return out


def table(rows: dict[str, Any]) -> str:
    names = {
        "step": "effect-free step",
        "tool": "step with one tool call",
        "wait": "wait + signal",
        "timer": "timer",
        "branch": "fan-out branch (ctx.map)",
    }
    lines = [
        f"{'USD per million, all-in':28} {'Aetheris':>9} {'LDF':>8} {'SFN Std':>8}   "
        "DDB-W  DDB-IdxW  DDB-R   SQS  Lambda",
    ]
    for kind, row in rows.items():
        op = row["per_operation_usd_per_million"]
        lambda_usd = op["lambda_requests"] + op["lambda_duration"] + op["http_api"]
        lines.append(
            f"{names[kind]:28} {row['all_in_usd_per_million']:9.2f} {row['ldf_usd_per_million']:8.2f} "
            f"{row['sfn_usd_per_million']:8.2f}   {op['dynamodb_writes']:5.2f}  "
            f"{op['dynamodb_index_writes']:8.2f}"
            f"  {op['dynamodb_reads']:5.2f} {op['sqs']:5.2f}  {lambda_usd:6.2f}"
        )
    return "\n".join(lines)


def _machine() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, shared"


if __name__ == "__main__":
    main()
