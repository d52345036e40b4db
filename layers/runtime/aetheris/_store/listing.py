"""Paginated reads for the HTTP API: jobs by status and age, and one job's log, page by page.

Every page is one bounded ``Query`` (never a ``Scan``): jobs come from the ``by-status`` index,
newest first, and a job's log from its item collection in ``seq`` order. A page asks for one item
more than it returns, so a full last page carries no cursor and no client ever fetches an empty
page. The cursor is the key of the last item returned — what DynamoDB would give as
``LastEvaluatedKey`` — as base64url JSON: opaque to clients, checked on the way back in, so a
forged or foreign cursor is an ``InvalidCursor`` and never reaches DynamoDB.

Without a status the listing reads the top of each status partition (one ``Query`` per status) and
merges them by ``gsi1sk``; resuming uses ``gsi1sk < cursor`` on each partition, which is exact
because a job has one item and its ``gsi1sk`` ends with its job id. Rejected: a ``Scan`` (cost grows
with the table, not the page) and a single all-jobs partition (one hot key for every status write).
The index is eventually consistent on AWS: a job started a moment ago may miss the first listing.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aetheris._store import schema
from aetheris._store.dynamo import Item, Table, from_dynamo, to_dynamo
from aetheris._store.jobs import COMMITTED
from aetheris.errors import AetherisError
from aetheris.events import JobStatus

JOB_KEY = (schema.PK, schema.SK, schema.STATUS_INDEX_PK, schema.STATUS_INDEX_SK)
EVENT_KEY = (schema.PK, schema.SK)
# What a listing shows of a job: its payloads (input, result) stay behind, they can be 256 KiB each.
SUMMARY_ATTRIBUTES = (*JOB_KEY, "job_id", "job_type", "version", "status", "created_at", "updated_at")
_MAX_CURSOR_CHARS = 4096


class InvalidCursor(AetherisError):
    """The cursor was not produced by this listing (tampered, truncated, or from another listing)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"invalid cursor: {reason}; pass back next_cursor unchanged, or start without one")


@dataclass(frozen=True)
class Page:
    items: list[Item]
    next_cursor: str | None


def encode_cursor(key: Mapping[str, Any]) -> str:
    text = json.dumps(dict(key), separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, fields: tuple[str, ...]) -> dict[str, str]:
    """The key inside ``cursor``: exactly ``fields``, every value a non-empty string."""
    if len(cursor) > _MAX_CURSOR_CHARS:
        raise InvalidCursor("too long")
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        key = json.loads(raw)
    except (binascii.Error, ValueError):  # bad base64, bad UTF-8 and bad JSON are all ValueErrors
        raise InvalidCursor("not base64url JSON") from None
    if not isinstance(key, dict) or sorted(key) != sorted(fields):
        raise InvalidCursor(f"expected the fields {', '.join(fields)}")
    # DynamoDB refuses key values over 1 KiB (sort keys) before it looks at anything else.
    if not all(isinstance(value, str) and 0 < len(value.encode()) <= 1024 for value in key.values()):
        raise InvalidCursor("every field must be a string of 1 to 1024 bytes")
    return key


class Listing:
    def __init__(self, table: Table) -> None:
        self.table = table

    def jobs(self, status: JobStatus | None, limit: int, cursor: str | None = None) -> Page:
        """Jobs newest first (by last status change), all of them or those in ``status``."""
        after = decode_cursor(cursor, JOB_KEY) if cursor else None
        if after is not None and after[schema.STATUS_INDEX_PK] not in {s.value for s in JobStatus}:
            raise InvalidCursor("unknown status")
        if status is None:
            merged = [item for one in JobStatus for item in self._partition(one, limit, after, merged=True)]
            merged.sort(key=lambda item: str(item[schema.STATUS_INDEX_SK]), reverse=True)
            return _page(merged, limit, JOB_KEY)
        if after is not None and after[schema.STATUS_INDEX_PK] != status.value:
            raise InvalidCursor(
                f"it continues a listing of {after[schema.STATUS_INDEX_PK]}, not {status.value}"
            )
        return _page(self._partition(status, limit, after, merged=False), limit, JOB_KEY)

    def events(
        self,
        job_id: str,
        limit: int,
        cursor: str | None = None,
        max_bytes: int | None = None,
        resolve: Callable[[Item], Item] | None = None,
    ) -> Page | None:
        """The job's committed events in ``seq`` order; ``None`` if there is no such job.

        ``max_bytes`` ends a page early once its events grow past it (a Lambda's answer is capped
        at 6 MB and one event may hold a big result); a page always holds at least one event.
        ``resolve`` turns each shown event into what the reader sees (offloaded values fetched),
        before it is measured, and only for the events the page shows.
        """
        after = decode_cursor(cursor, EVENT_KEY) if cursor else None
        if after is not None and (
            after[schema.PK] != job_id or not after[schema.SK].startswith(schema.EVENT_PREFIX)
        ):
            raise InvalidCursor("it continues the log of another job")
        # Every job's log starts with JobCreated at seq 0, so an empty first page means no such job.
        # The job item sorts right after the log and is skipped.
        request: dict[str, Any] = {
            "KeyConditionExpression": "pk = :job AND sk BETWEEN :log_start AND :job_item",
            "ExpressionAttributeValues": to_dynamo(
                {":job": job_id, ":log_start": schema.event_sk(0), ":job_item": schema.JOB_SK}
            ),
            "ConsistentRead": True,
        }
        if after is not None:
            request["ExclusiveStartKey"] = to_dynamo(after)
        seen_job = after is not None

        def committed_event(item: Item) -> bool:
            nonlocal seen_job
            seen_job = True
            if item[schema.SK] == schema.JOB_SK:
                return False
            # An open claim (a worker's lease on the next slot) is not an event yet.
            return str(item[schema.SK]).startswith(schema.EVENT_PREFIX) and item.get("state") == COMMITTED

        items = self._read(request, limit, committed_event)
        return _page(items, limit, EVENT_KEY, max_bytes, resolve) if seen_job else None

    def _partition(
        self, status: JobStatus, limit: int, after: dict[str, str] | None, *, merged: bool
    ) -> list[Item]:
        names = {f"#a{i}": attribute for i, attribute in enumerate(SUMMARY_ATTRIBUTES)}
        names["#status_pk"] = schema.STATUS_INDEX_PK
        values: dict[str, Any] = {":status": status.value}
        condition = "#status_pk = :status"
        request: dict[str, Any] = {"IndexName": schema.STATUS_INDEX, "ScanIndexForward": False}
        if after is not None and merged:
            names["#status_sk"] = schema.STATUS_INDEX_SK
            condition += " AND #status_sk < :after"
            values[":after"] = after[schema.STATUS_INDEX_SK]
        elif after is not None:
            request["ExclusiveStartKey"] = to_dynamo(after)
        request.update(
            KeyConditionExpression=condition,
            ProjectionExpression=", ".join(f"#a{i}" for i in range(len(SUMMARY_ATTRIBUTES))),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=to_dynamo(values),
        )
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
    key: tuple[str, ...],
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
    return Page(shown, encode_cursor({field: shown[-1][field] for field in key}))
