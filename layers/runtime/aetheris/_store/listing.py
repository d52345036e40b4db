"""Paginated reads for the HTTP API: jobs by status and age, and one job's log, page by page.

Every page is one bounded ``Query`` (never a ``Scan``): jobs come from the ``by-status`` index,
newest first, and a job's log from its item collection in ``seq`` order. A page asks for one item
more than it returns, so a full last page carries no cursor and no client ever fetches an empty
page. A cursor is the position of the last item returned, in a format the API's document states
as a pattern, so that every cursor that fits the pattern is a position (never a refusal):

* jobs: ``<micros>.<job_id>`` — the last job's ``updated_at`` in microseconds since the epoch, and
  its id: the by-status sort key ``<iso stamp>#<job_id>`` the next page continues below;
* a job's events: ``<seq>`` — the last event's sequence number.

A cursor is a position, not a capability: it only says where a listing resumes, in the partitions
the caller may read anyway, so it need not be signed. Rejected: the key as base64url JSON (what
``LastEvaluatedKey`` gives) — opaque, but a schema cannot tell a valid one from a forged one.

Without a status the listing reads the top of each status partition (one ``Query`` per status) and
merges them by ``gsi1sk``; resuming uses ``gsi1sk < cursor`` on each partition (with a status
too), which is exact because a job has one item and its ``gsi1sk`` ends with its job id. Rejected: a
``Scan`` (cost grows with the table, not the page) and a single all-jobs partition (one hot key for
every status write). The index is eventually consistent on AWS: a job started a moment ago may miss
the first listing.

Scoped to a tenant (``aetheris._tenancy``), a listing filters the index by the job's ``tenant``
(jobs of others are read and dropped by DynamoDB, and the page still holds ``limit`` jobs: reads
continue past filtered ones), and a log is that of a job of the tenant or none. A per-tenant index
key would read less for a small tenant in a big table; the status partitions are the sweeper's too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from aetheris._store import schema
from aetheris._store.dynamo import Item, Table, from_dynamo, to_dynamo
from aetheris._store.jobs import COMMITTED
from aetheris._tenancy import DEFAULT_TENANT, TENANT_ATTRIBUTE, owns
from aetheris.errors import AetherisError
from aetheris.events import JobStatus

# What a listing shows of a job: its payloads (input, result) stay behind, they can be 256 KiB each.
SUMMARY_ATTRIBUTES = (
    schema.STATUS_INDEX_SK,
    "job_id",
    "job_type",
    "version",
    "status",
    "created_at",
    "updated_at",
)
# The patterns of the two cursors; ``aetheris.handlers.api_models`` puts them in the API's document.
JOB_CURSOR_PATTERN: Final = r"^[0-9]{1,16}\.[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,127}$"
EVENT_CURSOR_PATTERN: Final = r"^[0-9]{1,9}$"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class InvalidCursor(AetherisError):
    """The cursor is not in the format of this listing's cursors."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"invalid cursor: {reason}; pass back next_cursor unchanged, or start without one")


@dataclass(frozen=True)
class Page:
    items: list[Item]
    next_cursor: str | None


def job_cursor(status_sort_key: str) -> str:
    """The cursor after the job whose by-status sort key is ``<iso stamp>#<job_id>``."""
    stamp, _, job_id = status_sort_key.partition("#")
    micros = (datetime.fromisoformat(stamp) - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}.{job_id}"


def job_position(cursor: str) -> str:
    """The by-status sort key a job cursor stands for: the next page lists the jobs below it."""
    if not re.fullmatch(JOB_CURSOR_PATTERN, cursor):
        raise InvalidCursor("a job cursor is <microseconds>.<job_id>")
    micros, _, job_id = cursor.partition(".")
    return f"{(_EPOCH + timedelta(microseconds=int(micros))).isoformat()}#{job_id}"


def event_position(cursor: str) -> int:
    """The first sequence number after an event cursor."""
    if not re.fullmatch(EVENT_CURSOR_PATTERN, cursor):
        raise InvalidCursor("an event cursor is the seq of the last event shown")
    return int(cursor) + 1


