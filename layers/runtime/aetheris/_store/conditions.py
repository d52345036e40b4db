"""Condition expressions built from named clauses, so each conditional write reads as its invariant.

A ``Condition`` carries its expression text with its attribute names and values; ``&`` and ``|``
combine them. Every value placeholder is numbered uniquely, so combined clauses never collide.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import count
from typing import Any

_numbers = count()


def _placeholder(attribute: str) -> str:
    return f":{attribute}_{next(_numbers)}"


@dataclass(frozen=True)
class Condition:
    expression: str
    names: Mapping[str, str] = field(default_factory=dict)
    values: Mapping[str, Any] = field(default_factory=dict)

    def __and__(self, other: Condition) -> Condition:
        return _join(self, other, "AND")

    def __or__(self, other: Condition) -> Condition:
        return _join(self, other, "OR")


def _join(left: Condition, right: Condition, op: str) -> Condition:
    return Condition(
        f"({left.expression}) {op} ({right.expression})",
        {**left.names, **right.names},
        {**left.values, **right.values},
    )


def absent(attribute: str) -> Condition:
    return Condition(f"attribute_not_exists(#{attribute})", {f"#{attribute}": attribute})


def present(attribute: str) -> Condition:
    return Condition(f"attribute_exists(#{attribute})", {f"#{attribute}": attribute})


def equals(attribute: str, value: Any) -> Condition:
    placeholder = _placeholder(attribute)
    return Condition(f"#{attribute} = {placeholder}", {f"#{attribute}": attribute}, {placeholder: value})


def differs(attribute: str, value: Any) -> Condition:
    placeholder = _placeholder(attribute)
    return Condition(f"#{attribute} <> {placeholder}", {f"#{attribute}": attribute}, {placeholder: value})


def less_than(attribute: str, value: Any) -> Condition:
    placeholder = _placeholder(attribute)
    return Condition(f"#{attribute} < {placeholder}", {f"#{attribute}": attribute}, {placeholder: value})


def one_of(attribute: str, values: list[Any]) -> Condition:
    placeholders = {_placeholder(attribute): v for v in values}
    return Condition(
        f"#{attribute} IN ({', '.join(placeholders)})", {f"#{attribute}": attribute}, placeholders
    )
