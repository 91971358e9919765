"""Factories for policy tests: envelopes, reports, auth results (imported by the tests)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from gateway.auth import AuthResults, MethodResult
from gateway.config import TenantConfig
from gateway.message import ClientInfo, Envelope, Recipient
from gateway.report import AttachmentRecord, Report
from rules.engine import Decision, Policy

TENANT = "city.example.lg.jp"
TENANTS = {TENANT: TenantConfig(name="例市"), "town.example.lg.jp": TenantConfig(name="例町")}


def envelope(
    mail_from: str = "sender@outside.example",
    rcpts: Iterable[str] = (f"user@{TENANT}",),
    client: str = "198.51.100.7",
) -> Envelope:
    return Envelope(
        queue_id="Q1",
        mail_from=mail_from,
        recipients=tuple(Recipient(r) for r in rcpts),
        client=ClientInfo(address=client, helo="mx.outside.example", forwarded=True),
    )


def report(
    findings: Iterable[str] = (),
    attachments: Iterable[tuple[str, str, int]] = (),
    auth: Mapping[str, str] | None = None,
) -> Report:
    """``attachments``: (file name, detected type, size)."""
    r = Report(queue_id="Q1")
    for code in findings:
        r.add_finding(code, "2", "test")
    for index, (name, detected, size) in enumerate(attachments, 2):
        r.attachments.append(
            AttachmentRecord(str(index), name, "application/octet-stream", detected, "0" * 64, size)
        )
    r.auth.update(auth or {})
    return r


def auth_results(
    *,
    from_domain: str = "outside.example",
    dkim_pass: Iterable[str] = (),
    dmarc: str = "none",
    spf: str = "none",
    dmarc_policy: str = "",
) -> AuthResults:
    """Results as gateway.auth would report them (tests of auth itself use real signatures)."""
    dkim = tuple(MethodResult("dkim", "pass", (("header.d", d),)) for d in dkim_pass)
    return AuthResults(
        authserv_id="mugaika.test",
        spf=MethodResult("spf", spf),
        dkim=dkim,
        dmarc=MethodResult("dmarc", dmarc, (("header.from", from_domain),)),
        arc=MethodResult("arc", "none"),
        header_value="mugaika.test; none",
        from_domain=from_domain,
        dmarc_policy=dmarc_policy,
    )


def headers(
    from_: str = "Sender <sender@outside.example>", subject: str = "hello", **more: str
) -> dict[str, str]:
    out = {"From": from_, "To": f"user@{TENANT}", "Subject": subject}
    out.update({k.replace("_", "-"): v for k, v in more.items()})
    return out


def decide(
    policy: Policy,
    rep: Report | None = None,
    env: Envelope | None = None,
    hdrs: Mapping[str, str] | None = None,
    **kwargs: object,
) -> Decision:
    return policy.decide(
        rep if rep is not None else report(),
        env if env is not None else envelope(),
        hdrs if hdrs is not None else headers(),
        **kwargs,  # type: ignore[arg-type]
    )
