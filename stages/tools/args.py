"""Argument checking shared by the tools: clear messages the model (and a human) can act on."""

from __future__ import annotations

from typing import Any


class ArgumentError(ValueError):
    """Arguments that do not match the tool's schema; the message says what was expected."""


def string_list(arguments: Any, key: str, tool: str, *, limit: int = 10) -> list[str]:
    """`arguments[key]` as a list of non-empty strings; a single string is accepted as a list."""
    if not isinstance(arguments, dict):
        raise ArgumentError(
            f'{tool} expects a JSON object like {{"{key}": [...]}}, got {type(arguments).__name__}'
        )
    if key not in arguments:
        extra = f" (got keys: {', '.join(sorted(arguments))})" if arguments else ""
        raise ArgumentError(f'{tool} needs the argument "{key}": a list of strings{extra}')
    value = arguments[key]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ArgumentError(f'{tool}: "{key}" must be a list of strings, got {type(value).__name__}')
    items = [v.strip() for v in value if v.strip()]
    if not items:
        raise ArgumentError(f'{tool}: "{key}" is empty; give at least one non-empty string')
    if len(items) > limit:
        raise ArgumentError(f'{tool}: at most {limit} entries in "{key}" per call, got {len(items)}')
    return items


def code_string(arguments: Any) -> str:
    if not isinstance(arguments, dict) or not isinstance(arguments.get("code"), str):
        raise ArgumentError('code expects {"code": "<python source>"}')
    if not arguments["code"].strip():
        raise ArgumentError('code: the "code" argument is empty')
    return arguments["code"]
