"""JSON payloads and text that every service can trust: one set of checks for the session service's
request validation and the executor's last line of defence.

A payload such as a task's `args_json` or a spec's `params_json` is accepted only if it is

* UTF-8 text (a `str`, or `bytes` that decode as strict UTF-8),
* one JSON value (for `parse_json_object`: a JSON object) with no `NaN`, `Infinity` or `-Infinity`
  and no number that overflows to an infinite float (`1e999`),
* free of duplicate keys in any object (parsers disagree on which one wins),
* nested at most MAX_DEPTH (100) arrays/objects deep, and
* free of lone surrogates in every string, key or value: the escape `"\\ud800"` is valid ASCII JSON,
  but the string it decodes to cannot be encoded to UTF-8, so it would crash whoever stores, hashes or
  logs it later. Escaped surrogate *pairs* (`"\\ud83d\\ude00"`) decode to one character and are fine.

Everything raises JsonValueError (a ValueError) whose message starts with the field's name, so a
service can answer INVALID_ARGUMENT naming the field and the executor can refuse the task.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_VALUES = 100_000  # values a checked document may hold (also bounds YAML alias expansion)
MAX_DEPTH = 100  # arrays/objects nested in each other; checked before parsing (the parser recurses)
_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"', re.DOTALL)  # possessive: no backtracking
_BRACKETS = str.maketrans({"[": "(", "{": "(", "]": ")", "}": ")"})
_NOT_BRACKET = re.compile(r"[^()]+")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # the only way a lone surrogate gets in


class JsonValueError(ValueError):
    """A payload or text field is not acceptable. The message always starts with the field's name."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def text_problem(value: str) -> str | None:
    """Why `value` is not valid Unicode text (a lone surrogate), or None if it is."""
    if value.isascii():
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (
            f"holds a lone surrogate U+{ord(value[exc.start]):04X} at character {exc.start}, which is "
            "not valid Unicode text (a \\ud800-\\udfff escape must be one half of a surrogate pair)"
        )
    return None


def check_text(value: str, field: str, *, name: bool = False) -> str:
    """`value` if it is valid text; with `name`, also without NUL or other control characters
    (identifiers, model names, chain names)."""
    problem = text_problem(value)
    if problem is None and "\x00" in value:
        problem = "holds a NUL character"
    if problem is None and name and not value.isprintable():
        bad = next(c for c in value if not c.isprintable())
        problem = f"holds the control character U+{ord(bad):04X}; a name is printable text"
    if problem is not None:
        raise JsonValueError(field, problem)
    return value


def _where(path: tuple[Any, ...] | None) -> str:
    parts: list[str] = []
    while path is not None:
        path, segment = path
        parts.append(f"[{segment}]" if isinstance(segment, int) else f".{segment}")
    return "".join(reversed(parts)) or "the top level"


def check_json_value(value: Any, field: str, *, max_values: int = MAX_VALUES) -> None:
    """Check a decoded value (from JSON or YAML) is plain JSON: dicts with string keys, lists, strings
    that are valid text, finite numbers, booleans and null; no cycles; nested at most MAX_DEPTH deep;
    at most `max_values` values.
    The error names `field` and the path inside it (e.g. `tasks[0].args_json: the string at .title ...`)."""
    # depth-first with an exit marker per container, so `on_path` holds exactly the enclosing containers
    # (a YAML alias used twice is shared, not a cycle; one inside itself is)
    stack: list[tuple[Any, tuple[Any, ...] | None, bool]] = [(value, None, False)]
    on_path: set[int] = set()
    count = 0
    while stack:
        item, path, leaving = stack.pop()
        if leaving:
            on_path.discard(id(item))
            continue
        count += 1
        if count > max_values:
            raise JsonValueError(field, f"holds more than {max_values} values")
        if isinstance(item, str):
            if (problem := text_problem(item)) is not None:
                raise JsonValueError(field, f"the string at {_where(path)} {problem}")
        elif item is None or isinstance(item, bool | int):
            continue
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise JsonValueError(
                    field, f"the number at {_where(path)} is {item}; JSON numbers must be finite"
                )
        elif isinstance(item, dict | list | tuple):
            if id(item) in on_path:
                raise JsonValueError(field, f"the value at {_where(path)} contains itself")
            if len(on_path) >= MAX_DEPTH:
                raise JsonValueError(field, f"nests arrays/objects more than {MAX_DEPTH} deep")
            on_path.add(id(item))
            stack.append((item, path, True))
            if isinstance(item, dict):
                for key, sub in item.items():
                    if not isinstance(key, str):
                        raise JsonValueError(
                            field,
                            f"the key {key!r} at {_where(path)} is not a string (JSON keys are strings)",
                        )
                    if (problem := text_problem(key)) is not None:
                        raise JsonValueError(field, f"a key at {_where(path)} {problem}")
                    stack.append((sub, (path, key), False))
            else:
                stack.extend((sub, (path, i), False) for i, sub in enumerate(item))
        else:
            raise JsonValueError(
                field, f"the value at {_where(path)} is a {type(item).__name__}, which JSON cannot hold"
            )


