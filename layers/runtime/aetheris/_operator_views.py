"""What the operator views read: jobs by status, queue depths, and stuck jobs — all bounded reads.

``summary`` (``GET /observability/summary``): per live status a ``Select=COUNT`` Query of its
by-status partition (at most ``max_count_pages`` pages each: past that the count is a lower bound
and the status is listed in ``capped``); finished jobs only within the last hour, through the
status index's sort key, which starts with the ISO time of the last status change (so a finished
job older than an hour is never read); the oldest job of PENDING / RUNNING / WAITING / SLEEPING by
one ``Limit=1`` Query each; one ``GetQueueAttributes`` per queue; the stuck count as ``stuck_jobs``.

Requests per call, with 1M jobs (any mix of finished and live): 5 live statuses x 1-10 COUNT pages
(a page reads ≤ 1 MB, ≈ 1,000-4,000 job items: counts past 10 pages are lower bounds) + 3 finished
statuses x 1-10 pages (only jobs finished in the last hour are read) + 4 oldest-age Queries + 4
GetQueueAttributes + the stuck reads: ``sweep_shards`` (32) index Queries + 1 Query per due entry
(≤ ``max_due``, normally a handful) + 2 DLQ receives. So 50 requests with small counts and nothing
due (measured: ``tests/functional/test_operator_views.py``), at most 82 + 32 + the due entries with
a million live jobs, and nothing that grows with the number of finished jobs. Exact counts of
millions of live jobs need counters maintained on status change (one more item in the status-change
transaction); rejected for now: it adds a write to the commit path, which is the lead's.

``stuck_jobs`` (``GET /observability/stuck``) diagnoses every due entry of the attention index with
the sweeper's own ``_diagnosis.diagnose`` and keeps those stuck past the threshold, then peeks at
the two dead-letter queues (``ReceiveMessage`` with ``VisibilityTimeout=0``: nothing is consumed, a
bounded count) and adds each unfinished job a message there names. A job parked on a signal is
never on the index, so never stuck — unless its signal is in the signal DLQ.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from aetheris._clock import from_millis
from aetheris._diagnosis import Reason, diagnose, evidence_of
from aetheris._engine.services import Services
from aetheris._store import schema, watch
from aetheris._store.dynamo import Table, to_dynamo
from aetheris._tenancy import DEFAULT_TENANT, TENANT_ATTRIBUTE, tenant_of
from aetheris.events import JobStatus

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

LIVE = (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.WAITING, JobStatus.SLEEPING, JobStatus.COMPENSATING)
FINISHED = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)
AGED = (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.WAITING, JobStatus.SLEEPING)
_DEPTH = {
    "visible": "ApproximateNumberOfMessages",
    "in_flight": "ApproximateNumberOfMessagesNotVisible",
    "delayed": "ApproximateNumberOfMessagesDelayed",
}


@dataclass(frozen=True)
class StuckJob:
    job_id: str
    job_type: str | None
    status: JobStatus | None
    reason: Reason
    since: datetime
    evidence: dict[str, Any]


def queues(services: Services) -> dict[str, str]:
    """The queues an operator watches, by name, as far as the settings know them."""
    settings = services.settings
    urls = {
        "step": settings.step_queue_url,
        "step_dlq": settings.step_dlq_url,
        "signal": settings.signal_queue_url,
        "signal_dlq": settings.signal_dlq_url,
    }
    return {name: url for name, url in urls.items() if url}


def queue_depths(sqs: SQSClient, urls: dict[str, str]) -> dict[str, dict[str, int]]:
    """Visible, in-flight and delayed messages of each queue (approximate, as SQS counts them)."""
    depths = {}
    for name, url in urls.items():
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(_DEPTH.values()))  # type: ignore[arg-type]
        values = attributes.get("Attributes", {})
        depths[name] = {key: int(values.get(attribute, 0)) for key, attribute in _DEPTH.items()}  # type: ignore[call-overload]
    return depths


def count(
    table: Table, status: JobStatus, since: str | None = None, max_pages: int = 10, tenant: str | None = None
) -> tuple[int, bool]:
    """Jobs in ``status`` (whose last status change is at or after ``since``; of ``tenant`` only, when
    given); ``False``: capped."""
    condition = "#pk = :status"
    values: dict[str, Any] = {":status": status.value}
    if since is not None:
        condition += " AND #sk >= :since"
        values[":since"] = since
    request: dict[str, Any] = {
        "TableName": table.name,
        "IndexName": schema.STATUS_INDEX,
        "Select": "COUNT",
        "KeyConditionExpression": condition,
        "ExpressionAttributeNames": {"#pk": schema.STATUS_INDEX_PK}
        | ({"#sk": schema.STATUS_INDEX_SK} if since is not None else {}),
        "ExpressionAttributeValues": to_dynamo(values),
    }
    _scope(request, tenant)
    total = 0
    for _ in range(max_pages):
        response = table.client.query(**request)
        total += int(response.get("Count", 0))
        last = response.get("LastEvaluatedKey")
        if not last:
            return total, True
        request["ExclusiveStartKey"] = last
    return total, False


def oldest_age(table: Table, status: JobStatus, now: datetime, tenant: str | None = None) -> float | None:
    """Seconds since the job longest in ``status`` got there; ``None`` if none is."""
    request: dict[str, Any] = {
        "TableName": table.name,
        "IndexName": schema.STATUS_INDEX,
        "KeyConditionExpression": "#pk = :status",
        "ExpressionAttributeNames": {"#pk": schema.STATUS_INDEX_PK, "#sk": schema.STATUS_INDEX_SK},
        "ExpressionAttributeValues": to_dynamo({":status": status.value}),
        "ProjectionExpression": "#sk",
        "Limit": 1,
    }
    if tenant is not None:  # the oldest of the tenant's: one page may hold none of them; read a few
        _scope(request, tenant)
        request["Limit"] = 100
    response = table.client.query(**request)
    items = response.get("Items", [])
    if not items:
        return None
    stamp = str(items[0][schema.STATUS_INDEX_SK]["S"]).split("#", 1)[0]
    return max(0.0, (now - datetime.fromisoformat(stamp)).total_seconds())


def _scope(request: dict[str, Any], tenant: str | None) -> None:
    """Keep only ``tenant``'s jobs (jobs from before tenants have none: the default tenant's)."""
    if tenant is None:
        return
    request["ExpressionAttributeNames"]["#tenant"] = TENANT_ATTRIBUTE
    values = dict(request["ExpressionAttributeValues"])
    values.update(to_dynamo({":tenant": tenant}))
    request["ExpressionAttributeValues"] = values
    default = " OR attribute_not_exists(#tenant)" if tenant == DEFAULT_TENANT else ""
    request["FilterExpression"] = f"#tenant = :tenant{default}"


def summary(
    services: Services, sqs: SQSClient, max_count_pages: int = 10, tenant: str | None = None
) -> dict[str, Any]:
    """The summary; scoped to ``tenant``, its own jobs only, and no queue depths (they are everyone's)."""
    now = services.clock.now()
    table = services.jobs.table
    jobs: dict[str, int] = {}
    finished: dict[str, int] = {}
    capped: list[str] = []
    for status in LIVE:
        jobs[status.value], exact = count(table, status, max_pages=max_count_pages, tenant=tenant)
        if not exact:
            capped.append(status.value)
    hour_ago = (now - timedelta(hours=1)).isoformat()
    for status in FINISHED:
        finished[status.value], exact = count(
            table, status, since=hour_ago, max_pages=max_count_pages, tenant=tenant
        )
        if not exact:
            capped.append(status.value)
    return {
        "generated_at": now,
        "jobs": jobs,
        "finished_last_hour": finished,
        "oldest_age_seconds": {status.value: oldest_age(table, status, now, tenant) for status in AGED},
        "queues": queue_depths(sqs, queues(services)) if tenant is None else {},
        "stuck": len(stuck_jobs(services, sqs, services.settings.stall_after, tenant=tenant)),
        "capped": capped,
    }


def stuck_jobs(
    services: Services,
    sqs: SQSClient,
    threshold: timedelta,
    max_due: int = 1000,
    dlq_peek: int = 10,
    tenant: str | None = None,
) -> list[StuckJob]:
    """Jobs stuck for ``threshold`` or longer, by the sweeper's diagnosis and the dead-letter queues
    (only ``tenant``'s, when given)."""
    settings, table = services.settings, services.jobs.table
    now = services.clock.now()
    found: dict[str, StuckJob] = {}
    tenants: dict[str, str] = {}
    seen = 0
    for shard in range(settings.sweep_shards):
        for entry in watch.due_entries(table, str(shard), now, max_due - seen):
            seen += 1
            tail = watch.read_tail(table, entry.job_id)
            if tail is None:
                continue
            finding = diagnose(tail, now, settings)
            if finding.stuck(now, threshold) and finding.reason is not None and finding.since is not None:
                found[entry.job_id] = _stuck(tail.job, finding.reason, finding.since, finding.evidence)
                tenants[entry.job_id] = tenant_of(tail.job)
    urls = queues(services)
    for name, reason in (("step_dlq", Reason.DEAD_LETTERED), ("signal_dlq", Reason.SIGNAL_DEAD_LETTERED)):
        if name in urls:
            for job_id, since, evidence in _peek(sqs, urls[name], dlq_peek):
                if job_id in found:
                    found[job_id].evidence.setdefault("dead_letters", []).append(evidence)
                    continue
                tail = watch.read_tail(table, job_id)
                if tail is not None and not tail.status.is_terminal:
                    detail = evidence_of(tail) | {"dead_letters": [evidence]}
                    found[job_id] = _stuck(tail.job, reason, since, detail)
                    tenants[job_id] = tenant_of(tail.job)
    return sorted(
        (job for job_id, job in found.items() if tenant is None or tenants.get(job_id) == tenant),
        key=lambda job: job.since,
    )


def _stuck(job: dict[str, Any], reason: Reason, since: datetime, evidence: dict[str, Any]) -> StuckJob:
    return StuckJob(
        job_id=str(job[schema.PK]),
        job_type=job.get("job_type"),
        status=JobStatus(job["status"]) if job.get("status") else None,
        reason=reason,
        since=since,
        evidence=evidence,
    )


def _peek(sqs: SQSClient, url: str, limit: int) -> list[tuple[str, datetime, dict[str, Any]]]:
    """Job ids named by up to ``limit`` messages of a dead-letter queue, which stay there."""
    response = sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=max(1, min(limit, 10)),
        VisibilityTimeout=0,  # a peek: the messages are visible again at once
        WaitTimeSeconds=0,
        MessageSystemAttributeNames=["SentTimestamp", "ApproximateReceiveCount"],
    )
    named = []
    for message in response.get("Messages", []):
        try:
            body = json.loads(message.get("Body", ""))
            job_id = str(body["job_id"])
        except (ValueError, KeyError, TypeError):
            continue  # not a message of ours: the DLQ depth still counts it
        attributes = message.get("Attributes", {})
        sent = from_millis(int(attributes.get("SentTimestamp", 0)))
        evidence = {
            "message_id": message.get("MessageId"),
            "sent_at": sent.isoformat(),
            "receive_count": int(attributes.get("ApproximateReceiveCount", 0)),
            "signal": body.get("name"),
            "seq": body.get("seq"),
        }
        named.append((job_id, sent, evidence))
    return named
