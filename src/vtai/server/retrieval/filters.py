"""Attribute filters of vector store searches: comparisons of one attribute with a value,
combined with ``and`` / ``or``, evaluated on each file's ``attributes``.

A comparison on an attribute a file does not have is false, whatever the operator. Order
comparisons apply to numbers, or to two strings; a boolean is neither a number nor ordered.
"""

from __future__ import annotations

from typing import Any

Scalar = str | int | float | bool


def _same_kind(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str)
    return True  # two numbers


def _equal(a: Any, b: Any) -> bool:
    return _same_kind(a, b) and a == b


def _compare(op: str, value: Any, target: Any) -> bool:
    if op == "eq":
        return _equal(value, target)
    if op == "ne":
        return not _equal(value, target)
    if op in ("in", "nin"):
        found = any(_equal(value, item) for item in target)
        return found if op == "in" else not found
    if isinstance(value, bool) or isinstance(target, bool) or not _same_kind(value, target):
        return False
    if op == "gt":
        return bool(value > target)
    if op == "gte":
        return bool(value >= target)
    if op == "lt":
        return bool(value < target)
    return bool(value <= target)  # lte


def matches(spec: dict[str, Any], attributes: dict[str, Any]) -> bool:
    kind = spec["type"]
    if kind == "and":
        return all(matches(f, attributes) for f in spec["filters"])
    if kind == "or":
        return any(matches(f, attributes) for f in spec["filters"])
    if spec["key"] not in attributes:
        return False
    return _compare(kind, attributes[spec["key"]], spec["value"])
