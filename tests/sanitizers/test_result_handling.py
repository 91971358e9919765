"""How ``gateway.inspect`` treats what a sanitizer returns: a failed check never delivers, a
policy hold holds (whatever ``on_sanitize_failure`` says), in an archive too."""

from __future__ import annotations

import email.policy
from email.message import EmailMessage
from typing import Any

from gateway.inspect import Inspector, IsolationLimits
from gateway.report import Finding, Report, Verdict
from gateway.sanitizers.base import OutputFile, SanitizeResult
from tests.helpers.pipeline import default_pipeline, envelope


def _message() -> bytes:
    msg = EmailMessage()
    msg["From"] = "a@partner.example"
    msg["To"] = "u@city.example.lg.jp"
    msg["Subject"] = "x"
    msg.set_content("本文")
    msg.add_attachment(b"a,b\r\n1,2\r\n", maintype="text", subtype="csv", filename="t.csv")
    return msg.as_bytes(policy=email.policy.SMTP)


def _plan_with(result: SanitizeResult, **setting: Any) -> tuple[Report, Any]:
    """Plan the message with a runner that returns ``result`` for the attachment: the real
    sanitizers are tested elsewhere; this is about what inspect does with their answer."""

    def runner(*args: Any, **kwargs: Any) -> SanitizeResult:
        return result

    settings = default_pipeline().policy_for(envelope()).settings
    report = Report(queue_id="Q")
    plan = Inspector(settings, report, IsolationLimits(), runner=runner).plan_bytes(_message())
    assert plan is not None
    return report, plan


def test_an_output_with_a_failed_check_is_not_delivered() -> None:
    output = OutputFile(b"a,b\r\n", "t.csv", "text/csv")
    result = SanitizeResult((output,), (Finding("OLE_CHECK_FAILED", "2", "olevba: ValueError"),))
    report, plan = _plan_with(result)
    [record] = report.attachments
    assert record.action == "held"  # on_sanitize_failure: quarantine (the default)
    assert record.reason == "OLE_CHECK_FAILED"
    assert report.verdict == Verdict.QUARANTINE
    assert plan.files()[0].outputs == ()


def test_a_policy_hold_holds_even_with_an_output() -> None:
    output = OutputFile(b"a,b\r\n", "t.csv", "text/csv")
    result = SanitizeResult((output,), (Finding("CSV_FORMULA_HELD", "2", "1 cell"),))
    report, plan = _plan_with(result)
    [record] = report.attachments
    assert (record.action, record.reason) == ("held", "CSV_FORMULA_HELD")
    assert report.verdict == Verdict.QUARANTINE
    assert "SANITIZE_FAILED" not in report.finding_codes()
    assert plan.files()[0].outputs == ()
