"""The event log's slots: the lease *is* a claim on the next slot, and the commit fills that slot.

A worker advancing job J from seq ``n - 1`` to ``n`` holds slot ``n`` in one of two ways:

* **granted** (the common case, no write): the commit of slot ``n - 1`` carried a grant — a random
  token and a lease end (``grant_token``, ``grant_until``) — and sent the token in the very tick it
  enqueued for slot ``n``. The tick that brings the token while the grant runs holds slot ``n`` with
  fence 1 without writing anything; its commit *creates* slot ``n`` (``attribute_not_exists``). So an
  effect-free step costs one write. A step that needs its lease longer (the heartbeat, or a tool call
  with too little lease left) first turns the grant into a claim — the same create, as ``CLAIMED``.
* **claimed** (every other tick: a signal's or a cancel's, a redelivery, a sweeper's rescue, a tick
  after a timer): one conditional write on slot ``n``, then the commit fills the same item.

Fencing is the same for both, and two writers can never both own seq ``n``:

* claim: the slot is free (and no grant on ``n - 1`` is running: the claimer reads that first and
  waits for it), or its claimer's lease has expired — ``fence`` grows by one on every claim, and a
  claim after a grant starts from the grant's fence 1, so a taken-over holder's fence is stale for good;
* commit / renew / release under a claim: the slot is still CLAIMED and carries *our* fence;
  under a grant: the slot does not exist yet. Whoever creates slot ``n`` first — the grant's holder
  (commit or claim) or a claimer taking the expired grant over — wins; every other writer is refused.

Rejected alternatives: a lease on the job item plus a ``TransactWriteItems`` commit costs five
write units per step instead of two, and serialises every writer on one item, which parallel
branches (each with their own slots) must not inherit. A grant honoured by any tick (not only the
one its commit sent) would let a signal's tick race the committer's. When a commit changes the job's
status, the job item is updated in the same transaction as the slot (status changes are rare).
"""

from __future__ import annotations

import secrets
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from aetheris._store import schema
from aetheris._store.conditions import Condition, absent, equals, less_than, present
from aetheris._store.dynamo import ConditionFailed, Item, Table, TransactionConflict
from aetheris._store.jobs import CLAIMED, COMMITTED, QUEUED
from aetheris._store.lifetime import Lifetime
from aetheris.errors import LeaseLost

_CLAIM_ONLY = ("lease_until", "claim_token")  # claim attributes a commit removes
GRANT_FENCE = 1  # the fence of a slot held by its grant; a claim taking the grant over has 2
GRANT_HOLDER = "granted tick"  # who held a grant that ran out before it wrote the slot


@dataclass
class SlotLease:
    job_id: str
    seq: int
    fence: int
    worker_id: str
    lease_until_ms: int
    reclaimed_from: str | None = None
    # Earlier claims of this slot that were neither committed nor given back cleanly: their workers
    # died, were fenced out, or gave it back after an error. Many of them means the operation
    # itself kills its ticks.
    abandoned_claims: int = 0
    last_error: str | None = None  # the error the last tick that gave the slot back failed with
    # The taken-over claim's start and lease end (ms): the trace draws the crashed attempt with them.
    reclaimed_claimed_at: int | None = None
    reclaimed_lease_until: int | None = None
    # The slot's sort key when it is not the job log's ``EV#<seq>`` (a fan-out branch's slot).
    sk: str | None = None
    # Held by the grant of the previous slot's commit: the slot item does not exist yet.
    granted: bool = False
    started_ms: int = 0  # when this tick began holding the slot (a granted slot's ``claimed_at``)

    @property
    def slot_sk(self) -> str:
        return self.sk or schema.event_sk(self.seq)


class JobChanged(Exception):
    """The job item no longer allows this commit (a cancel was asked for while the job parked)."""

    def __init__(self, current: Item | None) -> None:
        self.current = current
        super().__init__("the job item changed")


class SlotTaken(Exception):
    """Another worker holds or has filled the slot; ``current`` is that slot item."""

    def __init__(self, current: Item | None) -> None:
        self.current = current
        super().__init__("slot taken")


