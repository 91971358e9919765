"""The dashboard and the alert rules reference only metrics the gateway really exports.

Names come from a real ``Metrics()`` registry as exposed (``_total``, ``_bucket``, ``_count``,
``_sum``, ``_info`` included), not from a list kept by hand. Expressions are parsed with a real
PromQL parser (promql-parser, a binding of the Rust parser), so a name inside a function, a
subquery or a binary operation is found, and a label name or string is never taken for one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import promql_parser
import pytest
import yaml

from gateway.metrics import Metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "mugaika-dashboard.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
# Series Prometheus records itself for every scrape target.
PROMETHEUS_OWN = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})


# Series names of a labelled family that has no children yet (nothing counted so far), as
# the text exposition format names them (prometheus_client's ``_created`` included).
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}


def exported_names() -> set[str]:
    metrics = Metrics(tenants=["a.lg.jp"])
    metrics.set_readiness({"downstream": True})
    names = set()
    for family in metrics.registry.collect():
        if family.samples:
            names.update(sample.name for sample in family.samples)
        else:
            names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
    return names


def metric_names(expr: str) -> set[str]:
    """Every metric name an expression selects (raises ValueError if it does not parse)."""
    return set(_walk(promql_parser.parse(expr)))


def _walk(node: object) -> Iterator[str]:
    if isinstance(node, promql_parser.VectorSelector):
        if node.name:
            yield node.name
        for matcher in node.matchers.matchers:
            if matcher.name == "__name__":
                yield matcher.value
    elif isinstance(node, promql_parser.MatrixSelector):
        yield from _walk(node.vector_selector)
    elif isinstance(node, promql_parser.BinaryExpr):
        yield from _walk(node.lhs)
        yield from _walk(node.rhs)
    elif isinstance(node, promql_parser.Call):
        for arg in node.args:
            yield from _walk(arg)
    elif isinstance(node, promql_parser.AggregateExpr):
        yield from _walk(node.expr)
        if node.param is not None:
            yield from _walk(node.param)
    elif isinstance(
        node, promql_parser.ParenExpr | promql_parser.UnaryExpr | promql_parser.SubqueryExpr
    ):
        yield from _walk(node.expr)


# Grafana's built-in interval variables become durations; other variables only appear inside
# label matcher strings (=~"$tenant"), where any regex will do.
_GRAFANA_INTERVALS = re.compile(r"\$__(rate_interval|interval|range)\b")
_GRAFANA_VARIABLE = re.compile(r"\$\{?\w+\}?")


def grafana_to_promql(expr: str) -> str:
    expr = _GRAFANA_INTERVALS.sub("5m", expr)
    return _GRAFANA_VARIABLE.sub(".*", expr)


_LABEL_VALUES = re.compile(r"^label_values\((?:(?P<selector>.+),\s*)?(?P<label>\w+)\)$")


def dashboard_expressions() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    found = []

    def panels(items: list[dict]) -> Iterator[dict]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            found.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else ""
        match = _LABEL_VALUES.match(query)
        assert match is not None, f"variable {variable['name']}: unexpected query {query!r}"
        if match["selector"]:
            found.append((f"variable {variable['name']}", match["selector"]))
    return found


def alert_expressions() -> list[tuple[str, str]]:
    rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [
        (f"alert {rule['alert']}", rule["expr"])
        for group in rules["groups"]
        for rule in group["rules"]
    ]


EXPORTED = exported_names()


def test_exported_names_include_the_suffixes() -> None:
    # The registry is what the check compares with, so make sure it is the real exposition.
    for name in (
        "mugaika_messages_total",
        "mugaika_message_processing_seconds_bucket",
        "mugaika_message_processing_seconds_count",
        "mugaika_message_processing_seconds_sum",
        "mugaika_build_info",
        "mugaika_workers_busy",
        "mugaika_readiness_up",
    ):
        assert name in EXPORTED, name
    assert "mugaika_messages" not in EXPORTED  # a family name is not a series name


@pytest.mark.parametrize(("where", "expr"), dashboard_expressions() + alert_expressions())
def test_expression_uses_only_exported_metrics(where: str, expr: str) -> None:
    names = metric_names(grafana_to_promql(expr))
    assert names, f"{where}: selects no metric: {expr}"
    unknown = names - EXPORTED - PROMETHEUS_OWN
    assert not unknown, f"{where}: not exported by the gateway: {sorted(unknown)}"


def test_the_check_finds_names_everywhere_and_can_fail() -> None:
    expr = (
        'sum by (le) (rate(mugaika_typo_seconds_bucket{tenant=~"$tenant"}[$__rate_interval]))'
        " / on (instance) group_left max_over_time(mugaika_workers[1h:5m])"
        ' + {__name__="mugaika_other_typo"} * -(up) and abs(vector(scalar(mugaika_findings_total)))'
    )
    names = metric_names(grafana_to_promql(expr))
    assert names == {
        "mugaika_typo_seconds_bucket",
        "mugaika_workers",
        "mugaika_other_typo",
        "up",
        "mugaika_findings_total",
    }
    unknown = names - EXPORTED - PROMETHEUS_OWN
    assert unknown == {"mugaika_typo_seconds_bucket", "mugaika_other_typo"}
    # Label names and values are not metric names.
    assert metric_names('count by (verdict) (mugaika_messages_total{verdict="up"})') == {
        "mugaika_messages_total"
    }
    with pytest.raises(ValueError, match="unexpected"):
        metric_names("rate(mugaika_messages_total[$__rate_interval])")


def test_every_panel_of_issue_8_is_on_the_dashboard() -> None:
    titles = {title for title, _ in dashboard_expressions()}
    for wanted in (
        "Throughput by verdict",
        "Processing latency percentiles",
        "Attachment actions",
        "Findings",
        "Quarantine backlog",
        "Worker utilisation",
        "Worker restarts",
        "Downstream errors",
    ):
        assert any(f"panel {wanted!r}" in title for title in titles), wanted


def test_every_alert_of_issue_8_is_defined() -> None:
    names = {where.removeprefix("alert ") for where, _ in alert_expressions()}
    assert {
        "MugaikaDownstreamDown",
        "MugaikaDownstreamFailing",
        "MugaikaTempfailRateHigh",
        "MugaikaWorkerRestarts",
        "MugaikaQuarantineBacklogGrowing",
        "MugaikaProcessingLatencyHigh",
        "MugaikaGatewayDown",
        "MugaikaConfigReloadFailed",
    } <= names
