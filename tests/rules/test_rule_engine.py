"""Every condition (a hit and a miss each), every action, monitor mode, and the choice."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from policy_helpers import (
    TENANT,
    auth_results,
    decide,
    envelope,
    headers,
    report,
)

from gateway.report import Report, RuleHit, Verdict
from rules.engine import Policy
from rules.loader import load_policies

OneRule = Callable[..., Policy]


def _encrypted_zip_report() -> Report:
    r = report(attachments=[("a.zip", "application/zip", 100)])
    r.add_finding("ARCHIVE_ENCRYPTED", "2", "member 1")
    return r


# (condition YAML, decide() arguments that make it hold, arguments that make it fail)
CASES: dict[str, tuple[str, dict[str, object], dict[str, object]]] = {
    "envelope_from address pattern": (
        "envelope_from: {addresses: ['*@bad.example']}",
        {"env": envelope(mail_from="x@bad.example")},
        {"env": envelope(mail_from="x@good.example")},
    ),
    "envelope_from domain pattern": (
        "envelope_from: {domains: ['*.bad.example']}",
        {"env": envelope(mail_from="x@mx.bad.example")},
        {"env": envelope(mail_from="x@bad.example")},
    ),
    "envelope_from null sender": (
        "envelope_from: {regex: '^$'}",
        {"env": envelope(mail_from="")},
        {"env": envelope(mail_from="x@good.example")},
    ),
    "recipient": (
        "recipient: {addresses: [soumu@city.example.lg.jp]}",
        {"env": envelope(rcpts=["user@x.example", "Soumu@City.Example.LG.JP"])},
        {"env": envelope(rcpts=["user@x.example"])},
    ),
    "from domain": (
        "from: {domains: [partner.example]}",
        {"hdrs": headers(from_="=?UTF-8?B?5bGx55Sw?= <yamada@Partner.Example>")},
        {"hdrs": headers(from_="yamada@partner.example.net")},
    ),
    "from internal": (
        "from: {internal: true}",
        {"hdrs": headers(from_="x@mail.city.example.lg.jp")},
        {"hdrs": headers(from_="x@example.lg.jp")},
    ),
    "from count": (
        "from: {count: {over: 1}}",
        {"hdrs": headers(from_="a@x.example, b@y.example")},
        {"hdrs": headers(from_="a@x.example")},
    ),
    "reply_to regex": (
        "reply_to: {regex: '@(gmail|yahoo)\\.'}",
        {"hdrs": headers(Reply_To="payee@gmail.com")},
        {"hdrs": headers(Reply_To="payee@partner.example")},
    ),
    "to": (
        "to: {domains: [town.example.lg.jp]}",
        {"hdrs": headers(To="a@town.example.lg.jp")},
        {"hdrs": headers(To="a@city.example.lg.jp")},
    ),
    "cc": (
        "cc: {count: {over: 2}}",
        {"hdrs": headers(Cc="a@x.example, b@x.example, c@x.example")},
        {"hdrs": headers(Cc="a@x.example")},
    ),
    "tenant": (
        "tenant: [town.example.lg.jp]",
        {"env": envelope(rcpts=["a@town.example.lg.jp"])},
        {"env": envelope(rcpts=[f"a@{TENANT}"])},
    ),
    "client network": (
        "client: {networks: [203.0.113.0/24, '2001:db8::/32']}",
        {"env": envelope(client="2001:db8::25")},
        {"env": envelope(client="198.51.100.1")},
    ),
    "auth result": (
        "auth: {spf: [fail, softfail], dkim: [none, fail]}",
        {"rep": report(auth={"spf": "softfail", "dkim": "none"})},
        {"rep": report(auth={"spf": "softfail", "dkim": "pass"})},
    ),
    "auth dmarc policy": (
        "auth: {dmarc: [fail], dmarc_policy: [reject]}",
        {
            "rep": report(auth={"dmarc": "fail"}),
            "auth": auth_results(dmarc="fail", dmarc_policy="reject"),
        },
        {
            "rep": report(auth={"dmarc": "fail"}),
            "auth": auth_results(dmarc="fail", dmarc_policy="none"),
        },
    ),
    "authenticated domain": (
        "auth: {authenticated_domains: [partner.example]}",
        {"auth": auth_results(from_domain="partner.example", dkim_pass=["mail.partner.example"])},
        {"auth": auth_results(from_domain="partner.example")},
    ),
    "attachment class": (
        "attachment: {class: [executable, script]}",
        {"rep": report(attachments=[("invoice.pdf", "application/x-dosexec", 10)])},
        {"rep": report(attachments=[("invoice.pdf", "application/pdf", 10)])},
    ),
    "attachment detected type": (
        "attachment: {type: ['application/vnd.ms-excel*']}",
        {
            "rep": report(
                attachments=[("a.xlsm", "application/vnd.ms-excel.sheet.macroEnabled.12", 1)]
            )
        },
        {"rep": report(attachments=[("a.xls", "application/vnd.ms-word", 1)])},
    ),
    "attachment name (NFKC, case-folded)": (
        "attachment: {name: ['*.exe', '*.scr']}",
        {"rep": report(attachments=[("請求書．ＥＸＥ", "application/octet-stream", 1)])},
        {"rep": report(attachments=[("請求書.pdf", "application/octet-stream", 1)])},
    ),
    "attachment name regex and size": (
        "attachment: {name_regex: '\\.zip$', size: {over: 1 KiB}}",
        {"rep": report(attachments=[("a.zip", "application/zip", 5000)])},
        {"rep": report(attachments=[("a.zip", "application/zip", 100)])},
    ),
    "encrypted archive class from the finding": (
        "attachment: {class: [encrypted_archive]}",
        {"rep": _encrypted_zip_report()},
        {"rep": report(attachments=[("a.zip", "application/zip", 100)])},
    ),
    "attachment count": (
        "attachment_count: {over: 1}",
        {"rep": report(attachments=[("a", "text/plain", 1), ("b", "text/plain", 1)])},
        {"rep": report(attachments=[("a", "text/plain", 1)])},
    ),
    "message size": (
        "size: {over: 10 MiB}",
        {"message_size": 11 * 1024 * 1024},
        {"message_size": 1024},
    ),
    "finding with glob": (
        "finding: [OOXML_*, PDF_JAVASCRIPT]",
        {"rep": report(findings=["OOXML_VBA_MACRO"])},
        {"rep": report(findings=["OLE_VBA_MACRO"])},
    ),
    "subject keyword (full-width, half-width kana)": (
        "subject: {contains: [至急, URGENT, ｾｷｭﾘﾃｨ]}",
        {"hdrs": headers(subject="【ＵＲＧＥＮＴ】お支払い")},
        {"hdrs": headers(subject="会議のご案内")},
    ),
    "subject keyword half-width kana in message": (
        "subject: {contains: [セキュリティ]}",
        {"hdrs": headers(subject="=?UTF-8?B?772+7723772t776Y776D772o?= 更新")},
        {"hdrs": headers(subject="更新")},
    ),
    "subject regex": (
        "subject: {regex: 'invoice\\s*#?\\d{4,}'}",
        {"hdrs": headers(subject="Your INVOICE #20391")},
        {"hdrs": headers(subject="invoice")},
    ),
    "header present": (
        "header: {name: X-Mailer}",
        {"hdrs": headers(X_Mailer="PHPMailer")},
        {"hdrs": headers()},
    ),
    "header contains": (
        "header: {name: Message-ID, contains: [.phish.]}",
        {"hdrs": headers(Message_ID="<1@mx.phish.example>")},
        {"hdrs": headers(Message_ID="<1@mx.example>")},
    ),
    "display name contains": (
        "display_name: {contains: [総務課]}",
        {"hdrs": headers(from_="例市 総務課 <x@free.example>")},
        {"hdrs": headers(from_="山田 <x@free.example>")},
    ),
    "any": (
        "any: [{subject: {contains: [a1]}}, {subject: {contains: [b2]}}]",
        {"hdrs": headers(subject="b2")},
        {"hdrs": headers(subject="c3")},
    ),
    "all": (
        "all: [{subject: {contains: [a1]}}, {from: {internal: false}}]",
        {"hdrs": headers(subject="a1")},
        {"hdrs": headers(subject="a1", from_=f"x@{TENANT}")},
    ),
    "not": (
        "not: {auth: {dkim: [pass]}}",
        {"rep": report(auth={"dkim": "fail"})},
        {"rep": report(auth={"dkim": "pass"})},
    ),
    "several keys in one mapping are all": (
        "{subject: {contains: [a1]}, size: {over: 100}}",
        {"hdrs": headers(subject="a1"), "message_size": 101},
        {"hdrs": headers(subject="a1"), "message_size": 100},
    ),
}


@pytest.mark.parametrize("case", sorted(CASES), ids=sorted(CASES))
def test_condition_hits_and_misses(one_rule: OneRule, case: str) -> None:
    condition, hit_args, miss_args = CASES[case]
    policy = one_rule(f"- name: r\n  when:\n    {condition}\n  action: quarantine\n")
    hit = decide(policy, **hit_args)  # type: ignore[arg-type]
    miss = decide(policy, **miss_args)  # type: ignore[arg-type]
    assert [h.rule for h in hit.hits] == ["r"], case
    assert hit.verdict == Verdict.QUARANTINE
    assert miss.hits == ()
    assert miss.misses == ("r",)
    assert miss.verdict == Verdict.DELIVER


# --- actions -------------------------------------------------------------------------------


def test_quarantine_with_reason(one_rule: OneRule) -> None:
    policy = one_rule(
        "- name: hold\n  when: {subject: {contains: [x]}}\n  action: quarantine\n"
        "  reason: 件名に x\n"
    )
    decision = decide(policy, hdrs=headers(subject="x"))
    assert decision.verdict == Verdict.QUARANTINE
    assert decision.reasons == ("件名に x",)
    assert decision.hits == (RuleHit("hold", "quarantine", "件名に x", True),)


def test_reject_with_text_and_default_reason(one_rule: OneRule) -> None:
    policy = one_rule(
        "- name: no-iso\n  when: {attachment: {name: ['*.iso']}}\n  action: reject\n"
        "  reject_text: Disk images are not accepted\n"
        "- name: tagged\n  when: {attachment: {name: ['*.iso']}}\n  action: tag\n"
    )
    decision = decide(policy, rep=report(attachments=[("a.iso", "application/x-iso9660-image", 1)]))
    assert decision.verdict == Verdict.REJECT
    assert decision.reject_text == "Disk images are not accepted"
    assert decision.reasons == ("no-iso",)  # the reason defaults to the rule name
    assert [h.rule for h in decision.hits] == ["no-iso", "tagged"]


def test_tag_adds_the_policy_tag_header(one_rule: OneRule) -> None:
    policy = one_rule(
        "- name: ext\n  when: {from: {internal: false}}\n  action: tag\n  tag: external\n"
        "- name: big\n  when: {size: {over: 10}}\n  action: tag\n  reason: large message\n",
        extra="tag_header: X-City-Tag\n",
    )
    decision = decide(policy, message_size=11)
    assert decision.verdict == Verdict.TAG
    assert decision.tag_headers == (("X-City-Tag", "external"), ("X-City-Tag", "large message"))


def test_deliver_rule_never_lowers_the_verdict(one_rule: OneRule) -> None:
    policy = one_rule(
        "- name: allow\n  when: {subject: {contains: [x]}}\n  action: deliver\n"
        "- name: hold\n  when: {subject: {contains: [x]}}\n  action: quarantine\n"
    )
    decision = decide(policy, hdrs=headers(subject="x"))
    assert decision.verdict == Verdict.QUARANTINE
    assert [h.action for h in decision.hits] == ["deliver", "quarantine"]


def test_all_rules_are_evaluated_and_the_most_severe_wins(one_rule: OneRule) -> None:
    policy = one_rule(
        "- name: a\n  when: {subject: {contains: [x]}}\n  action: reject\n"
        "- name: b\n  when: {subject: {contains: [nothing]}}\n  action: quarantine\n"
        "- name: c\n  when: {subject: {contains: [x]}}\n  action: tag\n"
        "- name: d\n  when: {subject: {contains: [x]}}\n  action: quarantine\n"
    )
    decision = decide(policy, hdrs=headers(subject="x"))
    assert [h.rule for h in decision.hits] == ["a", "c", "d"]
    assert decision.misses == ("b",)
    assert decision.verdict == Verdict.REJECT
    assert decision.reasons == ("a",)


def test_monitor_mode_is_recorded_but_not_enforced(one_rule: OneRule) -> None:
    policy = one_rule(
        "- name: trial\n  mode: monitor\n  when: {subject: {contains: [x]}}\n  action: reject\n"
        "- name: trial-tag\n  mode: monitor\n  when: {subject: {contains: [x]}}\n  action: tag\n"
    )
    decision = decide(policy, hdrs=headers(subject="x"))
    assert decision.verdict == Verdict.DELIVER
    assert decision.hits == (
        RuleHit("trial", "reject", "trial", enforced=False),
        RuleHit("trial-tag", "tag", "trial-tag", enforced=False),
    )
    assert decision.reasons == ()
    assert decision.reject_text is None
    assert decision.tag_headers == ()


def test_disabled_rule_is_not_evaluated(one_rule: OneRule) -> None:
    policy = one_rule(
        "- name: off\n  enabled: false\n  when: {subject: {contains: [x]}}\n  action: reject\n"
    )
    decision = decide(policy, hdrs=headers(subject="x"))
    assert decision.hits == ()
    assert decision.misses == ()


def test_record_writes_hits_misses_and_verdict_into_the_report(one_rule: OneRule) -> None:
    policy = one_rule(
        "- name: hold\n  when: {subject: {contains: [x]}}\n  action: quarantine\n"
        "- name: other\n  when: {subject: {contains: [y]}}\n  action: reject\n"
    )
    rep = report()
    decide(policy, rep=rep, hdrs=headers(subject="x")).record(rep)
    assert rep.verdict == Verdict.QUARANTINE
    assert rep.reasons == ["hold"]
    assert rep.rule_hits == [RuleHit("hold", "quarantine", "hold", True)]
    assert rep.rule_misses == ["other"]
    assert rep.policy == "only"
    assert Report.from_dict(rep.to_dict()).rule_hits == rep.rule_hits


# --- skip-sanitizer: only for authenticated, allow-listed senders ----------------------------

SKIP_RULE = """\
- name: partner-docs
  when: {from: {domains: [partner.example]}}
  action: skip-sanitizer
  skip: [pdf, ooxml]
  trusted_domains: [partner.example]
