"""A finding code a policy names must exist: a typo is an error with file, line and key,
never a rule that silently never fires (codes: ``gateway/findings.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError
from rules.loader import load_policies
from tests.rules.test_rules_cli import mugaika


def test_rules_check_names_file_line_and_key_of_an_unknown_code(tmp_path: Path) -> None:
    (tmp_path / "city-a.yaml").write_text(
        "extends: lgwan-base\n"
        "rules:\n"
        "  - name: macro-documents\n"
        "    when:\n"
        "      finding: [PDF_JAVASCRIPT, OOXML_VBA_MACROS]\n"
        "    action: quarantine\n"
        "  - name: nothing-like-this\n"
        "    when: {finding: ['ZIP_*']}\n"
        "    action: quarantine\n"
    )
    result = mugaika("rules", "check", tmp_path)
    assert result.returncode == 2
    path = tmp_path / "city-a.yaml"
    assert result.stderr.splitlines() == [
        f"mugaika: {path}:5: rules[0].when.finding[1]: 'OOXML_VBA_MACROS': "
        "unknown finding code (did you mean OOXML_VBA_MACRO?)",
        f"mugaika: {path}:8: rules[1].when.finding[0]: 'ZIP_*': matches no finding code",
    ]
    assert "Traceback" not in result.stderr


def test_known_codes_and_globs_that_match_are_accepted(tmp_path: Path) -> None:
    (tmp_path / "city-b.yaml").write_text(
        "extends: lgwan-base\n"
        "rules:\n"
        "  - name: pdf-active\n"
        "    when: {finding: [PDF_JAVASCRIPT, 'PDF_*', 'URL_?DN', LIMIT_DEPTH]}\n"
        "    action: quarantine\n"
    )
    policies = load_policies(tmp_path)
    assert "city-b" in policies.policies


def test_a_gateway_with_such_a_policy_does_not_start(tmp_path: Path) -> None:
    (tmp_path / "city-c.yaml").write_text(
        "extends: lgwan-base\nrules:\n  - name: typo\n"
        "    when: {finding: [EXECUTEABLE]}\n    action: quarantine\n"
    )
    with pytest.raises(ConfigError, match=r"city-c\.yaml:4: rules\[0\]\.when\.finding\[0\]"):
        load_policies(tmp_path)


def test_rules_test_refuses_an_unknown_finding_on_the_command_line(tmp_path: Path) -> None:
    mail = tmp_path / "m.eml"
    mail.write_bytes(b"From: a@example.com\r\nTo: b@example.lg.jp\r\nSubject: x\r\n\r\nhi\r\n")
    result = mugaika("rules", "test", "-", mail, "--finding", "PDF_JAVASRCIPT")
    assert result.returncode == 2
    assert result.stderr == (
        "mugaika: --finding: 'PDF_JAVASRCIPT': unknown finding code "
        "(did you mean PDF_JAVASCRIPT?)\n"
    )
