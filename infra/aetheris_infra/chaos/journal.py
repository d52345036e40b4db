"""Reading the server's write journal back as the fencing protocol's moves.

Each journal line is one DynamoDB write request as the server saw it, with its status and (for a
successful ``UpdateItem``) its answer. ``protocol_writes`` turns the lines into ``SlotWrite``s
(claims, renewals, releases and commits of log slots, ``EV#…``) and ``LedgerWrite``s (claims and
outcomes of effect-ledger items, ``FX#…``), in the order the server applied or refused them. The
values come from the request's own ``SET`` clause and condition, read with a small evaluator of
the expression forms DynamoDB allows there, so the check does not trust the runtime's adapter to
say what it wrote.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aetheris._store.dynamo import from_dynamo

EVENT_PREFIX, EFFECT_PREFIX = "EV#", "FX#"
TTL_ATTRIBUTE = "expires_at"
_INCREMENT = re.compile(r"^if_not_exists\(\s*(#\w+)\s*,\s*(:\w+)\s*\)\s*\+\s*(:\w+)$")
_EQUALS = re.compile(r"(#\w+)\s*=\s*(:\w+)")


@dataclass(frozen=True)
class SlotWrite:
    n: int
    job_id: str
    seq: int
    kind: str  # claim | commit | renew | release | create
    fence: int | None
    worker_id: str | None
    ok: bool
    event_type: str | None = None  # the committed event's type (commits and creates only)
    t: float = 0.0  # the server's clock when it applied or refused the write (epoch seconds)
    # A commit that granted the next slot to the tick it sent (``_store/log.py``): the holder of
    # that grant commits (or claims) slot ``seq + 1`` with fence 1 without a claim of its own.
    grants_next: bool = False


@dataclass(frozen=True)
class LedgerWrite:
    n: int
    job_id: str
    sk: str
    kind: str  # claim | record | fail | value
    claim_seq: int | None
    claim_fence: int | None
    worker_id: str | None
    ok: bool
    t: float = 0.0


@dataclass(frozen=True)
class TtlWrite:
    """A write that gave an item of ``job_id`` its TTL (``expires_at``): a retention move."""

    n: int
    job_id: str
    sk: str
    ok: bool
    t: float = 0.0
    value: int | None = None  # the TTL written (epoch seconds)


@dataclass(frozen=True)
class _Update:
    n: int
    ok: bool
    pk: str
    sk: str
    sets: dict[str, Any]
    increments: dict[str, int]
    condition: dict[str, Any]  # attribute = value clauses of the condition
    bases: dict[str, int]  # what an increment grows from on an item without the attribute
    returned: dict[str, Any] | None  # the item the answer carried (before or after: ``returns``)
    returns: str | None = None
    t: float = 0.0


def protocol_writes(lines: Iterable[Mapping[str, Any]]) -> tuple[list[SlotWrite], list[LedgerWrite]]:
    slots: list[SlotWrite] = []
    ledger: list[LedgerWrite] = []
    for update in _updates(lines):
        if update.sk.startswith(EVENT_PREFIX):
            slots.append(_slot_write(update))
        elif update.sk.startswith(EFFECT_PREFIX):
            ledger.append(_ledger_write(update))
    return slots, ledger


def cancel_writes(lines: Iterable[Mapping[str, Any]]) -> list[tuple[int, str]]:
    """``(n, job id)`` of every applied write that asked a job to stop (set ``cancel_requested_at``)."""
    return [(u.n, u.pk) for u in _updates(lines) if u.ok and "cancel_requested_at" in u.sets]


def ttl_writes(lines: Iterable[Mapping[str, Any]]) -> list[TtlWrite]:
    """Every write that set ``expires_at`` on an item (any table), in the server's order."""
    return [
        TtlWrite(u.n, u.pk, u.sk, u.ok, u.t, _int(u.sets.get(TTL_ATTRIBUTE)))
        for u in _updates(lines)
        if TTL_ATTRIBUTE in u.sets or TTL_ATTRIBUTE in u.increments
    ]


