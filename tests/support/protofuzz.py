"""Hypothesis strategies that build arbitrary (often nonsensical) protobuf request messages from
their descriptors, for fuzzing every RPC of a running service."""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

_INTS = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}

# Strings that look almost right are the interesting ones.
_TRICKY = st.sampled_from(
    [
        "",
        "0",
        "1",
        "-1",
        "42",
        "9" * 80,
        "0x" + "ab" * 20,
        "0x" + "zz" * 20,
        "0x",
        "{}",
        "[]",
        '{"a": 1}',
        "null",
        "summary",
        "full",
        "a" * 300,
        "\x00",
        "ünïcode",
        "type: t\nparams: {chains: [a]}",
    ]
)


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    t = field.type
    if t in _INTS:
        lo, hi = _INTS[t]
        return st.one_of(st.integers(lo, hi), st.sampled_from([0, 1, 2, lo, hi]))
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(
            allow_nan=True, allow_infinity=True, width=32 if t == FieldDescriptor.TYPE_FLOAT else 64
        )
    if t == FieldDescriptor.TYPE_STRING:
        return st.one_of(_TRICKY, st.text(max_size=80))
    if t == FieldDescriptor.TYPE_BYTES:
        return st.one_of(st.binary(max_size=80), st.sampled_from([b"", b"\x00" * 32, b"\x01" * 65]))
    if t == FieldDescriptor.TYPE_ENUM:
        numbers = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(numbers), st.integers(-5, 100))
    raise TypeError(f"unsupported field type {t}")


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Random messages of `descriptor`'s type; nested messages down to depth 3."""
    cls = GetMessageClass(descriptor)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for f in descriptor.fields:
        if f.type == FieldDescriptor.TYPE_MESSAGE:
            if depth >= 3:
                continue
            if f.message_type.GetOptions().map_entry:
                key, val = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
                fields[f.name] = st.dictionaries(_scalar(key), _scalar(val), max_size=3)
                continue
            inner = messages(f.message_type, depth + 1)
            fields[f.name] = st.lists(inner, max_size=3) if repeated(f) else st.one_of(st.none(), inner)
        else:
            fields[f.name] = st.lists(_scalar(f), max_size=4) if repeated(f) else _scalar(f)

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        msg = cls()
        for name, strategy in fields.items():
            if not draw(st.booleans()):
                continue
            value = draw(strategy)
            f = descriptor.fields_by_name[name]
            if value is None:
                continue
            if f.type == FieldDescriptor.TYPE_MESSAGE and f.message_type.GetOptions().map_entry:
                getattr(msg, name).update(value)
            elif repeated(f):
                getattr(msg, name).extend(value)
            elif f.type == FieldDescriptor.TYPE_MESSAGE:
                getattr(msg, name).CopyFrom(value)
            else:
                setattr(msg, name, value)
        return msg

    return build()


def repeated(f: FieldDescriptor) -> bool:
    return bool(f.is_repeated) if hasattr(f, "is_repeated") else f.label == FieldDescriptor.LABEL_REPEATED
