"""Two of moto's DynamoDB costs made proportional to the work, not to the table — same answers.

The local stack serves DynamoDB from moto (5.2.5, the newest release; no setting changes either
cost). Profiling ``LocalRuntime`` showed two places where moto's work grows with everything the
table holds, which is why a run slowed down as jobs accumulated:

- ``TransactWriteItems`` deep-copies the *whole table* once per item of the transaction, to roll
  back if any item fails. Here the rollback copies only the items the transaction touches (before
  it runs) and puts them back if it fails. All-or-nothing holds exactly as before: the untouched
  items were never changed, and moto runs one request at a time (in-process the caller's thread,
  ``SerialMotoServer`` one request at a time).
- A table ``Query`` lists *every item of the table* and then keeps those of the asked partition.
  Here it is handed that partition's items only, which is the list the filter would have left.
  Sorting, key conditions, filters, limits, pages and projections are moto's own code, unchanged.
  Index queries (listings, the sweeper) are left as they are.

And one per-message cost of SQS: every message a receive looks at is checked against the queue's
retention period, which moto reads through ``get_queue_attributes`` — building *all* of the
queue's attributes, ``ApproximateNumberOfMessages`` and friends included (a pass over the whole
queue), for each message. Here the period is read from the queue itself (the attribute that
``get_queue_attributes`` reports it from) and compared exactly as moto does.

And one per-request cost: moto derives each request's method name from its action name character
by character; the (pure) answer is remembered. ``moto_expressions`` (update expressions: ~40 % of
a step's CPU before it) and ``moto_responses`` (action lookup, response key aliasing) remove more
of the same kind of waste; ``tests/infra/test_moto_differential.py`` checks plain moto and patched
moto answer a fixed sequence of calls — errors included — identically.

``install()`` patches moto's classes once per process (idempotent); every moto backend of the
process — in-process ``mock_aws`` or a moto server — then runs with them. Rejected: replacing
moto's store with our own structure (the point is moto's semantics), and a moto fork.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import threading
from collections.abc import Callable
from typing import Any

from aetheris._local import moto_expressions, moto_responses

_installed = False
_lock = threading.Lock()
# The (table, partition key) a table Query is asking for, while moto's query code runs.
_partition: contextvars.ContextVar[tuple[Any, Any] | None] = contextvars.ContextVar(
    "moto_partition", default=None
)


def install() -> None:
    """Patch moto's DynamoDB ``Table.query`` and ``transact_write_items`` (once per process)."""
    global _installed
    with _lock:
        if _installed:
            return
        from moto.dynamodb import models as backend_module
        from moto.dynamodb.models import DynamoDBBackend
        from moto.dynamodb.models.table import Table

        Table.query = _partitioned_query(Table.query)  # type: ignore[method-assign]
        Table.all_items = _partition_items(Table.all_items)  # type: ignore[method-assign, assignment]
        DynamoDBBackend.transact_write_items = _item_rollback(  # type: ignore[method-assign]
            DynamoDBBackend.transact_write_items
        )
        # transact_write_items takes its table-wide backup with this module's copy.deepcopy;
        # it gets the table itself instead (the backup is the touched items, taken above).
        backend_module.copy = _TablesByReference(Table)  # type: ignore[assignment, attr-defined]
        _read_retention_directly()
        _cache_action_names()
        moto_expressions.install()
        moto_responses.install()
        _installed = True


def _cache_action_names() -> None:
    """moto turns every request's action name into a method name character by character; it is a
    pure function of a handful of names, so its answers are remembered."""
    from moto.core import responses, utils

    cached = functools.lru_cache(maxsize=4096)(utils.camelcase_to_underscores)
    utils.camelcase_to_underscores = cached
    responses.camelcase_to_underscores = cached  # type: ignore[attr-defined]


def _read_retention_directly() -> None:
    from moto.sqs import models as sqs_models

    backend = sqs_models.SQSBackend
    original = backend.is_message_valid_based_on_retention_period

    def is_message_valid_based_on_retention_period(self: Any, queue_name: str, message: Any) -> bool:
        period = getattr(self.get_queue(queue_name), "message_retention_period", None)
        if period is None:  # moto's own code says what happens then (it raises)
            return bool(original(self, queue_name, message))
        retain_until = period + message.sent_timestamp / 1000
        return not retain_until <= sqs_models.unix_time()  # type: ignore[attr-defined]  # moto's clock

    backend.is_message_valid_based_on_retention_period = is_message_valid_based_on_retention_period  # type: ignore[method-assign]


def _partitioned_query(query: Callable[..., Any]) -> Callable[..., Any]:
    def partitioned(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = kwargs.get("index_name", args[6] if len(args) > 6 else None)
        if index_name is not None or hash_key is None:
            return query(self, hash_key, *args, **kwargs)
        token = _partition.set((self, hash_key))
        try:
            return query(self, hash_key, *args, **kwargs)
        finally:
            _partition.reset(token)

    return partitioned


def _partition_items(all_items: Callable[[Any], list[Any]]) -> Callable[[Any], list[Any]]:
    def items(self: Any) -> list[Any]:
        asked = _partition.get()
        if asked is None or asked[0] is not self:
            return all_items(self)
        partition = self.items.get(asked[1])  # .get: the table's defaultdict must not grow
        if partition is None:
            return []
        return list(partition.values()) if self.range_key_attr else [partition]

    return items


def _item_rollback(transact: Callable[..., None]) -> Callable[..., None]:
    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        saved = [_snapshot(self, entry) for entry in transact_items]
        try:
            transact(self, transact_items)
        except BaseException:
            for snapshot in reversed(saved):
                if snapshot is not None:
                    _restore(*snapshot)
            raise

    return transact_write_items


def _snapshot(backend: Any, entry: dict[str, Any]) -> tuple[Any, Any, Any, Any] | None:
    """(table, hash key, range key, a copy of the item or None) for one transaction item."""
    if len(entry) != 1:
        return None  # moto rejects it before touching anything
    ((_, op),) = entry.items()
    table = backend.tables.get(op.get("TableName"))
    if table is None:
        return None
    key = op.get("Key")
    if key is None:
        item = op.get("Item") or {}
        names = [n for n in (table.hash_key_attr, table.range_key_attr) if n]
        key = {n: item[n] for n in names if n in item}
    try:
        hash_key, range_key = backend.get_keys_value(table, key)
        current = table.get_item(hash_key, range_key)
    except Exception:  # noqa: BLE001 - a malformed key: moto's own code reports it, nothing was written
        return None
    return table, hash_key, range_key, copy.deepcopy(current)


def _restore(table: Any, hash_key: Any, range_key: Any, item: Any) -> None:
    if table.range_key_attr:
        partition = table.items.get(hash_key)
        if item is None:
            if partition is not None:
                partition.pop(range_key, None)
                if not partition:
                    del table.items[hash_key]
        else:
            table.items[hash_key][range_key] = item
    elif item is None:
        table.items.pop(hash_key, None)
    else:
        table.items[hash_key] = item


class _TablesByReference:
    """``copy`` as moto's backend module uses it, except that a ``Table`` is not deep-copied."""

    def __init__(self, table_type: type) -> None:
        self._table_type = table_type

    def deepcopy(self, value: Any, memo: dict[int, Any] | None = None) -> Any:
        if isinstance(value, self._table_type):
            return value
        return copy.deepcopy(value, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)
