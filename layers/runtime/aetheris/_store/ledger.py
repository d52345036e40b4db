"""The effect ledger: one item per effect key, CLAIMED → RECORDED | FAILED | UNKNOWN.

A tool call is claimed before it runs and recorded after. The claim carries the slot (``seq``) and
``fence`` of the worker that made it, so claims compare by who owns the job *now*:

* a RECORDED effect is never claimed again — its result is returned instead;
* a FAILED one (the callee raised) may be claimed again by the retry;
* a CLAIMED one whose claimer is superseded (an older slot or fence) or whose claim has expired is
  the crash window between "called" and "recorded": ``AT_LEAST_ONCE`` claims it again and calls
  with the same idempotency key; ``AT_MOST_ONCE`` never does: it settles the claim ``UNKNOWN`` (so
  the superseded claimer can no longer record) and raises ``EffectOutcomeUnknown``;
* recording requires the claim to still be ours, so a zombie's late result is rejected;
* every claim carries the call's identity (a digest of the tool name and its arguments): a call at
  the same position with another identity never takes a record holding a result or an open claim
  — ``EffectMismatch`` instead — so reordered calls can never be given each other's results (a
  FAILED record holds neither: a retry with other arguments takes it over);
* a tool that failed is claimed again only while its retry policy has attempts left within the
  step attempt (``failed_attempt`` / ``failures_in_attempt``): a redelivered tick cannot call a
  failing tool more often than its policy allows.

Plain recorded values (``sctx.now()``, ``sctx.uuid()``) are written once with put-if-absent: the
first writer wins and every attempt reads the same value back.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from aetheris._store import schema
from aetheris._store.conditions import Condition, absent, differs, equals, less_than
from aetheris._store.dynamo import ConditionFailed, Item, Table
from aetheris._store.lifetime import Lifetime
from aetheris.errors import EffectMismatch, EffectOutcomeUnknown, ErrorInfo, LeaseLost
from aetheris.events import EffectState
from aetheris.policy import EffectSemantics

CLAIMED = EffectState.CLAIMED
RECORDED = EffectState.RECORDED
FAILED = EffectState.FAILED
UNKNOWN = EffectState.UNKNOWN


@dataclass(frozen=True)
class EffectRef:
    job_id: str
    sk: str
    idempotency_key: str
    name: str


@dataclass(frozen=True)
class Claimant:
    seq: int
    fence: int
    worker_id: str


@dataclass(frozen=True)
class Identity:
    """What a tool call is: the same on every attempt that makes the same call."""

    digest: str  # sha256 of the tool name and its arguments
    describe: str  # short and human: for a mismatch's message
    preview: str  # the arguments as bounded JSON, for the trace (secrets redacted)


@dataclass(frozen=True)
class Attempt:
    """The step attempt a claim is made in, and how many tool attempts its policy allows there."""

    step_attempt: int = 1
    max_failures: int = 1


@dataclass(frozen=True)
class Claimed:
    claims: int  # how many times this key has been claimed, this one included
    failures: int = 0  # calls that failed in this step attempt before this claim


@dataclass(frozen=True)
class AlreadyRecorded:
    result: str


@dataclass(frozen=True)
class Exhausted:
    """The tool failed as often as its policy allows in this step attempt: not called again."""

    error: ErrorInfo


class EffectLedger:
    """Every entry is written with its provisional TTL (``_store/retention.py``)."""

    def __init__(self, table: Table, lifetime: Lifetime | None = None) -> None:
        self.table = table
        self.lifetime = lifetime or Lifetime()

    def claim(
        self,
        ref: EffectRef,
        who: Claimant,
        semantics: EffectSemantics,
        now_ms: int,
        claim_until_ms: int,
        identity: Identity | None = None,
        attempt: Attempt = Attempt(),
    ) -> Claimed | AlreadyRecorded | Exhausted:
        never_claimed = absent(schema.PK)
        # A failed call may be made again only while its policy has attempts left in this step attempt.
        attempts_left = (
            absent("failed_attempt")
            | differs("failed_attempt", attempt.step_attempt)
            | less_than("failures_in_attempt", attempt.max_failures)
        )
        failed_before = equals("state", FAILED) & attempts_left
        # An open claim by a worker that no longer owns the job: made from an earlier slot, or from
        # the same slot under an older fence. This is how a claim expires: its claimer's lease ran
        # out and a newer claimer took the job (``claim_until`` records when, for operators).
        superseded = equals("state", CLAIMED) & (
            less_than("claim_seq", who.seq)
            | (equals("claim_seq", who.seq) & less_than("claim_fence", who.fence))
        )
        same_call: Condition | None = None
        if identity is not None:
            # Only the same call (same tool, same arguments) may take a record that holds, or may
            # hold, a call's outcome: a result, or an open claim whose call may have happened. A
            # failed call left nothing to be served: a retry with other arguments takes it over.
            same_call = absent("digest") | equals("digest", identity.digest)
        condition: Condition = never_claimed | failed_before
        if semantics is EffectSemantics.AT_LEAST_ONCE:
            condition = condition | (superseded & same_call if same_call is not None else superseded)
        values: dict[str, object] = {
            "state": CLAIMED,
            "idempotency_key": ref.idempotency_key,
            "effect": ref.name,
            "semantics": semantics.value,
            "claim_seq": who.seq,
            "claim_fence": who.fence,
            "claim_until": claim_until_ms,
            "worker_id": who.worker_id,
            "claimed_at": now_ms,
            "claim_attempt": attempt.step_attempt,
            schema.TTL_ATTRIBUTE: self.lifetime.provisional_ms(now_ms),
        }
        if identity is not None:
            values |= {"digest": identity.digest, "call": identity.describe, "args_preview": identity.preview}
        token = secrets.token_hex(8)  # tells our own claim apart if the client retries the write
        values["claim_token"] = token
        try:
            new = self.table.update(ref.job_id, ref.sk, values, condition, increments={"claims": 1})
        except ConditionFailed as lost:
            current = lost.current
            if current and current.get("state") == CLAIMED and current.get("claim_token") == token:
                return _claimed(current, attempt)  # our claim; its answer was lost
            return self._explain_lost_claim(ref, who, current, identity)
        return _claimed(new or {}, attempt)

    def _explain_lost_claim(
        self, ref: EffectRef, who: Claimant, current: Item | None, identity: Identity | None
    ) -> AlreadyRecorded | Exhausted:
        while True:
            if current is None:  # deleted under us: treat as a lost race, the caller retries the step
                raise LeaseLost(ref.job_id, f"effect {ref.idempotency_key} vanished while claiming")
            recorded_digest = current.get("digest")
            other_call = identity is not None and recorded_digest not in (None, identity.digest)
            if other_call and current["state"] != FAILED:
                assert identity is not None
                raise EffectMismatch(ref.idempotency_key, str(current.get("call", "?")), identity.describe)
            if current["state"] == RECORDED:
                return AlreadyRecorded(result=str(current["result"]))
            if current["state"] == UNKNOWN:
                raise EffectOutcomeUnknown(ref.idempotency_key, str(current.get("claimed_by", "unknown")))
            if current["state"] == FAILED:
                error = current.get("error")
                info = ErrorInfo.model_validate_json(error) if error else ErrorInfo(type="?", message="?")
                return Exhausted(error=info)
            theirs = (int(current["claim_seq"]), int(current["claim_fence"]))
            if theirs >= (who.seq, who.fence):
                raise LeaseLost(
                    ref.job_id, f"effect {ref.idempotency_key} is claimed by {current['worker_id']}"
                )
            # Only AT_MOST_ONCE refuses a superseded claim: the effect may have happened. Settle it
            # as UNKNOWN first, so the superseded claimer (a zombie that may still be calling) can
            # no longer record a result the job has already been told is unknown. If it recorded
            # just before, the result is known after all.
            claimer = str(current.get("worker_id", "unknown"))
            try:
                self.table.update(
                    ref.job_id,
                    ref.sk,
                    {
                        "state": UNKNOWN,
                        "claimed_by": claimer,
                        "claim_seq": who.seq,
                        "claim_fence": who.fence,
                        "worker_id": who.worker_id,
                    },
                    equals("state", CLAIMED)
                    & equals("claim_seq", theirs[0])
                    & equals("claim_fence", theirs[1]),
                )
            except ConditionFailed as moved:
                current = moved.current  # recorded (or re-claimed) meanwhile: look again
                continue
            raise EffectOutcomeUnknown(ref.idempotency_key, claimer)

    def record(self, ref: EffectRef, who: Claimant, result_json: str, now_ms: int) -> None:
        # An earlier attempt's error is history, not part of this record.
        self._finish(ref, who, {"state": RECORDED, "result": result_json, "recorded_at": now_ms}, ("error",))

    def record_failure(
        self,
        ref: EffectRef,
        who: Claimant,
        error: ErrorInfo,
        now_ms: int,
        attempt: int = 1,
        failures: int = 1,
    ) -> None:
        """Record that the call raised; ``failures`` counts this step attempt's failed calls, this one too."""
        values = {
            "state": FAILED,
            "error": error.model_dump_json(),
            "recorded_at": now_ms,
            "failed_attempt": attempt,
            "failures_in_attempt": failures,
        }
        self._finish(ref, who, values, ("result",))

    def _finish(
        self, ref: EffectRef, who: Claimant, values: dict[str, object], clear: tuple[str, ...]
    ) -> None:
        # Only the claimer of record may finish the claim: a superseded (zombie) worker cannot.
        still_ours = (
            equals("state", CLAIMED) & equals("claim_seq", who.seq) & equals("claim_fence", who.fence)
        )
        try:
            self.table.update(ref.job_id, ref.sk, values, still_ours, remove=clear)
        except ConditionFailed as lost:
            current = lost.current
            if (
                current is not None
                and current.get("state") == values["state"]
                and (int(current["claim_seq"]), int(current["claim_fence"])) == (who.seq, who.fence)
            ):
                return  # our own write, applied once, its answer lost and the request retried
            holder = current.get("worker_id") if current else None
            raise LeaseLost(ref.job_id, f"effect {ref.idempotency_key} was taken over by {holder}") from None

    def value_once(self, job_id: str, sk: str, value_json: str, now_ms: int) -> str:
        """Record ``value_json`` under ``sk`` unless a value is there already; return the one kept."""
        ttl = self.lifetime.provisional_ms(now_ms)
        try:
            self.table.put(
                {
                    schema.PK: job_id,
                    schema.SK: sk,
                    "state": RECORDED,
                    "result": value_json,
                    schema.TTL_ATTRIBUTE: ttl,
                },
                absent(schema.PK),
            )
        except ConditionFailed as lost:
            if lost.current is None:
                raise
            return str(lost.current["result"])
        return value_json

    def get(self, job_id: str, sk: str) -> Item | None:
        return self.table.get(job_id, sk)

    def list(self, job_id: str) -> list[Item]:
        from aetheris._store.dynamo import to_dynamo

        return self.table.query(
            KeyConditionExpression="pk = :job AND begins_with(sk, :fx)",
            ExpressionAttributeValues=to_dynamo({":job": job_id, ":fx": schema.EFFECT_PREFIX}),
            ConsistentRead=True,
        )


def _claimed(item: Item, attempt: Attempt) -> Claimed:
    same_attempt = int(item.get("failed_attempt", 0)) == attempt.step_attempt
    failures = int(item.get("failures_in_attempt", 0)) if same_attempt else 0
    return Claimed(claims=int(item.get("claims", 1)), failures=failures)
