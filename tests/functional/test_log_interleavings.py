"""Property: however claims, commits and lease expiries of several writers interleave, the log has
no gap, no sequence number twice, and nothing committed under a stale fence (moto DynamoDB)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import count

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from aetheris._clock import FakeClock, to_millis
from aetheris._store.dynamo import Table
from aetheris._store.jobs import JobStore
from aetheris._store.log import EventLog, SlotLease, SlotTaken
from aetheris.errors import LeaseLost
from aetheris_infra.bootstrap import bootstrap

LEASE = timedelta(seconds=30)
WRITERS = ["w1", "w2", "w3"]
_job_numbers = count()

action = st.one_of(
    st.tuples(st.just("claim"), st.sampled_from(WRITERS)),
    st.tuples(st.just("commit"), st.sampled_from(WRITERS)),
    st.tuples(st.just("renew"), st.sampled_from(WRITERS)),
    st.tuples(st.just("expire"), st.just("")),
)


@pytest.fixture(scope="module")
def table() -> Iterator[Table]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        stack = bootstrap(dynamodb, boto3.client("sqs", region_name="us-east-1"), stack_name="interleavings")
        yield Table(dynamodb, stack.jobs_table)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=st.lists(action, min_size=1, max_size=40))
def test_log_interleaved_writers_never_gap_duplicate_or_commit_stale(
    table: Table, actions: list[tuple[str, str]]
) -> None:
    job_id = f"job-{next(_job_numbers)}"
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    jobs, log = JobStore(table), EventLog(table)
    jobs.create(job_id, "t", "1", "null", clock.now())
    leases: dict[str, SlotLease] = {}
    granted: defaultdict[int, list[int]] = defaultdict(list)  # seq -> fences handed out, in order
    accepted: dict[int, tuple[int, str]] = {}  # seq -> (fence, writer) of the commit that won

    for kind, writer in actions:
        now = clock.now()
        if kind == "expire":
            clock.advance(LEASE + timedelta(seconds=1))
        elif kind == "claim":
            snapshot = jobs.load(job_id)
            assert snapshot is not None
            try:
                lease = log.claim(job_id, snapshot.next_seq, writer, to_millis(now), to_millis(now + LEASE))
            except SlotTaken:
                continue
            granted[lease.seq].append(lease.fence)
            leases[writer] = lease
        elif kind == "renew" and writer in leases:
            try:
                log.renew(leases[writer], to_millis(now + LEASE))
            except LeaseLost:
                del leases[writer]
        elif kind == "commit" and writer in leases:
            lease = leases.pop(writer)
            try:
                log.commit(lease, {"type": "StepCommitted", "at": now.isoformat(), "attempt": 1})
            except LeaseLost:
                continue
            assert lease.seq not in accepted, f"seq {lease.seq} committed twice"
            assert lease.fence == max(granted[lease.seq]), (
                f"stale fence {lease.fence} committed at {lease.seq}"
            )
            accepted[lease.seq] = (lease.fence, writer)

    snapshot = jobs.load(job_id)
    assert snapshot is not None
    committed = [int(e["seq"]) for e in snapshot.events]
    assert committed == list(range(len(committed))), "the log has a gap"
    for event in snapshot.events[1:]:
        seq = int(event["seq"])
        assert (int(event["fence"]), event["worker_id"]) == accepted[seq]
    assert sorted(accepted) == committed[1:]
    for seq, fences in granted.items():
        assert fences == sorted(set(fences)), f"fences at seq {seq} did not only grow: {fences}"
