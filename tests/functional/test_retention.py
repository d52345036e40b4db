"""Retention: every item (log, ledger, inbox, input) is written with a provisional ``expires_at``
(written at + retention + horizon), the job item keeps the earliest as its floor, and the terminal
commit gives the job item end + retention. So a finished job is gone between retention and
retention + horizon after its end, a live one never loses an item (the sweeper extends a job that
outlives its floor), and the final tick does the same few requests at any length. A job from before
provisional TTLs keeps the old end-of-job pass. moto never deletes expired items, so the tests read
the TTL attribute itself and compare it with the fake clock."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from aetheris import App, EventType, JobContext, JobStatus, NonRetryableError, StepContext
from aetheris._store import schema
from aetheris._store.retention import Retention
from aetheris.testing import LocalRuntime

RETENTION = timedelta(days=30)  # Settings' defaults, which LocalRuntime uses
HORIZON = timedelta(days=30)
ENDINGS = (EventType.JOB_COMPLETED, EventType.JOB_FAILED, EventType.JOB_CANCELLED)


def retention_app() -> App:
    app = App("retention")

    def charge(sctx: StepContext, amount: int) -> str:
        return sctx.tool("payments.charge", lambda: f"ch-{amount}")

    @app.job("approved_charge")
    def approved_charge(ctx: JobContext, amount: int) -> str:
        approval = ctx.wait_for_signal("approval")
        if not approval["approved"]:
            raise NonRetryableError("refused")
        return ctx.step(charge, amount)

    return app


def items(local: LocalRuntime, job_id: str) -> list[dict[str, Any]]:
    """Every item of the job in both tables, as stored."""
    found = []
    for table in (local.stack.jobs_table, local.stack.inbox_table):
        answer = local.dynamodb.query(
            TableName=table,
            KeyConditionExpression="pk = :job",
            ExpressionAttributeValues={":job": {"S": job_id}},
            ConsistentRead=True,
        )
        found += [{"table": table, **item} for item in answer["Items"]]
    return found


def expiry(item: dict[str, Any]) -> int | None:
    value = item.get(schema.TTL_ATTRIBUTE)
    return None if value is None else int(value["N"])


def ended_at(local: LocalRuntime, job_id: str) -> datetime:
    (end,) = [e for e in local.events(job_id) if e.type in ENDINGS]
    return end.at


def ended_at_plus_retention(local: LocalRuntime, job_id: str) -> int:
    return int((ended_at(local, job_id) + RETENTION).timestamp())


def epoch(at: datetime) -> int:
    return int(at.timestamp())


def job_item(found: list[dict[str, Any]]) -> dict[str, Any]:
    (job,) = [i for i in found if i["sk"]["S"] == schema.JOB_SK]
    return job


def others(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [i for i in found if i["sk"]["S"] != schema.JOB_SK]


def make_old(local: LocalRuntime, job_id: str) -> None:
    """Turn a job into one written before provisional TTLs and the input item: no floor, no TTL on
    any item, the input inline on the job item."""
    client, table = local.dynamodb, local.stack.jobs_table
    for item in items(local, job_id):
        key = {"pk": item["pk"], "sk": item["sk"]}
        name = item.pop("table")
        if item["sk"]["S"] == schema.INPUT_SK:
            client.delete_item(TableName=table, Key=key)
            client.update_item(
                TableName=table,
                Key={"pk": item["pk"], "sk": {"S": schema.JOB_SK}},
                UpdateExpression="SET #input = :input REMOVE #floor",
                ExpressionAttributeNames={"#input": "input", "#floor": schema.TTL_FLOOR},
                ExpressionAttributeValues={":input": item["input"]},
            )
        elif schema.TTL_ATTRIBUTE in item:
            client.update_item(
                TableName=name,
                Key=key,
                UpdateExpression="REMOVE #ttl",
                ExpressionAttributeNames={"#ttl": schema.TTL_ATTRIBUTE},
            )
    local.runtimes[0].services.jobs._forget(job_id)


@contextmanager
def requests(local: LocalRuntime) -> Iterator[Counter[str]]:
    """The DynamoDB and SQS requests made while the block runs, by operation."""
    calls: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    for client in (local.dynamodb, local.sqs):
        client.meta.events.register("provide-client-params.*.*", count)
    try:
        yield calls
    finally:
        for client in (local.dynamodb, local.sqs):
            client.meta.events.unregister("provide-client-params.*.*", count)


def kinds(found: list[dict[str, Any]]) -> set[str]:
    return {item["sk"]["S"][:3] if item["table"].endswith("JobsTable") else "inbox" for item in found}


@pytest.mark.parametrize(
    ("approval", "cancel", "status"),
    [
        pytest.param({"approved": True}, False, JobStatus.COMPLETED, id="completed"),
        pytest.param({"approved": False}, False, JobStatus.FAILED, id="failed"),
        pytest.param(None, True, JobStatus.CANCELLED, id="cancelled"),
    ],
)
def test_retention_finished_job_every_item_expires_between_retention_and_horizon_after_its_end(
    approval: dict[str, bool] | None, cancel: bool, status: JobStatus
) -> None:
    with LocalRuntime(retention_app()) as local:
        job_id = local.start("approved_charge", 12)
        local.run_until_idle()
        local.signal(job_id, "unrelated", "kept in the inbox, never consumed")
        if cancel:
            local.cancel(job_id)
        else:
            local.signal(job_id, "approval", approval)
        view = local.wait(job_id)
        local.clock.advance(timedelta(hours=1))  # the TTL is the end's time + retention, not now's
        found = items(local, job_id)
        end = ended_at(local, job_id)

    assert view.status is status
    assert {"EV#", "EW#", "IN#", "inbox"} <= kinds(found)
    if status is JobStatus.COMPLETED:
        assert "FX#" in kinds(found)  # the charge's ledger entry
    job = job_item(found)
    assert expiry(job) == epoch(end + RETENTION), "the job item expires retention after the end"
    for item in others(found):
        ttl = expiry(item)
        assert ttl is not None and epoch(end + RETENTION) <= ttl <= epoch(end + RETENTION + HORIZON), item
    assert schema.DUE_INDEX_PK not in job, "nothing left to do: the job is off the by-due index"


def live_items_covered(found: list[dict[str, Any]], now: datetime) -> None:
    """A live job: no TTL on its job item; every other item at or above the floor, and the floor a
    full retention (and half a horizon) ahead of ``now``."""
    job = job_item(found)
    floor = int(job[schema.TTL_FLOOR]["N"])
    assert schema.TTL_ATTRIBUTE not in job
    assert floor >= epoch(now + RETENTION + HORIZON / 2) - 1
    for item in others(found):
        ttl = expiry(item)
        assert ttl is not None and ttl >= floor, item


def test_retention_waiting_job_items_carry_provisional_ttls_above_its_floor() -> None:
    with LocalRuntime(retention_app()) as local:
        job_id = local.start("approved_charge", 12)
        local.run_until_idle()
        local.signal(job_id, "unrelated", 1)
        local.run_until_idle()
        found = items(local, job_id)
        status = local.get(job_id).status
        now = local.clock.now()

    assert status is JobStatus.WAITING
    assert {"EV#", "EW#", "IN#", "inbox"} <= kinds(found)
    live_items_covered(found, now)


def test_retention_running_job_between_steps_items_are_above_its_floor() -> None:
    app = App("running")

    def one(sctx: StepContext) -> int:
        return sctx.tool("one", lambda: 1)

    @app.job("two")
    def two(ctx: JobContext, _: None) -> int:
        return ctx.step(one) + ctx.step(one)

    with LocalRuntime(app, workers=1) as local:
        job_id = local.start("two", None)
        source = local.sources[0]
        while local.get(job_id).status is not JobStatus.RUNNING:
            assert source.poll_once().received, "the job should be ticked until it runs"
        found = items(local, job_id)
        now = local.clock.now()

    assert "FX#" in kinds(found)
    live_items_covered(found, now)


def test_retention_job_parked_past_its_floor_is_extended_by_the_sweeper_and_loses_nothing() -> None:
    with LocalRuntime(retention_app()) as local:
        job_id = local.start("approved_charge", 12)
        local.run_until_idle()
        local.signal(job_id, "unrelated", "an early signal it never waits for")
        local.run_until_idle()
        before = {(i["table"], i["sk"]["S"]) for i in items(local, job_id)}
        extended = []
        for _ in range(40):  # 200 days parked on a signal without timeout: past its floor thrice
            local.clock.advance(timedelta(days=5))
            extended += local.sweep()["extended"]
            live_items_covered(items(local, job_id), local.clock.now())
        local.signal(job_id, "approval", {"approved": True})
        view = local.wait(job_id)
        found = items(local, job_id)
        end = ended_at(local, job_id)
        unrelated = local.runtimes[0].services.inbox.pending(job_id, "unrelated", set())

    assert view.status is JobStatus.COMPLETED
    assert before <= {(i["table"], i["sk"]["S"]) for i in found}, "no item was lost"
    assert len(unrelated) == 1, "the early signal is still there"
    # Once per half horizon (15 days) of the 200: the amortised O(1) per step of the pass.
    assert extended == [job_id] * len(extended) and 12 <= len(extended) <= 14
    for item in others(found):
        ttl = expiry(item)
        assert ttl is not None and ttl >= epoch(end + RETENTION), item


def final_tick_requests(entries: int) -> Counter[str]:
    """The requests of a job's last tick (its signal's ingest included), after ``entries`` tool
    calls in steps of at most 100: the items an end-of-job pass would have to touch."""
    app = App("long")

    @app.job("many")
    def many(ctx: JobContext, n: int) -> int:
        total = sum(ctx.step(tools, min(100, n - done)) for done in range(0, n, 100))
        ctx.wait_for_signal("go")
        return total

    def tools(sctx: StepContext, n: int) -> int:
        return sum(sctx.tool(f"t{i}", lambda: 1) for i in range(n))

    with LocalRuntime(app, workers=1) as local:
        job_id = local.start("many", entries)
        while local.get(job_id).status is not JobStatus.WAITING:
            local.run_until_idle(timeout=300)
        with requests(local) as calls:
            local.signal(job_id, "go")
            view = local.wait(job_id)
    assert view.status is JobStatus.COMPLETED
    return calls


def test_retention_final_tick_makes_the_same_requests_at_10_and_1000_items() -> None:
    short, long = final_tick_requests(10), final_tick_requests(1000)

    assert short == long, f"{short} vs {long}"
    assert sum(long.values()) < 30, "a few requests, whatever the job left behind"


def test_retention_job_from_before_provisional_ttls_gets_the_old_pass_at_its_end() -> None:
    with LocalRuntime(retention_app()) as local:
        job_id = local.start("approved_charge", 12)
        local.run_until_idle()
        local.signal(job_id, "unrelated", 1)
        local.run_until_idle()
        make_old(local, job_id)
        old = items(local, job_id)
        local.signal(job_id, "approval", {"approved": True})
        view = local.wait(job_id)
        found = items(local, job_id)
        expected = ended_at_plus_retention(local, job_id)
        exported = local.runtimes[0].export(job_id)

    assert view.status is JobStatus.COMPLETED and view.result == "ch-12", "its inline input still runs"
    assert exported.input == 12, "and reads back through the one accessor"
    assert all(expiry(i) is None for i in old) and "IN#" not in kinds(old)
    assert schema.DUE_INDEX_PK not in job_item(found), "the pass completed"
    for item in found:
        ttl = expiry(item)
        assert ttl is not None and ttl >= expected, item
    old_keys = {(i["table"], i["sk"]["S"]) for i in old}
    assert [expiry(i) for i in found if (i["table"], i["sk"]["S"]) in old_keys] == [expected] * len(old)


def test_retention_old_job_worker_dies_before_the_pass_sweeper_completes_it() -> None:
    with LocalRuntime(retention_app()) as local:
        job_id = local.start("approved_charge", 12)
        local.run_until_idle()
        make_old(local, job_id)
        local.crash_at("before_retention")
        local.signal(job_id, "approval", {"approved": True})
        local.run_until_idle()
        before = items(local, job_id)
        expected = ended_at_plus_retention(local, job_id)
        local.clock.advance(local.settings.stall_after + timedelta(seconds=1))
        repaired = local.sweep()
        after = items(local, job_id)
        again = local.sweep()
        status = local.get(job_id).status

    assert local.crashes and status is JobStatus.COMPLETED
    assert repaired["expired"] == [job_id]
    job_before = job_item(before)
    assert expiry(job_before) == expected, "the terminal commit itself gives the job item its TTL"
    assert schema.DUE_INDEX_PK in job_before, "and leaves it on the by-due index until the pass is done"
    assert None in [expiry(item) for item in before]
    assert all((expiry(item) or 0) >= expected for item in after)
    assert again["examined"] == 0, "a completed pass takes the job off the by-due index"


def test_retention_old_job_parked_on_a_signal_is_extended_once_a_signal_reaches_it() -> None:
    with LocalRuntime(retention_app()) as local:
        job_id = local.start("approved_charge", 12)
        local.run_until_idle()
        make_old(local, job_id)
        local.clock.advance(timedelta(days=20))  # past its implied extension (start + horizon / 2)
        local.signal(job_id, "unrelated", "stored with a TTL: the job must now be extended")
        local.run_until_idle()
        swept = local.sweep()
        found = items(local, job_id)
        now = local.clock.now()

    assert swept["extended"] == [job_id]
    live_items_covered(found, now)


def test_retention_store_error_in_an_old_jobs_pass_is_logged_and_the_tick_still_succeeds(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def throttled(self: Retention, job_id: str, at: int) -> None:
        raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "Query")

    with LocalRuntime(retention_app()) as local:
        job_id = local.start("approved_charge", 12)
        local.run_until_idle()
        make_old(local, job_id)
        with monkeypatch.context() as patch, caplog.at_level(logging.WARNING, "aetheris.worker"):
            patch.setattr(Retention, "expire", throttled)
            local.signal(job_id, "approval", {"approved": True})
            local.run_until_idle()
        finished = local.get(job_id).status
        local.advance(local.settings.stall_after + timedelta(seconds=1))
        found = items(local, job_id)
        expected = ended_at_plus_retention(local, job_id)

    assert finished is JobStatus.COMPLETED and not local.crashes
    assert f"retention pass for job {job_id} failed" in caplog.text
    assert all((expiry(item) or 0) >= expected for item in found)


def test_retention_signal_landing_after_the_job_ended_expires_within_the_horizon() -> None:
    with LocalRuntime(retention_app()) as local:
        job_id = local.start("approved_charge", 12)
        local.run_until_idle()
        local.signal(job_id, "approval", {"approved": True})
        local.wait(job_id)
        late = json.dumps({"job_id": job_id, "name": "late", "signal_id": "s-late", "sent_at_ms": 0})
        outcome = local.runtimes[0].ingest_signal(late)
        found = items(local, job_id)
        now = local.clock.now()

    (stored,) = [i for i in found if i["sk"]["S"] == "s-late"]
    assert outcome == "job_finished"
    assert expiry(stored) == epoch(now + RETENTION + HORIZON)


def test_retention_settings_read_days_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from aetheris.config import Settings

    monkeypatch.setenv("AETHERIS_RETENTION_DAYS", "7")
    monkeypatch.setenv("AETHERIS_RETENTION_HORIZON_DAYS", "3")

    assert Settings.from_env().retention == timedelta(days=7)
    assert Settings.from_env().retention_horizon == timedelta(days=3)
    assert Settings(retention=timedelta(hours=36)).retention == timedelta(hours=36)
    monkeypatch.setenv("AETHERIS_RETENTION_DAYS", "0")
    with pytest.raises(ValueError, match="greater than"):
        Settings.from_env()
