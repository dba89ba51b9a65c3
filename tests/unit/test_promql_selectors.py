"""The PromQL reader the monitoring test checks the rules and the dashboard with (tests/support/promql.py):
it must find every selector, its matchers and the labels the aggregations around it keep."""

from __future__ import annotations

import pytest

from tests.support.promql import Selector, selectors


def test_matchers_and_grouping_of_nested_aggregations() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (grpc_service, le) "
        '(rate(grpc_server_handling_seconds_bucket{job="agentgpt", grpc_type="unary"}[5m]))) > 1'
    )
    assert selectors(expr) == [
        Selector(
            "grpc_server_handling_seconds_bucket",
            (("job", "=", "agentgpt"), ("grpc_type", "=", "unary")),
            frozenset({"grpc_service", "le"}),
        )
    ]


def test_binary_operators_matching_offset_and_functions_are_not_metrics() -> None:
    expr = (
        'sum by (namespace) (x_total{outcome="failed"} unless x_total{outcome="failed"} offset 15m) > 0\n'
        'and on (namespace) max without (pod) (label_replace(y{a=~"b|c"}, "w", "$1", "d", "(.*)")) == 0\n'
        'or absent(up{service="session"})'
    )
    got = selectors(expr)
    assert [(s.metric, s.grouping) for s in got] == [
        ("x_total", frozenset({"namespace"})),
        ("x_total", frozenset({"namespace"})),
        ("y", frozenset()),
        ("up", frozenset()),
    ]
    assert got[2].matchers == (("a", "=~", "b|c"),)


def test_a_selector_without_a_name_and_its_promql() -> None:
    (s,) = selectors('count({__name__="up", job="a\\"b"})')
    assert s == Selector("up", (("job", "=", 'a"b'),), frozenset())
    assert s.promql((("pod", "!=", ""),)) == 'up{job="a\\"b", pod!=""}'


def test_what_it_does_not_follow_fails_loudly() -> None:
    with pytest.raises(ValueError, match="after its body"):
        selectors("sum(rate(x[5m])) by (pod)")
    with pytest.raises(ValueError, match="unbalanced"):
        selectors("sum(x")