def _depth_problem(text: str) -> str | None:
    """Why `text` must not reach json.loads (whose C scanner recurses once per nesting level): it nests
    arrays/objects more than MAX_DEPTH deep, or its brackets do not balance. Brackets inside strings do
    not count; each pass removes the innermost pairs, so the passes needed are the depth."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return None
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text).translate(_BRACKETS))
    for _ in range(MAX_DEPTH):
        if not brackets:
            return None
        shorter = brackets.replace("()", "")
        if len(shorter) == len(brackets):
            return "is not valid JSON: its brackets do not balance"
        brackets = shorter
    return f"nests arrays/objects more than {MAX_DEPTH} deep" if brackets else None


def parse_json(text: str | bytes, field: str, *, max_bytes: int | None = None) -> Any:
    """Decode one JSON value from `text` under the rules in the module docstring."""
    if isinstance(text, bytes | bytearray | memoryview):
        raw = bytes(text)
        if max_bytes is not None and len(raw) > max_bytes:
            raise JsonValueError(field, f"is larger than {max_bytes} bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonValueError(field, f"is not valid UTF-8 (byte {exc.start})") from None
    else:
        if (problem := text_problem(text)) is not None:
            raise JsonValueError(field, problem)
        if max_bytes is not None and len(text.encode()) > max_bytes:
            raise JsonValueError(field, f"is larger than {max_bytes} bytes")

    if (problem := _depth_problem(text)) is not None:
        raise JsonValueError(field, problem)

    def constant(name: str) -> Any:
        raise JsonValueError(field, f"holds {name}, which is not JSON (use null or a string)")

    def number(literal: str) -> float:
        value = float(literal)
        if not math.isfinite(value):
            raise JsonValueError(field, f"holds the number {literal[:40]}, which is too large for a float")
        return value

    def obj(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(pairs)
        if len(out) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    raise JsonValueError(field, f"has the key {key!r} twice in one object")
                seen.add(key)
        return out

    try:
        value = json.loads(text, parse_constant=constant, parse_float=number, object_pairs_hook=obj)
    except JsonValueError:
        raise
    except RecursionError:
        raise JsonValueError(field, "is nested too deeply") from None
    except ValueError as exc:
        raise JsonValueError(field, f"is not valid JSON: {exc}") from None
    if _SURROGATE_ESCAPE.search(text):  # only then can a decoded string hold a lone surrogate
        check_json_value(value, field)
    return value


def parse_json_object(
    text: str | bytes, field: str, *, max_bytes: int | None = 65536, required: bool = False
) -> dict[str, Any]:
    """A JSON object from `text` (empty text is `{}` unless `required`); JsonValueError otherwise.

    The one check for task args and params: the session service runs it on every request carrying one
    (answering INVALID_ARGUMENT), and the executor runs it again before a task (refusing the task)."""
    if not text:
        if required:
            raise JsonValueError(field, "is required (a JSON object)")
        return {}
    value = parse_json(text, field, max_bytes=max_bytes)
    if not isinstance(value, dict):
        raise JsonValueError(field, f"must be a JSON object, got {_json_kind(value)}")
    return value


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else type(value).__name__
