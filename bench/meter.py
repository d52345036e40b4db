"""A bill meter for the embedded stack: every botocore call counted and priced as AWS would bill it.

``Meter.install()`` registers hooks on botocore's built-in handlers, so every client built afterwards
(``LocalRuntime``'s, the runtimes', any a handler makes) reports each call. For each call the meter
records what AWS charges:

- DynamoDB write request units from real item sizes: the larger of the item before and after the
  write (read straight from moto's in-process backend, without a counted request), 1 KB per unit,
  twice for a transaction, one unit for a write whose condition failed; plus the index writes the
  template's projections make (``ALL`` copies the item, so any change of an indexed item writes the
  index; ``KEYS_ONLY`` writes only when the index key appears, changes or goes; a changed index key
  is a delete and a put).
- DynamoDB read request units: the full size of the items read (a ``Query`` sums them, then rounds
  up to 4 KB; a projection does not make a read cheaper), half for an eventually consistent read; an
  index ``Query`` reads the projected size.
- SQS requests: one per call (a batch of 10 is one), one more per further 64 KB of a payload.
- S3 PUT and GET requests.
- Lambda: ``Meter.function(name, handler)`` wraps a handler; each call is one request, and its CPU
  is measured (process CPU, the step threads included) minus the CPU moto itself spent answering
  (moto's botocore stubber is timed), i.e. what the runtime and botocore cost, not the emulator.

Needs moto in-process (``mock_aws``): item sizes come from its backend.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from botocore.handlers import BUILTIN_HANDLERS
from moto.core import botocore_stubber
from moto.dynamodb.models import dynamodb_backends
from prices import PRICES, Prices
from template_facts import TableShape, item_size, write_units

ACCOUNT = "123456789012"
REGION = "us-east-1"
KB = 1024
SQS_CHUNK = 64 * KB
# Calls the local event source makes that Lambda's event source mapping does not (it knows its ARN).
LOCAL_ONLY = {("sqs", "GetQueueAttributes")}


@dataclass
class Bill:
    """What a stretch of work cost: counts by (service, operation), units, Lambda requests and CPU."""

    calls: Counter[str] = field(default_factory=Counter)
    wru: float = 0.0
    index_wru: float = 0.0
    rru: float = 0.0
    items_read: int = 0
    bytes_read: int = 0
    sqs_requests: int = 0
    s3_put: int = 0
    s3_get: int = 0
    lambda_requests: Counter[str] = field(default_factory=Counter)
    lambda_cpu_s: Counter[str] = field(default_factory=Counter)  # runtime CPU, moto excluded
    records: Counter[str] = field(default_factory=Counter)  # SQS records handed to each function
    lambda_io: Counter[str] = field(default_factory=Counter)  # "function.service": calls made inside it
    excluded_cpu_s: float = 0.0  # moto's and the meter's own CPU, left out of the functions' CPU

    def minus(self, other: Bill) -> Bill:
        out = Bill()
        for name in ("calls", "lambda_requests", "lambda_cpu_s", "lambda_io", "records"):
            mine, theirs = getattr(self, name), getattr(other, name)
            setattr(out, name, Counter({k: mine[k] - theirs[k] for k in mine}))
        for name in (
            "wru",
            "index_wru",
            "rru",
            "items_read",
            "bytes_read",
            "sqs_requests",
            "s3_put",
            "s3_get",
        ):
            setattr(out, name, getattr(self, name) - getattr(other, name))
        out.excluded_cpu_s = self.excluded_cpu_s - other.excluded_cpu_s
        return out

    def copy(self) -> Bill:
        return self.minus(Bill())


@dataclass(frozen=True)
class LambdaModel:
    """How measured CPU and counted calls become billed Lambda duration.

    CPU measured here is scaled to the function's share of a vCPU (Lambda gives one full vCPU at
    1,769 MB, proportionally less below); each AWS call adds its typical in-region latency, during
    which the function waits and is billed. The latencies are assumptions (single-digit ms for
    DynamoDB and SQS, as AWS documents them), not measurements: moto answers in-process."""

    memory_mb: int
    architecture: str
    latency_s: dict[str, float] = field(
        default_factory=lambda: {"dynamodb": 0.005, "sqs": 0.008, "s3": 0.020}
    )
    full_vcpu_mb: int = 1769

    @property
    def cpu_scale(self) -> float:
        return max(1.0, self.full_vcpu_mb / self.memory_mb)

    def seconds(self, cpu_s: float, calls: dict[str, float]) -> float:
        """Billed seconds for ``cpu_s`` of CPU measured here and ``calls`` (service → count) made."""
        io = sum(n * self.latency_s.get(service, 0.0) for service, n in calls.items())
        return cpu_s * self.cpu_scale + io

    def duration_cost(self, seconds: float, prices: Prices = PRICES) -> float:
        return seconds * self.memory_mb / 1024 * prices.lambda_gb_s(self.architecture)


class Meter:
    def __init__(self, shapes: dict[str, TableShape] | None = None) -> None:
        self.shapes = shapes or {}
        self.bill = Bill()
        self._pending: dict[int, list[tuple[str, dict[str, Any] | None, dict[str, Any]]]] = {}
        self._function = threading.local()
        self._excluded_cpu = 0.0
        self._installed = False
        self._paused = False

    # -- installation -------------------------------------------------------------------------

    def install(self) -> Meter:
        # On botocore's built-in handler list, as moto's own stub is: every session created from now
        # on gets them (moto swaps boto3's default session, so registering on one would miss clients).
        self._hooks = [
            ("before-parameter-build", self._excluding(self._before)),
            ("after-call", self._excluding(self._after)),
        ]
        BUILTIN_HANDLERS.extend(self._hooks)
        original = self._original_stub = botocore_stubber.BotocoreStubber.__call__
        meter = self

        def timed(stub: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
            start = time.thread_time()
            try:
                return original(stub, event_name, request, **kwargs)
            finally:
                meter._excluded_cpu += time.thread_time() - start

        botocore_stubber.BotocoreStubber.__call__ = timed  # type: ignore[method-assign]
        # LocalRuntime's in-process moto can answer without HTTP (aetheris._local.moto_direct), which
        # also skips botocore's signing, HTTP objects and parsing — CPU a Lambda function spends on
        # AWS. A metered run bills it, so it takes the HTTP path unless told otherwise; if told
        # otherwise, the direct answer counts as the emulator's work, as the stubber's does.
        self._direct_setting = os.environ.get("AETHERIS_MOTO_DIRECT")
        os.environ.setdefault("AETHERIS_MOTO_DIRECT", "0")
        from aetheris._local import moto_direct

        direct = self._original_direct = moto_direct._Direct.__call__

        def timed_direct(hook: Any, *args: Any, **kwargs: Any) -> Any:
            start = time.thread_time()
            try:
                return direct(hook, *args, **kwargs)
            finally:
                meter._excluded_cpu += time.thread_time() - start

        moto_direct._Direct.__call__ = timed_direct  # type: ignore[method-assign]
        self._installed = True
        return self

    def uninstall(self) -> None:
        """Clients built from now on are not metered (those built before keep their hooks)."""
        for entry in self._hooks:
            BUILTIN_HANDLERS.remove(entry)
        botocore_stubber.BotocoreStubber.__call__ = self._original_stub  # type: ignore[method-assign]
        from aetheris._local import moto_direct

        moto_direct._Direct.__call__ = self._original_direct  # type: ignore[method-assign]
        if self._direct_setting is None:
            os.environ.pop("AETHERIS_MOTO_DIRECT", None)

    def _excluding(self, hook: Callable[..., None]) -> Callable[..., None]:
        """``hook``, its own CPU left out of the functions' (the meter is not part of the bill)."""

        def timed(**kwargs: Any) -> None:
            start = time.thread_time()
            try:
                hook(**kwargs)
            finally:
                self._excluded_cpu += time.thread_time() - start

        return timed

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Calls made meanwhile are not billed (the benchmark looking at the stack, not the stack working)."""
        self._paused = True
        try:
            yield
        finally:
            self._paused = False

    def snapshot(self) -> Bill:
        self.bill.excluded_cpu_s = self._excluded_cpu
        return self.bill.copy()

    # -- Lambda -------------------------------------------------------------------------------

    def function(self, name: str, handler: Callable[..., Any]) -> Callable[..., Any]:
        """``handler`` billed as one Lambda request per call, its runtime CPU measured."""

        def invoke(*args: Any, **kwargs: Any) -> Any:
            event = args[0] if args and isinstance(args[0], dict) else {}
            self.bill.records[name] += len(event.get("Records", []))
            with self.invocation(name):
                return handler(*args, **kwargs)

        return invoke

    @contextmanager
    def invocation(self, name: str) -> Iterator[None]:
        outer = getattr(self._function, "name", None)
        if outer is not None:  # nested (a handler calling the runtime): billed to the outer one
            yield
            return
        self._function.name = name
        # Process CPU: the runtime runs a step's body on a thread of its own, whose AWS calls (a
        # tool's ledger writes) are in the excluded time too. Nothing else runs meanwhile here.
        start_cpu, start_moto = time.process_time(), self._excluded_cpu
        try:
            yield
        finally:
            cpu = (time.process_time() - start_cpu) - (self._excluded_cpu - start_moto)
            self.bill.lambda_requests[name] += 1
            self.bill.lambda_cpu_s[name] += cpu
            self._function.name = None

    # -- hooks --------------------------------------------------------------------------------

    def _service(self, model: Any) -> str:
        return str(model.service_model.endpoint_prefix)

    def _before(self, model: Any, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["meter_params"] = params
        if self._paused or self._service(model) != "dynamodb":
            return
        writes = list(self._write_targets(model.name, params))
        context["meter_writes"] = [(table, key, self._item(table, key)) for table, key in writes]

    def _after(self, model: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        service, op = self._service(model), model.name
        if self._paused or (service, op) in LOCAL_ONLY:
            return
        if service == "sqs" and op == "ReceiveMessage" and not parsed.get("Messages"):
            return  # an idle poll: on AWS the event source's long polls cost the same with no work
        key = f"{service}.{op}"
        self.bill.calls[key] += 1
        function = getattr(self._function, "name", None)
        if function is not None:
            self.bill.lambda_io[f"{function}.{service}"] += 1
        failed = "Error" in parsed
        if service == "dynamodb":
            self._dynamodb(op, parsed, context, failed)
        elif service == "sqs":
            self.bill.sqs_requests += self._sqs_requests(op, context.get("meter_params", {}))
        elif service == "s3":
            if op in ("PutObject", "CopyObject", "ListObjectsV2", "CreateMultipartUpload"):
                self.bill.s3_put += 1
            elif op in ("GetObject", "HeadObject"):
                self.bill.s3_get += 1

    def _sqs_requests(self, op: str, params: dict[str, Any]) -> int:
        if op == "SendMessage":
            return max(1, math.ceil(len(params.get("MessageBody", "").encode()) / SQS_CHUNK))
        if op == "SendMessageBatch":
            size = sum(len(e.get("MessageBody", "").encode()) for e in params.get("Entries", []))
            return max(1, math.ceil(size / SQS_CHUNK))
        return 1

    # -- DynamoDB -----------------------------------------------------------------------------

    def _write_targets(self, op: str, params: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
        if op == "PutItem":
            yield params["TableName"], self._key_of(params["TableName"], params["Item"])
        elif op in ("UpdateItem", "DeleteItem"):
            yield params["TableName"], params["Key"]
        elif op == "TransactWriteItems":
            for entry in params["TransactItems"]:
                ((_kind, body),) = entry.items()
                key = body["Key"] if "Key" in body else self._key_of(body["TableName"], body["Item"])
                yield body["TableName"], key
        elif op == "BatchWriteItem":
            for table, requests in params["RequestItems"].items():
                for request in requests:
                    if "PutRequest" in request:
                        yield table, self._key_of(table, request["PutRequest"]["Item"])
                    else:
                        yield table, request["DeleteRequest"]["Key"]

    def _key_of(self, table: str, item: dict[str, Any]) -> dict[str, Any]:
        keys = self.shapes[table].keys if table in self.shapes else ("pk", "sk")
        return {k: item[k] for k in keys if k in item}

    def _item(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        backend = dynamodb_backends[ACCOUNT][REGION]
        found = backend.get_item(table, key)
        return None if found is None else found.to_json()["Attributes"]

    def _dynamodb(self, op: str, parsed: dict[str, Any], context: dict[str, Any], failed: bool) -> None:
        params = context.get("meter_params", {})
        if op in ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"):
            factor = 2 if op == "TransactWriteItems" else 1
            for table, key, before in context.get("meter_writes", []):
                after = None if failed else self._item(table, key)
                self.bill.wru += factor * write_units(max(item_size(before), item_size(after)))
                if failed:
                    continue
                shape = self.shapes.get(table)
                for index in shape.indexes if shape else ():
                    self.bill.index_wru += index.writes(before, after, shape.keys)
        elif op in ("Query", "Scan"):
            items = parsed.get("Items", [])
            table = params.get("TableName", "")
            sizes = [self._read_size(table, params.get("IndexName"), item) for item in items]
            units = max(1, math.ceil(sum(sizes) / (4 * KB)))
            self.bill.rru += units if params.get("ConsistentRead") else units / 2
            self.bill.items_read += len(items)
            self.bill.bytes_read += sum(sizes)
        elif op == "GetItem":
            size = item_size(self._item(params["TableName"], params["Key"])) if "Item" in parsed else 0
            units = max(1, math.ceil(size / (4 * KB)))
            self.bill.rru += units if params.get("ConsistentRead") else units / 2
            self.bill.items_read += 1 if "Item" in parsed else 0
            self.bill.bytes_read += size
        elif op == "BatchGetItem":
            for table, items in parsed.get("Responses", {}).items():
                for item in items:
                    size = item_size(self._item(table, self._key_of(table, item)))
                    self.bill.rru += max(1, math.ceil(size / (4 * KB)))  # charged per item
                    self.bill.items_read += 1
                    self.bill.bytes_read += size
        elif op == "TransactGetItems":
            self.bill.rru += 2 * len(parsed.get("Responses", []))

    def _read_size(self, table: str, index: str | None, item: dict[str, Any]) -> int:
        shape = self.shapes.get(table)
        full = self._item(table, self._key_of(table, item))
        if full is None:
            return item_size(item)
        if index is None or shape is None:
            return item_size(full)
        found = next((i for i in shape.indexes if i.name == index), None)
        return item_size(found.projected(full, shape.keys) if found else full)
