"""The lease heartbeat keeps a long step's slot, on whatever clock the runtime runs on.

Under ``LocalRuntime``'s fake clock the heartbeat beats when the test moves time, exactly as leases
expire there: a step that runs for several lease lengths keeps its slot, no other worker takes it
over, and its body runs once.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from aetheris import App, EventType, JobContext, JobStatus, StepContext, TickOutcome
from aetheris._clock import to_millis
from aetheris._store import schema
from aetheris.testing import LocalRuntime
from tests.functional.jobs import Calls
from tests.functional.test_races import deliver, receive_one

DEADLINE = 10.0


def lease_until(local: LocalRuntime, job_id: str, seq: int) -> int:
    item = local.dynamodb.get_item(
        TableName=local.settings.jobs_table,
        Key={"pk": {"S": job_id}, "sk": {"S": schema.event_sk(seq)}},
        ConsistentRead=True,
    )["Item"]
    return int(item["lease_until"]["N"])


def test_heartbeat_keeps_the_lease_of_a_step_that_outlives_it() -> None:
    calls, entered, gate = Calls(), threading.Event(), threading.Event()
    app = App("long-step")

    def long_step(sctx: StepContext) -> str:
        calls.step("long")
        entered.set()
        assert gate.wait(DEADLINE), "the test never let the step finish"
        return "finished"

    @app.job("long")
    def job(ctx: JobContext, _: None) -> str:
        return ctx.step(long_step)

    lease = timedelta(seconds=60)
    with LocalRuntime(app, server=True, lease=lease) as local, ThreadPoolExecutor(1) as pool:
        job_id = local.start("long")
        message = receive_one(local)
        holder = pool.submit(deliver, local, 0, message)
        assert entered.wait(DEADLINE)
        for _ in range(6):  # three lease lengths pass while the body runs
            local.clock.advance(lease / 2)
            deadline = time.monotonic() + DEADLINE
            while lease_until(local, job_id, 1) <= to_millis(local.clock.now()):
                assert time.monotonic() < deadline, "the heartbeat did not renew the lease"
                time.sleep(0.01)
        # The message came back after its visibility timeout: another worker tries the tick.
        other = local.runtimes[1].handle_tick(message["Body"], receive_count=2)
        gate.set()
        assert holder.result(timeout=DEADLINE) == {"batchItemFailures": []}
        local.sqs.delete_message(QueueUrl=local.stack.step_queue_url, ReceiptHandle=message["ReceiptHandle"])
        view = local.wait(job_id)
        (commit,) = [e for e in local.events(job_id) if e.type is EventType.STEP_COMMITTED]

    assert other is TickOutcome.DEFERRED, "the slot was still held: the redelivery waits, it does not run"
    assert view.status is JobStatus.COMPLETED and view.result == "finished"
    assert calls.steps["long"] == 1
    assert commit.worker_id == "local-worker-1" and commit.fence == 1 and commit.reclaimed_from is None
