"""A fan-out's branches in the store: each branch a log of its own, and the join marker.

    pk = job_id, sk = "EU#<op>#<branch>#<n>"   branch slot n: claimed, then one attempt's outcome
    pk = job_id, sk = "EU#<op>#JOIN"           which view of the settled branches asked for the join

Branches never write to the job's log or its job item: concurrent branches commit to keys of their
own, so they never contend. A branch's slots work like the job's (``log.py``: the lease is a claim
on the slot, the commit fills it under the fence); a branch started by another branch that ended
(``max_concurrency``) has its slot 0 *reserved* first (``QUEUED``, naming who reserved it), so a
redelivered finisher finds the branch it already started instead of starting a second one.

The join marker makes the job's next tick go out once per view: the finisher that sees every
started branch settled writes ``settled = k`` if no marker says ``k`` or more yet (or it is its own,
redone after a crash) and only then sends the tick. Two branches that end at the same instant and
both see the same ``k`` send one tick between them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aetheris._store import schema
from aetheris._store.conditions import absent, equals, less_than
from aetheris._store.dynamo import ConditionFailed, Item, Table, to_dynamo
from aetheris._store.jobs import CLAIMED, COMMITTED, QUEUED
from aetheris.events import Event, EventType

_SETTLING = (EventType.STEP_COMMITTED, EventType.BRANCH_CANCELLED, EventType.OPERATION_ABORTED)


@dataclass
class Lane:
    """One branch's slots as one Query saw them."""

    index: int
    events: list[Event] = field(default_factory=list)
    claim: Item | None = None  # an open claim or reservation after the last event
    queued_by: int | None = None  # the branch that reserved slot 0 (None: started by the fan-out)

    @property
    def next_seq(self) -> int:
        return self.events[-1].seq + 1 if self.events else 0

    @property
    def last(self) -> Event | None:
        return self.events[-1] if self.events else None

    @property
    def settled(self) -> bool:
        last = self.last
        if last is None:
            return False
        if last.type is EventType.STEP_FAILED:
            return last.next_attempt_at is None
        return last.type in _SETTLING

    @property
    def succeeded(self) -> bool:
        return self.last is not None and self.last.type is EventType.STEP_COMMITTED

    @property
    def failed(self) -> bool:
        return (
            self.settled
            and not self.succeeded
            and self.last is not None
            and (self.last.type is not EventType.BRANCH_CANCELLED)
        )


@dataclass
class Branches:
    """Every branch of one fan-out (``lanes[b]`` exists only for branches with a slot item)."""

    op: int
    lanes: dict[int, Lane]
    join: Item | None = None

    def lane(self, branch: int) -> Lane:
        return self.lanes.get(branch) or Lane(branch)

    def started(self, branch: int, initial: int) -> bool:
        return branch < initial or branch in self.lanes


class BranchStore:
    def __init__(self, table: Table) -> None:
        self.table = table

    def load(self, job_id: str, op: int) -> Branches:
        """One consistent Query for every branch slot of fan-out ``op`` and its join marker."""
        prefix = schema.branch_prefix(op)
        items = self.table.query(
            KeyConditionExpression="pk = :job AND begins_with(sk, :prefix)",
            ExpressionAttributeValues=to_dynamo({":job": job_id, ":prefix": prefix}),
            ConsistentRead=True,
        )
        lanes: dict[int, Lane] = {}
        join = None
        for item in items:
            rest = str(item[schema.SK])[len(prefix) :]
            if rest == "JOIN":
                join = item
                continue
            branch = int(rest.split("#")[0])
            lane = lanes.setdefault(branch, Lane(branch))
            state = item.get("state")
            if state == COMMITTED:
                lane.events.append(Event.from_item(item))
            elif state in (CLAIMED, QUEUED):
                lane.claim = item
            if item.get("queued_by") is not None:
                lane.queued_by = int(item["queued_by"])
        return Branches(op, lanes, join)

    def all(self, job_id: str) -> list[Item]:
        """Every committed branch slot of the job, of every fan-out (for its trace)."""
        items = self.table.query(
            KeyConditionExpression="pk = :job AND begins_with(sk, :prefix)",
            ExpressionAttributeValues=to_dynamo({":job": job_id, ":prefix": schema.BRANCH_PREFIX}),
            ConsistentRead=True,
        )
        return [item for item in items if item.get("state") == COMMITTED]

    def reserve(self, job_id: str, op: int, branch: int, by: int, ttl: int) -> bool:
        """Reserve branch ``branch``'s first slot for the branch ``by`` that ended: ``False`` if it
        is reserved or claimed already (by someone else: the finisher tries the next branch)."""
        item = {
            schema.PK: job_id,
            schema.SK: schema.branch_sk(op, branch, 0),
            "job_id": job_id,
            "seq": 0,
            "branch": branch,
            "state": QUEUED,
            "queued_by": by,
            schema.TTL_ATTRIBUTE: ttl,  # provisional, like every item of the job (lifetime.py)
        }
        try:
            self.table.put(item, absent(schema.PK))
        except ConditionFailed as lost:
            current = lost.current or {}
            return current.get("state") == QUEUED and int(current.get("queued_by", -1)) == by
        return True

    def mark_join(self, job_id: str, op: int, settled: int, by: int, ttl: int) -> bool:
        """Ask for the join with ``settled`` branches settled; ``False``: someone asked with that view."""
        mine = equals("settled", settled) & equals("by", by)
        try:
            self.table.update(
                job_id,
                schema.branch_join_sk(op),
                {"job_id": job_id, "settled": settled, "by": by, schema.TTL_ATTRIBUTE: ttl},
                absent(schema.PK) | less_than("settled", settled) | mine,
            )
        except ConditionFailed:
            return False
        return True