"""


def test_skip_granted_for_dkim_aligned_with_from(one_rule: OneRule) -> None:
    policy = one_rule(SKIP_RULE)
    decision = decide(
        policy,
        hdrs=headers(from_="a@partner.example"),
        auth=auth_results(from_domain="partner.example", dkim_pass=["mail.partner.example"]),
    )
    assert decision.skip_classes == frozenset({"pdf", "ooxml"})
    assert decision.verdict == Verdict.DELIVER
    assert [h.rule for h in decision.hits] == ["partner-docs"]


def test_skip_granted_for_dmarc_pass(one_rule: OneRule) -> None:
    policy = one_rule(SKIP_RULE)
    decision = decide(
        policy,
        hdrs=headers(from_="a@partner.example"),
        auth=auth_results(from_domain="partner.example", dmarc="pass"),
    )
    assert decision.skip_classes == frozenset({"pdf", "ooxml"})


@pytest.mark.parametrize(
    "auth",
    [
        None,  # no authentication results at all
        auth_results(from_domain="partner.example"),  # From: address only
        auth_results(from_domain="partner.example", spf="pass"),  # SPF alone is not enough
        # A valid signature, but by the attacker's own domain.
        auth_results(from_domain="partner.example", dkim_pass=["attacker.example"]),
        # The trusted domain signed, but From: is another domain (no alignment).
        auth_results(from_domain="other.example", dkim_pass=["partner.example"]),
        # DMARC passed for a domain that is not trusted.
        auth_results(from_domain="partner.example.attacker.example", dmarc="pass"),
    ],
    ids=["no-auth", "from-only", "spf-only", "foreign-dkim", "unaligned-dkim", "dmarc-other"],
)
def test_skip_refused_without_proof(one_rule: OneRule, auth: object) -> None:
    policy = one_rule(SKIP_RULE)
    decision = decide(policy, hdrs=headers(from_="a@partner.example"), auth=auth)
    assert decision.skip_classes == frozenset()
    assert decision.hits == ()
    assert decision.misses == ("partner-docs",)
    assert "skip-sanitizer refused" in decision.notes[0]


def test_skip_in_monitor_mode_grants_nothing(one_rule: OneRule) -> None:
    policy = one_rule(SKIP_RULE + "  mode: monitor\n")
    decision = decide(
        policy,
        hdrs=headers(from_="a@partner.example"),
        auth=auth_results(from_domain="partner.example", dmarc="pass"),
    )
    assert decision.skip_classes == frozenset()
    assert decision.hits[0].enforced is False


def test_decide_never_raises_on_hostile_headers(policy_dir: Callable[..., Path]) -> None:
    policy = load_policies(None).get("lgwan-base", frozenset({TENANT}))
    hostile = {
        "From": '=?x-unknown?B?////?= <\x00@[1.2.3.4]>, "a@b" <<<@>>>, ,,,',
        "Reply-To": "@" * 5000,
        "Subject": "=?UTF-8?Q?=E3=81?= \u202e" + "a" * 100_000,
        "To": "undisclosed-recipients:;",
        "Cc": "=?UTF-8?B?abcde?= <a@b.example>",  # bad base64: HeaderParseError in stdlib
        "Message-ID": "",
    }
    decision = decide(policy, hdrs=hostile, env=envelope(mail_from="<>", client="not-an-ip"))
    assert decision.verdict in set(Verdict)
    assert len(decision.hits) + len(decision.misses) == len(policy.rules)
