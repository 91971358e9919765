"""Rules in monitor mode are counted, not enforced (issue 7): the metric says which mode."""

from __future__ import annotations

from gateway.metrics import Metrics
from gateway.report import Report, RuleHit


def test_rule_hits_are_counted_by_policy_rule_and_mode():
    metrics = Metrics()
    report = Report(queue_id="Q", policy="lgwan-base")
    report.rule_hits.append(RuleHit("urgent-payment-subject", "tag", "bec", enforced=False))
    report.rule_hits.append(RuleHit("deceptive-file-name", "quarantine", "rtlo", enforced=True))
    metrics.record_report(report)
    metrics.record_report(report)
    value = metrics.registry.get_sample_value
    labels = {"policy": "lgwan-base", "rule": "urgent-payment-subject", "mode": "monitor"}
    assert value("mugaika_rule_hits_total", labels) == 2
    labels = {"policy": "lgwan-base", "rule": "deceptive-file-name", "mode": "enforce"}
    assert value("mugaika_rule_hits_total", labels) == 2
    labels = {"policy": "lgwan-base", "rule": "urgent-payment-subject", "mode": "enforce"}
    assert value("mugaika_rule_hits_total", labels) is None
