"""An idempotency key reused while DynamoDB's TTL is part-way through deleting its old job.

moto never runs TTL, so each test finishes a job (its retention pass gives every item
``expires_at``), moves the fake clock past that, and deletes items itself with the real DynamoDB
API, in the orders TTL may pick. Whatever is left, a start with the key either returns the job the
key names (while it is retained) or starts a fresh, clean one that completes — never a 500, never
a job stuck PENDING, never two jobs for one key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from aetheris import App, EventType, IdempotencyConflict, JobContext, JobStatus, StepContext
from aetheris._store import schema
from aetheris._store.dynamo import from_dynamo, to_dynamo
from aetheris._store.idempotency import IdempotencyKeys, Occupant, job_id_for
from aetheris.testing import LocalRuntime
from tests.functional.jobs import Calls

KEY = "order-42"
PAST_RETENTION = timedelta(days=31)  # LocalRuntime keeps finished jobs 30 days (Settings.retention)


def key_app(calls: Calls) -> App:
    app = App("keys")

    def charge(sctx: StepContext, order: str) -> str:
        calls.step("charge")
        return sctx.tool("payments.charge", lambda: f"charged {order} with {sctx.idempotency_key('x')}")

    @app.job("order")
    def order(ctx: JobContext, order: str) -> str:
        first = ctx.step(charge, order, name="first")
        ctx.step(charge, order, name="second")
        return first

    return app


@pytest.fixture
def local() -> Iterator[LocalRuntime]:
    with LocalRuntime(key_app(Calls())) as running:
        yield running


def items(local: LocalRuntime, job_id: str) -> list[dict[str, Any]]:
    response = local.dynamodb.query(
        TableName=local.settings.jobs_table,
        KeyConditionExpression="pk = :job",
        ExpressionAttributeValues=to_dynamo({":job": job_id}),
        ConsistentRead=True,
    )
    return [item for item in map(from_dynamo, response["Items"]) if item]


def ttl_deletes(local: LocalRuntime, job_id: str, which: Callable[[str], bool]) -> None:
    """Delete the job's items whose sort key ``which`` picks, as DynamoDB's TTL would."""
    for item in items(local, job_id):
        if which(str(item[schema.SK])):
            local.dynamodb.delete_item(
                TableName=local.settings.jobs_table,
                Key=to_dynamo({schema.PK: item[schema.PK], schema.SK: item[schema.SK]}),
            )


def finished_and_expired(local: LocalRuntime) -> str:
    old = local.start("order", "A", idempotency_key=KEY)
    local.wait(old)
    assert all(schema.TTL_ATTRIBUTE in item for item in items(local, old))  # the retention pass ran
    local.clock.advance(PAST_RETENTION)
    return old


def started_fresh(local: LocalRuntime, old: str, *, gone: bool = False) -> str:
    """A start with the key after the old job's retention: a new, clean job that completes.

    Its id is new while anything of the old job is left; once nothing is (``gone``), generation 0
    may be taken again: nothing can meet the old job's leftovers.
    """
    new = local.start("order", "A", idempotency_key=KEY)
    view = local.wait(new)
    events = local.events(new)

    assert gone or new != old
    assert view.status is JobStatus.COMPLETED
    assert [e.seq for e in events] == list(range(len(events)))  # its own log, nothing of the old one
    assert events[0].type is EventType.JOB_CREATED
    assert local.start("order", "A", idempotency_key=KEY) == new  # and the key now names it
    return new


def is_job(sk: str) -> bool:
    return sk == schema.JOB_SK


def is_slot_0(sk: str) -> bool:
    return sk == schema.event_sk(0)


PARTIAL_STATES = [
    pytest.param(lambda sk: False, id="expired_nothing_deleted_yet"),
    pytest.param(is_job, id="job_item_gone_slot_0_and_the_rest_left"),
    pytest.param(lambda sk: is_job(sk) or is_slot_0(sk), id="job_item_and_slot_0_gone_later_events_left"),
    pytest.param(lambda sk: not sk.startswith(schema.EFFECT_PREFIX), id="only_ledger_entries_left"),
    pytest.param(is_slot_0, id="job_item_left_slot_0_gone"),
    pytest.param(lambda sk: not is_job(sk), id="only_the_job_item_left"),
]


@pytest.mark.parametrize("deleted", PARTIAL_STATES)
def test_start_key_of_a_job_ttl_is_deleting_starts_a_fresh_job_that_completes(
    local: LocalRuntime, deleted: Callable[[str], bool]
) -> None:
    old = finished_and_expired(local)
    ttl_deletes(local, old, deleted)

    new = started_fresh(local, old)

    assert local.get(new).result == "charged A with " + f"{new}:" + local.events(new)[1].step_id + ":x:0"


def test_start_key_of_a_fully_deleted_job_starts_a_fresh_job(local: LocalRuntime) -> None:
    old = finished_and_expired(local)
    ttl_deletes(local, old, lambda sk: True)
    started_fresh(local, old, gone=True)


def test_start_key_within_the_retention_returns_the_same_finished_job(local: LocalRuntime) -> None:
    old = local.start("order", "A", idempotency_key=KEY)
    local.wait(old)
    local.clock.advance(PAST_RETENTION - timedelta(days=2))

    again = local.runtimes[0].start("order", "A", idempotency_key=KEY)

    assert (again.job_id, again.created, again.status) == (old, False, JobStatus.COMPLETED)


def test_start_key_of_a_new_generation_finds_it_after_ttl_removed_the_old_one(local: LocalRuntime) -> None:
    # Once the old job is gone entirely, only the generation record still leads to the new one.
    old = finished_and_expired(local)
    new = started_fresh(local, old)
    ttl_deletes(local, old, lambda sk: True)

    again = local.runtimes[0].start("order", "A", idempotency_key=KEY)

    assert (again.job_id, again.created) == (new, False)


def test_start_key_of_an_expired_job_generation_after_generation_stays_one_job_each(
    local: LocalRuntime,
) -> None:
    first = finished_and_expired(local)
    second = started_fresh(local, first)
    local.clock.advance(PAST_RETENTION)
    ttl_deletes(local, second, is_job)
    third = started_fresh(local, second)

    assert len({first, second, third}) == 3
    assert third == job_id_for(KEY, 2)


def test_start_key_with_other_input_on_the_new_generation_is_idempotency_conflict(
    local: LocalRuntime,
) -> None:
    old = finished_and_expired(local)
    ttl_deletes(local, old, is_job)
    started_fresh(local, old)

    with pytest.raises(IdempotencyConflict):
        local.start("order", "B", idempotency_key=KEY)


def test_start_two_racing_starts_over_a_dead_job_make_one_job(local: LocalRuntime) -> None:
    old = finished_and_expired(local)
    ttl_deletes(local, old, is_job)
    runtime = local.runtimes[0]
    keys = IdempotencyKeys(runtime.services.jobs.table)
    now = local.clock.now()
    first, second = keys.slot(KEY, now), keys.slot(KEY, now)  # both read the dead job
    assert first.occupant is second.occupant is Occupant.EMPTY and first.job_id == second.job_id

    jobs = runtime.services.jobs
    assert jobs.create(first.job_id, "order", "1", '"A"', now, KEY, first.claim) is None
    lost = jobs.create(second.job_id, "order", "1", '"A"', now, KEY, second.claim)
    assert lost is not None and lost["job_id"] == first.job_id  # the winner's job, nothing written
    again = runtime.start("order", "A", idempotency_key=KEY)  # the loser looks again

    assert (again.job_id, again.created) == (first.job_id, False)
