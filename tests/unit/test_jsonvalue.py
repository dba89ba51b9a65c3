"""agentgpt.jsonvalue: the JSON payload and text checks the session service and the executor share."""

from __future__ import annotations

import pytest
import yaml

from agentgpt.jsonvalue import JsonValueError, check_json_value, check_text, parse_json, parse_json_object


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('{"title":"\\ud800"}', "the string at .title holds a lone surrogate U+D800"),
        ('{"a":["ok","\\udfff"]}', "the string at .a[1] holds a lone surrogate U+DFFF"),
        ('{"\\ud83d":1}', "a key at the top level holds a lone surrogate U+D83D"),
        ('{"x":NaN}', "holds NaN"),
        ('{"x":Infinity}', "holds Infinity"),
        ('{"x":[-Infinity]}', "holds -Infinity"),
        ('{"x":1e999}', "holds the number 1e999, which is too large"),
        ('{"a":1,"a":2}', "has the key 'a' twice"),
        ('{"a":{"b":1,"b":1}}', "has the key 'b' twice"),
        ("[1, 2]", "must be a JSON object, got an array"),
        ('"text"', "must be a JSON object, got a string"),
        ("null", "must be a JSON object, got null"),
        ("3", "must be a JSON object, got a number"),
        ("{", "is not valid JSON"),
        ("[" * 100_000 + "]" * 100_000, "nests arrays/objects more than 100 deep"),
        ('{"a":' * 101 + "1" + "}" * 101, "more than 100 deep"),
        ("[" * 100_000, "brackets do not balance"),  # refused before the parser recurses into it
    ],
)
def test_bad_objects_are_refused_naming_the_field(text: str, fragment: str) -> None:
    with pytest.raises(JsonValueError) as info:
        parse_json_object(text, "tasks[0].args_json", max_bytes=None)
    assert isinstance(info.value, ValueError)  # what the executor's REFUSED path already catches
    assert info.value.field == "tasks[0].args_json"
    assert str(info.value).startswith("tasks[0].args_json: ")
    assert fragment in str(info.value)


def test_good_objects_parse() -> None:
    deep = '{"a":' * 99 + '["[[[[", "\\"[["]' + "}" * 99  # brackets in strings are not nesting
    assert parse_json_object(deep, "args")["a"]["a"]
    assert parse_json_object("", "args") == {}
    assert parse_json_object('{"title":"weekly","n":[1,2.5,null,true]}', "args") == {
        "title": "weekly",
        "n": [1, 2.5, None, True],
    }
    # an escaped surrogate pair is one character; a NUL escape is valid JSON text
    assert parse_json_object('{"e":"\\ud83d\\ude00","z":"\\u0000"}', "args") == {
        "e": "\U0001f600",
        "z": "\x00",
    }
    assert parse_json_object(b'{"u":"\xc3\xbc"}', "args") == {"u": "ü"}
    with pytest.raises(JsonValueError, match="is required"):
        parse_json_object("", "params_json", required=True)


def test_bytes_must_be_utf8_and_size_is_bounded() -> None:
    with pytest.raises(JsonValueError, match=r"args: is not valid UTF-8 \(byte 6\)"):
        parse_json_object(b'{"a":"\xed\xa0\x80"}', "args")
    with pytest.raises(JsonValueError, match="larger than 10 bytes"):
        parse_json_object('{"a":"' + "x" * 20 + '"}', "args", max_bytes=10)
    with pytest.raises(JsonValueError, match="lone surrogate"):
        parse_json('"\ud800"', "args")  # a str holding one itself (an in-process caller)


def test_decoded_values_from_yaml_are_checked() -> None:
    with pytest.raises(JsonValueError, match=r"the number at \.rate is nan"):
        check_json_value(yaml.safe_load("rate: .nan"), "params")
    with pytest.raises(JsonValueError, match=r"the value at \.when is a date"):
        check_json_value(yaml.safe_load("when: 2024-01-01"), "params")
    with pytest.raises(JsonValueError, match="the key 1 at the top level is not a string"):
        check_json_value(yaml.safe_load("1: one"), "params")
    with pytest.raises(JsonValueError, match=r"the string at \.t holds a lone surrogate"):
        check_json_value(yaml.safe_load('t: "\\ud800"'), "params")
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(JsonValueError, match=r"the value at .a\[0\] contains itself"):
        check_json_value({"a": loop}, "params")
    # aliases multiply: a small document that expands to billions of values is refused, not walked
    laughs = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
    )
    with pytest.raises(JsonValueError, match="more than 100000 values"):
        check_json_value(yaml.safe_load(laughs), "params")
    with pytest.raises(JsonValueError, match="more than 100 deep"):
        check_json_value(yaml.safe_load("x: " + "[" * 101 + "]" * 101), "params")
    shared = yaml.safe_load("base: &b {fee: 1}\nfirst: *b\nsecond: *b\n")  # used twice: not a cycle
    check_json_value(shared, "params")


def test_text_checks() -> None:
    assert check_text("weekly report\n", "reason") == "weekly report\n"
    with pytest.raises(JsonValueError, match="reason: holds a NUL character"):
        check_text("a\x00b", "reason")
    with pytest.raises(JsonValueError, match="lone surrogate"):
        check_text("\udc00", "reason")
    with pytest.raises(JsonValueError, match=r"control character U\+000A"):
        check_text("executor-1\n", "executor_id", name=True)
    assert check_text("gpt-4-enterprise-finance", "models.risk", name=True)