class EventLog:
    def __init__(self, table: Table, lifetime: Lifetime | None = None) -> None:
        self.table = table
        self.lifetime = lifetime or Lifetime()

    def claim(
        self,
        job_id: str,
        seq: int,
        worker_id: str,
        now_ms: int,
        lease_until_ms: int,
        *,
        sk: str | None = None,
        grant_span: tuple[int, int] | None = None,
        own_grant: bool = False,
    ) -> SlotLease:
        """Claim the slot; ``grant_span``: the previous slot's commit granted this one, from its
        commit until its end (ms; it has run out, the caller checked): the grant's holder had fence
        1, so the claim's is 2. ``own_grant``: this is the grant's own tick, come late — nobody else
        held the grant."""
        after_grant = grant_span is not None
        # The claim wins only if slot n was never claimed (or only reserved for a fan-out branch),
        # or its claimer's lease has run out.
        free = absent(schema.PK) | equals("state", QUEUED)
        abandoned = equals("state", CLAIMED) & less_than("lease_until", now_ms)
        # Tells our own claim from anyone else's if the client has to retry the write.
        token = secrets.token_hex(8)
        try:
            old = self.table.update(
                job_id,
                sk or schema.event_sk(seq),
                {
                    "job_id": job_id,
                    "seq": seq,
                    "state": CLAIMED,
                    "worker_id": worker_id,
                    "lease_until": lease_until_ms,
                    "claimed_at": now_ms,
                    "claim_token": token,
                    # The slot's provisional TTL (_store/retention.py): later than the job's floor.
                    schema.TTL_ATTRIBUTE: self.lifetime.provisional_ms(now_ms),
                },
                free | abandoned,
                increments={"fence": 1},
                return_old=True,
                increment_from=GRANT_FENCE if after_grant else 0,
            )
        except ConditionFailed as lost:
            current = lost.current
            if _our_claim(current, token):
                # Our own claim, applied once, its answer lost and the request retried by the client.
                assert current is not None
                fence = int(current["fence"])
                return SlotLease(job_id, seq, fence, worker_id, lease_until_ms, sk=sk, started_ms=now_ms)
            raise SlotTaken(current) from None
        previous_fence = int(old.get("fence", 0)) if old else (GRANT_FENCE if after_grant else 0)
        # A claim given back unfilled (lease_until 0: an idle or early tick) is not a takeover.
        taken_over = bool(old) and int((old or {}).get("lease_until", 0)) > 0
        if not old and after_grant:
            # The grant ran out unwritten. Unless this is its own tick come late, its tick died (or
            # was lost) first: who held it is not on the slot — its log lines carry job, seq, fence 1.
            return SlotLease(
                job_id,
                seq,
                GRANT_FENCE + 1,
                worker_id,
                lease_until_ms,
                reclaimed_from=None if own_grant else GRANT_HOLDER,
                abandoned_claims=0 if own_grant else GRANT_FENCE,
                # The dead holder's span as far as anyone knows it: its grant's.
                reclaimed_claimed_at=None if own_grant or grant_span is None else grant_span[0],
                reclaimed_lease_until=None if own_grant or grant_span is None else grant_span[1],
                sk=sk,
                started_ms=now_ms,
            )
        return SlotLease(
            job_id=job_id,
            seq=seq,
            fence=previous_fence + 1,
            worker_id=worker_id,
            lease_until_ms=lease_until_ms,
            reclaimed_from=str(old["worker_id"]) if old and taken_over else None,
            abandoned_claims=previous_fence - int(old.get("released", 0)) if old else 0,
            last_error=str(old["last_error"]) if old and old.get("last_error") else None,
            reclaimed_claimed_at=_int(old, "claimed_at") if taken_over else None,
            reclaimed_lease_until=_int(old, "lease_until") if taken_over else None,
            sk=sk,
            started_ms=now_ms,
        )

    def granted(self, job_id: str, seq: int, worker_id: str, now_ms: int, grant_until_ms: int) -> SlotLease:
        """Hold slot ``seq`` by the previous commit's grant: no write (see the module's docstring)."""
        return SlotLease(job_id, seq, GRANT_FENCE, worker_id, grant_until_ms, granted=True, started_ms=now_ms)

    def renew(self, lease: SlotLease, lease_until_ms: int) -> None:
        if lease.granted:
            self._claim_granted(lease, lease_until_ms)
            return
        try:
            self.table.update(lease.job_id, lease.slot_sk, {"lease_until": lease_until_ms}, _ours(lease))
        except ConditionFailed as lost:
            raise LeaseLost(lease.job_id, _who(lost.current, lease)) from None
        lease.lease_until_ms = lease_until_ms

    def _slot_keys(self, lease: SlotLease) -> dict[str, Any]:
        """What every slot item carries from its first write: ids and its provisional TTL."""
        return {
            "job_id": lease.job_id,
            "seq": lease.seq,
            schema.TTL_ATTRIBUTE: self.lifetime.provisional_ms(lease.started_ms),
        }

    def _claim_granted(self, lease: SlotLease, lease_until_ms: int) -> None:
        """Turn the grant into a claim (a step that needs its lease longer): create the slot CLAIMED."""
        token = secrets.token_hex(8)
        values = self._slot_keys(lease) | {
            "state": CLAIMED,
            "worker_id": lease.worker_id,
            "fence": GRANT_FENCE,
            "lease_until": lease_until_ms,
            "claimed_at": lease.started_ms,
            "claim_token": token,
        }
        try:
            self.table.update(lease.job_id, lease.slot_sk, values, _ours(lease))
        except ConditionFailed as lost:
            if not _our_claim(lost.current, token):
                raise LeaseLost(lease.job_id, _who(lost.current, lease)) from None
        lease.granted = False
        lease.lease_until_ms = lease_until_ms

    def release(self, lease: SlotLease, error: str | None = None) -> None:
        """Give the slot back unfilled (the claim expires at once); a lost lease needs no release.

        A clean release (an idle or early tick) is counted in ``released``, so the crash-loop guard
        does not count it; a release after an error is not, and keeps the error for the guard to
        report: a tick that fails the same way every time ends the job instead of looping.
        """
        values: dict[str, Any] = {"lease_until": 0}
        if error is not None:
            values["last_error"] = error[:2000]
        if lease.granted:
            # The slot does not exist yet: write it as a claim given back, so the next tick's claim
            # counts this one (fence 1, released or not) — and a live grant no longer holds it.
            values |= self._slot_keys(lease) | {
                "state": CLAIMED,
                "fence": GRANT_FENCE,
                "worker_id": lease.worker_id,
            }
            if error is None:
                values["released"] = 1
            with suppress(ConditionFailed):
                self.table.update(lease.job_id, lease.slot_sk, values, _ours(lease))
            lease.granted = False
            return
        with suppress(ConditionFailed):
            self.table.update(
                lease.job_id,
                lease.slot_sk,
                values,
                _ours(lease),
                increments=None if error is not None else {"released": 1},
            )

    def commit(
        self,
        lease: SlotLease,
        event: dict[str, Any],
        job_update: dict[str, Any] | None = None,
        job_remove: tuple[str, ...] = (),
        *,
        cancel_free: bool = False,
    ) -> None:
        """Fill the slot with ``event``; with ``job_update``, rewrite the job item in the same transaction.

        ``cancel_free``: the job item must carry no cancel request (a parking commit); if it does,
        nothing is written and ``JobChanged`` carries the job item.
        """
        values = {**event, "state": COMMITTED, "fence": lease.fence, "worker_id": lease.worker_id}
        if lease.granted:  # the commit creates the slot: it carries what a claim would have written
            values = {**self._slot_keys(lease), "claimed_at": lease.started_ms, **values}
        if job_update is None:
            try:
                self.table.update(lease.job_id, lease.slot_sk, values, _ours(lease), remove=_CLAIM_ONLY)
            except ConditionFailed as lost:
                if not _committed_by(lost.current, lease):
                    raise LeaseLost(lease.job_id, _who(lost.current, lease)) from None
            return
        slot_update = self.table.update_request(
            lease.job_id, lease.slot_sk, values, _ours(lease), remove=_CLAIM_ONLY
        )
        job_condition = _job_exists()
        if cancel_free:
            # Parking only while nobody asked to cancel: else the cancel's tick may have missed us.
            job_condition = job_condition & absent("cancel_requested_at")
        job = self.table.update_request(
            lease.job_id, schema.JOB_SK, job_update, job_condition, remove=job_remove
        )
        try:
            self.table.transact([{"Update": slot_update}, {"Update": job}])
        except TransactionConflict as conflict:
            code, current = conflict.reasons[0]
            if code == "ConditionalCheckFailed":
                if _committed_by(current, lease):
                    return  # a retried transaction whose first try was applied (both items written)
                raise LeaseLost(lease.job_id, _who(current, lease)) from None
            job_code, job_item = conflict.reasons[1] if len(conflict.reasons) > 1 else ("None", None)
            if job_code == "ConditionalCheckFailed" and cancel_free and job_item is not None:
                raise JobChanged(job_item) from None
            raise


def _ours(lease: SlotLease) -> Condition:
    if lease.granted:
        # Held by a grant: nobody has written the slot since (no claim took the grant over).
        return absent(schema.PK)
    # The slot is still an open claim and the fence on it is ours: nobody took it over since.
    return equals("state", CLAIMED) & equals("fence", lease.fence)


def _our_claim(current: Item | None, token: str) -> bool:
    return current is not None and current.get("state") == CLAIMED and current.get("claim_token") == token


def _committed_by(current: Item | None, lease: SlotLease) -> bool:
    """The slot holds a commit made under this lease (a retried write whose first try landed)."""
    return (
        current is not None
        and current.get("state") == COMMITTED
        and int(current.get("fence", -1)) == lease.fence
        and current.get("worker_id") == lease.worker_id
    )


def _job_exists() -> Condition:
    return present(schema.PK)


def _who(current: Item | None, lease: SlotLease) -> str:
    if current is None:
        return f"slot {lease.seq} vanished"
    return (
        f"slot {lease.seq} is {current.get('state')} by {current.get('worker_id')} "
        f"with fence {current.get('fence')}, ours was {lease.fence}"
    )


def _int(item: Item | None, name: str) -> int | None:
    value = (item or {}).get(name)
    return int(value) if value is not None else None