class Listing:
    def __init__(self, table: Table) -> None:
        self.table = table

    def jobs(
        self, status: JobStatus | None, limit: int, cursor: str | None = None, *, tenant: str | None = None
    ) -> Page:
        """Jobs newest first (by last status change), all of them or those in ``status``; with a
        ``tenant``, only its jobs."""
        below = job_position(cursor) if cursor else None
        statuses = list(JobStatus) if status is None else [status]
        merged = [item for one in statuses for item in self._partition(one, limit, below, tenant)]
        merged.sort(key=lambda item: str(item[schema.STATUS_INDEX_SK]), reverse=True)
        return _page(merged, limit, lambda last: job_cursor(str(last[schema.STATUS_INDEX_SK])))

    def events(
        self,
        job_id: str,
        limit: int,
        cursor: str | None = None,
        max_bytes: int | None = None,
        resolve: Callable[[Item], Item] | None = None,
        *,
        tenant: str | None = None,
    ) -> Page | None:
        """The job's committed events in ``seq`` order; ``None`` if there is no such job (or it is
        not ``tenant``'s, when one is given).

        ``max_bytes`` ends a page early once its events grow past it (a Lambda's answer is capped
        at 6 MB and one event may hold a big result); a page always holds at least one event.
        ``resolve`` turns each shown event into what the reader sees (offloaded values fetched),
        before it is measured, and only for the events the page shows.
        """
        first = event_position(cursor) if cursor else 0
        # The job item sorts right after the log: it is read (and skipped) on every page, so a page
        # with nothing at all means there is no such job, with a cursor or without.
        request: dict[str, Any] = {
            "KeyConditionExpression": "pk = :job AND sk BETWEEN :log_start AND :job_item",
            "ExpressionAttributeValues": to_dynamo(
                {":job": job_id, ":log_start": schema.event_sk(first), ":job_item": schema.JOB_SK}
            ),
            "ConsistentRead": True,
        }
        seen_job = False
        job: Item | None = None

        def committed_event(item: Item) -> bool:
            nonlocal seen_job, job
            seen_job = True
            if item[schema.SK] == schema.JOB_SK:
                job = item
                return False
            # An open claim (a worker's lease on the next slot) is not an event yet.
            return str(item[schema.SK]).startswith(schema.EVENT_PREFIX) and item.get("state") == COMMITTED

        items = self._read(request, limit, committed_event)
        if not seen_job or (tenant is not None and not owns(job or self._job_item(job_id), tenant)):
            return None
        return _page(items, limit, lambda last: str(last["seq"]), max_bytes, resolve)

    def _job_item(self, job_id: str) -> Item | None:
        """The job item, when a page of its log ended before it (a page holds ``limit + 1`` items)."""
        return self.table.get(job_id, schema.JOB_SK)

    def _partition(self, status: JobStatus, limit: int, below: str | None, tenant: str | None) -> list[Item]:
        names = {f"#a{i}": attribute for i, attribute in enumerate(SUMMARY_ATTRIBUTES)}
        names["#status_pk"] = schema.STATUS_INDEX_PK
        values: dict[str, Any] = {":status": status.value}
        condition = "#status_pk = :status"
        if below is not None:
            names["#status_sk"] = schema.STATUS_INDEX_SK
            condition += " AND #status_sk < :below"
            values[":below"] = below
        scope: dict[str, Any] = {}
        if tenant is not None:
            names["#tenant"] = TENANT_ATTRIBUTE
            values[":tenant"] = tenant
            # Jobs created before tenants existed have no tenant: they are the default tenant's.
            default = " OR attribute_not_exists(#tenant)" if tenant == DEFAULT_TENANT else ""
            scope["FilterExpression"] = f"#tenant = :tenant{default}"
        request: dict[str, Any] = {
            **scope,
            "IndexName": schema.STATUS_INDEX,
            "ScanIndexForward": False,
            "KeyConditionExpression": condition,
            "ProjectionExpression": ", ".join(f"#a{i}" for i in range(len(SUMMARY_ATTRIBUTES))),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": to_dynamo(values),
        }
        return self._read(request, limit)

    def _read(self, request: dict[str, Any], limit: int, keep: Callable[[Item], bool] = bool) -> list[Item]:
        """Up to ``limit + 1`` kept items, following DynamoDB's pages only as far as that needs."""
        kept: list[Item] = []
        while True:
            response = self.table.client.query(
                TableName=self.table.name, Limit=limit + 1 - len(kept), **request
            )
            kept.extend(item for item in map(from_dynamo, response.get("Items", [])) if item and keep(item))
            last = response.get("LastEvaluatedKey")
            if len(kept) > limit or not last:
                return kept
            request = {**request, "ExclusiveStartKey": last}


def _page(
    items: list[Item],
    limit: int,
    cursor_after: Callable[[Item], str],
    max_bytes: int | None = None,
    resolve: Callable[[Item], Item] | None = None,
) -> Page:
    """The first ``limit`` items (fewer if they would pass ``max_bytes``, but never none)."""
    shown: list[Item] = []
    total = 0
    for item in items[:limit]:
        item = resolve(item) if resolve else item
        if max_bytes is not None:
            total += len(json.dumps(item, default=str))
            if total > max_bytes and shown:
                break
        shown.append(item)
    if len(items) == len(shown):
        return Page(shown, None)
    return Page(shown, cursor_after(shown[-1]))