def _slot_write(u: _Update) -> SlotWrite:
    seq = int(u.sk[len(EVENT_PREFIX) :])
    state = u.sets.get("state")
    fence: int | None
    if state == "CLAIMED" and "fence" in u.increments:
        kind, fence = "claim", None
        if u.ok and u.returns == "ALL_NEW":
            fence = _int((u.returned or {}).get("fence"))
        elif u.ok:  # the answer is the slot as it was (or nothing: the slot was new)
            base = u.bases.get("fence", 0)
            fence = int((u.returned or {}).get("fence", base)) + u.increments["fence"]
    elif state == "CLAIMED" and "fence" in u.sets:
        # A granted slot written for the first time: turned into a claim, or given back unfilled.
        kind = "release" if u.sets.get("lease_until") == 0 else "claim"
        fence = _int(u.sets.get("fence"))
    elif state == "COMMITTED":
        kind = "create" if "fence" not in u.condition and seq == 0 else "commit"
        fence = _int(u.sets.get("fence"))
    else:
        kind = "release" if u.sets.get("lease_until") == 0 else "renew"
        fence = _int(u.condition.get("fence"))
    worker = u.sets.get("worker_id")
    event_type = str(u.sets["type"]) if kind in ("commit", "create") and "type" in u.sets else None
    grants = kind == "commit" and bool(u.sets.get("grant_token"))
    worker_id = str(worker) if worker else None
    return SlotWrite(u.n, u.pk, seq, kind, fence, worker_id, u.ok, event_type, u.t, grants)


def _ledger_write(u: _Update) -> LedgerWrite:
    state = u.sets.get("state")
    if state == "CLAIMED":
        kind, seq, fence = "claim", u.sets.get("claim_seq"), u.sets.get("claim_fence")
    elif state in ("RECORDED", "FAILED") and "claim_seq" in u.condition:
        kind = "record" if state == "RECORDED" else "fail"
        seq, fence = u.condition.get("claim_seq"), u.condition.get("claim_fence")
    else:
        kind, seq, fence = "value", None, None
    worker = u.sets.get("worker_id")
    worker_id = str(worker) if worker else None
    return LedgerWrite(u.n, u.pk, u.sk, kind, _int(seq), _int(fence), worker_id, u.ok, u.t)


def _updates(lines: Iterable[Mapping[str, Any]]) -> Iterable[_Update]:
    for line in lines:
        n, ok, request, t = int(line["n"]), line["status"] == 200, line["req"], float(line.get("t", 0.0))
        if line["op"] == "UpdateItem":
            returned = from_dynamo((line.get("resp") or {}).get("Attributes")) if ok else None
            yield _update(n, ok, request, returned, t)
        elif line["op"] == "PutItem":
            yield _put(n, ok, request, t)
        elif line["op"] == "TransactWriteItems":
            for action in request.get("TransactItems", []):
                if "Update" in action:
                    yield _update(n, ok, action["Update"], None, t)
                elif "Put" in action:
                    yield _put(n, ok, action["Put"], t)


def _update(
    n: int, ok: bool, request: Mapping[str, Any], returned: dict[str, Any] | None, t: float = 0.0
) -> _Update:
    key = from_dynamo(request["Key"]) or {}
    names: Mapping[str, str] = request.get("ExpressionAttributeNames", {})
    values = from_dynamo(request.get("ExpressionAttributeValues", {})) or {}
    sets: dict[str, Any] = {}
    increments: dict[str, int] = {}
    bases: dict[str, int] = {}
    for target, expression in _assignments(request.get("UpdateExpression", "")):
        attribute = names.get(target, target)
        increment = _INCREMENT.match(expression)
        if increment:
            increments[attribute] = int(values[increment.group(3)])
            bases[attribute] = int(values.get(increment.group(2), 0))
        elif expression in values:
            sets[attribute] = values[expression]
    condition = {
        names.get(name, name): values[value]
        for name, value in _EQUALS.findall(request.get("ConditionExpression", ""))
        if value in values
    }
    returns = request.get("ReturnValues")
    pk, sk = str(key["pk"]), str(key["sk"])
    return _Update(n, ok, pk, sk, sets, increments, condition, bases, returned, returns, t)


def _put(n: int, ok: bool, request: Mapping[str, Any], t: float = 0.0) -> _Update:
    # Binary attributes (a log segment's data) arrive base64-encoded on the wire; no check reads them.
    item = from_dynamo({k: v for k, v in request["Item"].items() if "B" not in v}) or {}
    return _Update(n, ok, str(item["pk"]), str(item["sk"]), dict(item), {}, {}, {}, None, None, t)


def _assignments(expression: str) -> list[tuple[str, str]]:
    """``(target, value expression)`` pairs of the ``SET`` clause (the clause up to ``REMOVE``)."""
    clause = re.split(r"\bREMOVE\b", expression, maxsplit=1)[0].strip()
    if not clause.upper().startswith("SET "):
        return []
    parts, depth, current = [], 0, ""
    for char in clause[4:]:
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        current += char
    parts.append(current)
    pairs = []
    for part in parts:
        target, _, value = part.partition("=")
        pairs.append((target.strip(), value.strip()))
    return pairs


def _int(value: Any) -> int | None:
    return None if value is None else int(value)
