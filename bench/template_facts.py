"""What the benchmarks read from ``template.yaml`` and DynamoDB's sizing rules.

The deployed shape decides the bill: the tables' index projections (what an index write copies),
each function's memory and architecture, and the SQS event sources' batch sizes. Read here from
the template, the single source of truth, so a change there changes the figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from aetheris_infra.template import load_template

KB = 1024


def value_size(value: dict[str, Any]) -> int:
    """DynamoDB's size of one attribute value in wire form (``{"S": "x"}``), per its documented rules."""
    ((kind, raw),) = value.items()
    if kind == "S":
        return len(raw.encode())
    if kind == "N":
        digits = raw.lstrip("-").replace(".", "").lstrip("0") or "0"
        return math.ceil(len(digits) / 2) + 1
    if kind == "B":
        return len(raw) if isinstance(raw, bytes | bytearray) else len(raw) * 3 // 4
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(value_size({kind[0]: v}) for v in raw)
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in raw)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(v) for k, v in raw.items())
    raise ValueError(f"unknown DynamoDB type {kind}")


def item_size(item: dict[str, Any] | None) -> int:
    if not item:
        return 0
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def write_units(size: int) -> int:
    return max(1, math.ceil(size / KB))


@dataclass(frozen=True)
class Index:
    name: str
    keys: tuple[str, ...]  # the index's own key attributes
    projection: str  # ALL | KEYS_ONLY | INCLUDE
    included: tuple[str, ...] = ()

    def holds(self, item: dict[str, Any] | None) -> bool:
        return bool(item) and all(k in item for k in self.keys)  # type: ignore[operator]

    def projected(self, item: dict[str, Any], table_keys: tuple[str, ...]) -> dict[str, Any]:
        if self.projection == "ALL":
            return item
        names = set(self.keys) | set(table_keys) | set(self.included)
        return {k: v for k, v in item.items() if k in names}

    def writes(
        self, before: dict[str, Any] | None, after: dict[str, Any] | None, table_keys: tuple[str, ...]
    ) -> int:
        """Index write units for one table write, as DynamoDB bills index maintenance."""
        had, has = self.holds(before), self.holds(after)
        if not had and not has:
            return 0
        if had and not has:
            return write_units(item_size(self.projected(before or {}, table_keys)))
        if has and not had:
            return write_units(item_size(self.projected(after or {}, table_keys)))
        assert before is not None and after is not None
        old, new = self.projected(before, table_keys), self.projected(after, table_keys)
        if any(before[k] != after[k] for k in self.keys):  # moved: delete the old entry, put the new
            return write_units(item_size(old)) + write_units(item_size(new))
        return write_units(item_size(new)) if old != new else 0


@dataclass(frozen=True)
class TableShape:
    keys: tuple[str, ...]
    indexes: tuple[Index, ...]


def table_shapes(resources: dict[str, str]) -> dict[str, TableShape]:
    """Key attributes and index projections of each table of ``template.yaml``, by physical name
    (``resources`` maps logical id → physical name)."""
    template = load_template()
    shapes: dict[str, TableShape] = {}
    for logical, physical in resources.items():
        props = template.resources[logical].properties
        keys = tuple(k["AttributeName"] for k in props["KeySchema"])
        indexes = tuple(
            Index(
                gsi["IndexName"],
                tuple(k["AttributeName"] for k in gsi["KeySchema"]),
                gsi["Projection"]["ProjectionType"],
                tuple(gsi["Projection"].get("NonKeyAttributes", ())),
            )
            for gsi in props.get("GlobalSecondaryIndexes", [])
        )
        shapes[physical] = TableShape(keys, indexes)
    return shapes


@dataclass(frozen=True)
class FunctionConfig:
    memory_mb: int
    architecture: str
    batch_size: int | None  # of its SQS event source, if it has one


def function_config(logical_id: str) -> FunctionConfig:
    """Memory, architecture (``Globals.Function`` unless the function overrides them) and the SQS
    event source's batch size (parameters at their defaults)."""
    template = load_template()
    defaults = template.parameter_values()
    globals_fn: dict[str, Any] = (template.document.get("Globals") or {}).get("Function") or {}
    props = template.resources[logical_id].properties
    memory = int(props.get("MemorySize", globals_fn.get("MemorySize", 128)))
    architecture = str((props.get("Architectures") or globals_fn.get("Architectures") or ["x86_64"])[0])
    batch: int | None = None
    for event in (props.get("Events") or {}).values():
        if event.get("Type") == "SQS":
            raw = event["Properties"].get("BatchSize", 10)
            batch = int(defaults[raw["Ref"]] if isinstance(raw, dict) else raw)
    return FunctionConfig(memory, architecture, batch)
