"""The series selectors of a PromQL expression: which metric, with which label matchers, and which labels
the aggregations around it group by. Enough PromQL for the project's alert rules and dashboard queries;
a construct it does not follow (an aggregation's `by` written after its body) raises ValueError rather
than being read wrongly."""

from __future__ import annotations

import re
from dataclasses import dataclass

AGGREGATIONS = frozenset(
    {
        "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
        "topk", "quantile",
    }
)  # fmt: skip
# words in operator position, never metric names
KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"})
# binary-operator vector matching: each takes a label list that selects nothing
MATCHING = frozenset({"on", "ignoring", "group_left", "group_right"})

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<range>\[[^\]]*\])
  | (?P<number>\d[\w.]*)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^<>=(){},@])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Selector:
    metric: str
    matchers: tuple[tuple[str, str, str], ...]  # (label, operator, value), as written
    grouping: frozenset[str]  # labels the enclosing aggregations keep (`by`): the series must carry them

    def promql(self, extra: tuple[tuple[str, str, str], ...] = ()) -> str:
        """The selector as PromQL, with `extra` matchers added."""
        parts = [f"{label}{op}{_quote(value)}" for label, op, value in (*self.matchers, *extra)]
        return f"{self.metric}{{{', '.join(parts)}}}"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unquote(token: str) -> str:
    if token.startswith("`"):
        return token[1:-1]
    return re.sub(r"\\(.)", r"\1", token[1:-1])


def _tokens(expr: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise ValueError(f"cannot read {expr[pos : pos + 20]!r} in {expr!r}")
        kind = m.lastgroup or ""
        if kind != "space":
            out.append((kind, m.group()))
        pos = m.end()
    return out


def selectors(expr: str) -> list[Selector]:
    """Every series selector of `expr`, in order."""
    toks = _tokens(expr)
    found: list[Selector] = []
    # one entry per open parenthesis: the labels it keeps when it is an aggregation's body, else None
    parens: list[frozenset[str] | None] = []
    pending: frozenset[str] | None = None  # an aggregation's `by` labels, waiting for its body
    i = 0

    def label_list(j: int) -> tuple[list[str], int]:
        """The labels of a `(a, b)` list at toks[j]; and the index after it."""
        if j >= len(toks) or toks[j][1] != "(":
            return [], j
        labels: list[str] = []
        j += 1
        while toks[j][1] != ")":
            if toks[j][0] == "ident":
                labels.append(toks[j][1])
            j += 1
        return labels, j + 1

    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1][1] if i + 1 < len(toks) else ""
        if kind == "op" and text == "(":
            parens.append(pending)
            pending = None
            i += 1
        elif kind == "op" and text == ")":
            body = parens.pop()
            i += 1
            if body is not None and i < len(toks) and toks[i][1] in ("by", "without"):
                raise ValueError(f"an aggregation's `by`/`without` after its body is not followed: {expr!r}")
        elif kind == "ident" and text in AGGREGATIONS and nxt in ("by", "without", "("):
            if nxt == "(":
                pending = frozenset()
                i += 1
            else:
                labels, i = label_list(i + 2)
                pending = frozenset(labels) if nxt == "by" else frozenset()
        elif kind == "ident" and text in MATCHING | {"by", "without"}:
            _, i = label_list(i + 1)
        elif kind == "ident" and text in KEYWORDS:
            i += 1
        elif kind == "ident" and nxt == "(":  # a function call
            i += 1
        elif kind == "ident" or (kind == "op" and text == "{"):
            metric = text if kind == "ident" else ""
            matchers: list[tuple[str, str, str]] = []
            if kind == "ident":
                i += 1
            if i < len(toks) and toks[i][1] == "{":
                i += 1
                while toks[i][1] != "}":
                    if toks[i][1] == ",":
                        i += 1
                        continue
                    label, op, value = toks[i][1], toks[i + 1][1], toks[i + 2]
                    if value[0] != "string" or op not in ("=", "!=", "=~", "!~"):
                        raise ValueError(f"cannot read the matcher at {label!r} in {expr!r}")
                    matchers.append((label, op, _unquote(value[1])))
                    i += 3
                i += 1
            if not metric:
                names = [v for label, op, v in matchers if label == "__name__" and op == "="]
                if not names:
                    raise ValueError(f"a selector without a metric name in {expr!r}")
                metric = names[0]
                matchers = [m for m in matchers if m[0] != "__name__"]
            grouping = frozenset().union(*(p for p in parens if p is not None))
            found.append(Selector(metric, tuple(matchers), grouping))
        else:
            i += 1
    if parens:
        raise ValueError(f"unbalanced parentheses in {expr!r}")
    return found
