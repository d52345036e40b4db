"""Item layout of the jobs table (one item collection per job) — the names ``template.yaml`` must match.

    pk = job_id, sk = "EV#0000000042"     log slot 42: CLAIMED by a worker, then COMMITTED as an event
    pk = job_id, sk = "EW#JOB"            the job item: a projection of the log (status, result)
    pk = job_id, sk = "FX#<step>#<name>#n" effect ledger entry (CLAIMED → RECORDED | FAILED)
    pk = job_id, sk = "EU#<op>#<branch>#<n>" fan-out branch slot n (its attempts; see _store/branches.py)
    pk = job_id, sk = "EU#<op>#JOIN"       the fan-out's join marker
    pk = job_id, sk = "IN#JOB"            the job's input: written once, at the start, beside the job item
    pk = job_id, sk = "ES#0000000100"     a log segment: events 100.. compacted for cold reads (segments.py)
    pk = "IK#<sha256>", sk = "IK"          an idempotency key's generation record (_store/idempotency.py)

The job item sorts right after the events and before the ledger, so one Query
``sk BETWEEN "EV#<n>" AND "EW#JOB"`` reads the log from slot n *and* the job item: a worker that
already knows the log up to n - 1 reads only what is new (committed events never change).
Segments sort before the branch items and the log, outside that range: only a cold load reads them
(``begins_with ES#``), then the events after the last one.
"""

from __future__ import annotations

PK = "pk"
SK = "sk"
JOB_SK = "EW#JOB"
EVENT_PREFIX = "EV#"
EFFECT_PREFIX = "FX#"
# Before the log: the job's load (``EV#n`` .. ``EW#JOB``) never reads branch items.
BRANCH_PREFIX = "EU#"
INPUT_SK = "IN#JOB"
SEGMENT_PREFIX = "ES#"
RECORD_SK = "IK"

STATUS_INDEX = "by-status"
STATUS_INDEX_PK = "gsi1pk"
STATUS_INDEX_SK = "gsi1sk"
# The attention index (sparse, write-sharded; see _store/watch.py): when a job next needs a look.
DUE_INDEX = "by-due"
DUE_INDEX_PK = "due_shard"  # str(crc32(job_id) % sweep_shards)
DUE_INDEX_SK = "due_at"  # epoch milliseconds
TTL_ATTRIBUTE = "expires_at"
# On the job item: the earliest provisional TTL among the job's items (_store/retention.py).
TTL_FLOOR = "ttl_floor"

SEQ_DIGITS = 10


def event_sk(seq: int) -> str:
    return f"{EVENT_PREFIX}{seq:0{SEQ_DIGITS}d}"


def segment_sk(first_seq: int) -> str:
    return f"{SEGMENT_PREFIX}{first_seq:0{SEQ_DIGITS}d}"


def effect_sk(step_id: str, name: str, index: int) -> str:
    return f"{EFFECT_PREFIX}{step_id}#{name}#{index}"


def effect_position(sk: str) -> int | None:
    """The operation position an effect-ledger key (``FX#<position>-<step>#...``) belongs to."""
    head = sk[len(EFFECT_PREFIX) :].split("-", 1)[0]
    return int(head) if sk.startswith(EFFECT_PREFIX) and head.isdigit() else None


def idempotency_key(job_id: str, step_id: str, name: str, index: int) -> str:
    """The key a tool call carries: the same on every attempt and every worker."""
    return f"{job_id}:{step_id}:{name}:{index}"


def branch_prefix(op: int) -> str:
    return f"{BRANCH_PREFIX}{op:06d}#"


def branch_sk(op: int, branch: int, seq: int) -> str:
    return f"{branch_prefix(op)}{branch:06d}#{seq:04d}"


def branch_join_sk(op: int) -> str:
    return f"{branch_prefix(op)}JOIN"  # "J" sorts after the digits: after every branch slot
