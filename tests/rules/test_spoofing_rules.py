"""The base policy's spoofing rules, fed by real authentication of messages signed here."""

from __future__ import annotations

import base64
import functools

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from policy_helpers import TENANT, TENANTS, envelope, headers, report

from gateway.auth import AuthResults, AuthSettings, StaticResolver, authenticate
from gateway.report import Verdict
from rules import lookalike
from rules.engine import Decision, Policy
from rules.loader import load_policies

SETTINGS = AuthSettings(authserv_id="gw.city.example.lg.jp", dns_timeout=1.0)


@functools.cache
def _key() -> tuple[bytes, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


@functools.cache
def base_policy() -> Policy:
    return load_policies(None).for_recipients([TENANT], TENANTS)


def _raw(from_: str, subject: str = "ご連絡", sender: str | None = None) -> bytes:
    sender_field = f"Sender: {sender}\r\n" if sender is not None else ""
    return (
        f"From: {from_}\r\n{sender_field}To: user@{TENANT}\r\nSubject: {subject}\r\n"
        "Message-ID: <1@x>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "\r\nbody\r\n"
    ).encode()


def run(
    from_: str,
    mail_from: str,
    *,
    signer: str | None = None,
    dns: StaticResolver | None = None,
    client: str = "203.0.113.50",
    sender: str | None = None,
) -> tuple[Decision, AuthResults]:
    """Authenticate as the gateway would, then decide with the base policy."""
    raw = _raw(from_, sender=sender)
    dns = dns or StaticResolver()
    if signer is not None:
        pem, record = _key()
        raw = dkim.sign(raw, b"s1", signer.encode(), pem) + raw
        dns.add(f"s1._domainkey.{signer}", "TXT", record)
    env = envelope(mail_from=mail_from, client=client)
    results = authenticate(raw, env, SETTINGS, dns)
    rep = report(auth=results.summary())
    more = {"Sender": sender} if sender is not None else {}
    decision = base_policy().decide(rep, env, headers(from_=from_, **more), auth=results)
    return decision, results


def hit_names(decision: Decision) -> set[str]:
    return {h.rule for h in decision.hits}


# --- external mail with an internal domain in From: ----------------------------------------


def test_external_mail_claiming_an_internal_from_is_quarantined() -> None:
    decision, results = run(f"市長 <mayor@{TENANT}>", "bounce@mailer.example")
    assert results.dmarc.result == "none"  # the municipality publishes no DMARC: common
    assert decision.verdict == Verdict.QUARANTINE
    assert "spoofed-internal-from" in hit_names(decision)
    assert any("internal domain" in r for r in decision.reasons)


def test_internal_envelope_sender_without_spf_is_quarantined() -> None:
    decision, _ = run("someone <a@outside.example>", f"soumu@{TENANT}")
    assert "spoofed-internal-from" in hit_names(decision)


def test_internal_domain_with_dmarc_pass_is_not_spoofing() -> None:
    dns = StaticResolver({(f"_dmarc.{TENANT}", "TXT"): ["v=DMARC1; p=reject"]})
    decision, results = run(f"総務課 <soumu@{TENANT}>", f"soumu@{TENANT}", signer=TENANT, dns=dns)
    assert results.dmarc.result == "pass"
    assert "spoofed-internal-from" not in hit_names(decision)
    assert decision.verdict == Verdict.DELIVER


def test_internal_from_signed_by_another_domain_is_still_spoofing() -> None:
    dns = StaticResolver({(f"_dmarc.{TENANT}", "TXT"): ["v=DMARC1; p=none"]})
    decision, results = run(
        f"<soumu@{TENANT}>", "x@attacker.example", signer="attacker.example", dns=dns
    )
    assert results.dkim_result == "pass"
    assert results.dmarc.result == "fail"
    assert "spoofed-internal-from" in hit_names(decision)


# --- Sender: and quoted forms (RT-11, RT-22) -----------------------------------------------


def test_internal_sender_on_external_mail_is_quarantined() -> None:
    """Outlook shows "soumu@city… on behalf of x@evil…": Sender: is a shown sender."""
    decision, _ = run("<x@evil.example>", "x@evil.example", sender=f"soumu@{TENANT}")
    assert "spoofed-internal-from" in hit_names(decision)
    assert decision.verdict == Verdict.QUARANTINE


def test_internal_sender_is_not_excused_by_the_from_domains_own_dmarc_pass() -> None:
    """DMARC pass proves the From: domain (the attacker's own), not the Sender: domain."""
    dns = StaticResolver({("_dmarc.evil.example", "TXT"): ["v=DMARC1; p=reject"]})
    decision, results = run(
        "<x@evil.example>",
        "x@evil.example",
        signer="evil.example",
        dns=dns,
        sender=f"soumu@{TENANT}",
    )
    assert results.dmarc.result == "pass"
    assert "spoofed-internal-from" in hit_names(decision)


def test_internal_sender_signed_by_the_tenant_is_not_spoofing() -> None:
    decision, results = run(
        "<info@partner.example>", "info@partner.example", signer=TENANT, sender=f"soumu@{TENANT}"
    )
    assert TENANT in results.dkim_pass_domains
    assert "spoofed-internal-from" not in hit_names(decision)
    assert decision.verdict == Verdict.DELIVER


def test_external_sender_on_external_mail_is_fine() -> None:
    decision, _ = run("<a@partner.example>", "a@partner.example", sender="list@lists.example")
    assert decision.verdict == Verdict.DELIVER
    assert decision.hits == ()


def test_sender_display_name_and_lookalike_are_checked() -> None:
    decision, _ = run(
        "<x@free.example>", "x@free.example", sender=f'"soumu@{TENANT}" <x@free.example>'
    )
    assert "display-name-imitates-internal" in hit_names(decision)
    decision, _ = run("<x@free.example>", "x@free.example", sender="soumu@c1ty.example.lg.jp")
    assert "lookalike-sender-domain" in hit_names(decision)


@pytest.mark.parametrize(
    "from_",
    [f'soumu@"{TENANT}"', 'soumu@"city".example.lg.jp', 'soumu@city."example".lg.jp'],
    ids=["whole-domain", "first-label", "middle-label"],
)
def test_internal_domain_written_with_quotes_is_quarantined(from_: str) -> None:
    """RT-22. RFC 5322 has no quoted domains; clients show the text between the quotes."""
    decision, results = run(from_, "bounce@evil.example")
    assert results.dmarc.result == "permerror"  # the field reads two ways
    assert {"spoofed-internal-from", "malformed-from"} <= hit_names(decision)


def test_quoted_domain_cannot_borrow_another_domains_dmarc_pass() -> None:
    """The legacy parser reads ``evil.example`` (which passes DMARC); clients show a tenant
    subdomain. The field reads two ways, so it is permerror, not pass."""
    dns = StaticResolver({("_dmarc.evil.example", "TXT"): ["v=DMARC1; p=reject"]})
    decision, results = run(
        f'soumu@"evil.example".{TENANT}', "x@evil.example", signer="evil.example", dns=dns
    )
    assert results.dmarc.result == "permerror"
    assert decision.verdict == Verdict.QUARANTINE
    assert "spoofed-internal-from" in hit_names(decision)


@pytest.mark.parametrize(
    "from_",
    [
        f'"soumu@{TENANT}"@free.example',
        f'"{TENANT}"@free.example',
        f'"総務課 {TENANT}"@free.example',
    ],
    ids=["address", "domain", "name-and-domain"],
)
def test_quoted_local_part_imitating_an_internal_address_is_quarantined(from_: str) -> None:
    decision, _ = run(from_, "attacker@free.example")
    assert "display-name-imitates-internal" in hit_names(decision)
    assert decision.verdict == Verdict.QUARANTINE


@pytest.mark.parametrize(
    "from_",
    ['"yamada.taro"@partner.example', '"山田 太郎" <"yamada taro"@partner.example>'],
    ids=["quoted-local", "name-and-quoted-local"],
)
def test_ordinary_quoted_local_parts_are_fine(from_: str) -> None:
    decision, _ = run(from_, "yamada@partner.example")
    assert decision.verdict == Verdict.DELIVER, hit_names(decision)


# --- display names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "from_",
    [
        f'"soumu@{TENANT}" <attacker@free.example>',
        f'"総務課 ｓｏｕｍｕ＠{TENANT.replace(".", "．")}" <attacker@free.example>',
        f'"{TENANT} 総務課" <attacker@free.example>',
        "=?UTF-8?B?"
        + base64.b64encode(f"総務課 soumu@{TENANT}".encode()).decode()
        + "?= <attacker@free.example>",
    ],
    ids=["address", "full-width", "domain-only", "rfc2047"],
)
def test_display_name_imitating_an_internal_address_is_quarantined(from_: str) -> None:
    decision, _ = run(from_, "attacker@free.example")
    assert "display-name-imitates-internal" in hit_names(decision)
    assert decision.verdict == Verdict.QUARANTINE


def test_display_name_with_another_external_address_is_tagged() -> None:
    decision, _ = run('"ceo@partner.example" <x@free.example>', "x@free.example")
    assert hit_names(decision) == {"display-name-other-address"}
    assert decision.verdict == Verdict.TAG
    assert decision.tag_headers == (("X-Mugaika-Tag", "display-name-address-mismatch"),)


def test_display_name_repeating_the_real_address_is_fine() -> None:
    decision, _ = run('"x@free.example" <x@free.example>', "x@free.example")
    assert decision.verdict == Verdict.DELIVER
    assert "display-name-other-address" not in hit_names(decision)


# --- lookalike domains --------------------------------------------------------------------


@pytest.mark.parametrize(
    "domain",
    [
        "city.examp1e.lg.jp",  # digit one for l
        "c1ty.example.lg.jp",  # digit one for i: i, l and 1 differ by a serif in mail fonts
        "clty.example.lg.jp",  # l for i
        "city.exarnple.lg.jp",  # rn for m
        "city.exampIe.lg.jp",  # capital I for l
        "сity.example.lg.jp",  # Cyrillic с
        "xn--ity-qdd.example.lg.jp",  # the same, as an A-label
        "city.example.lg.jp.secure-login.example",  # our name in front of another domain
        "town.exarnple.lg.jp",  # the second tenant is protected too
    ],
)
def test_lookalike_sender_domains_are_quarantined(domain: str) -> None:
    decision, _ = run(f"総務課 <soumu@{domain}>", f"soumu@{domain}")
    assert "lookalike-sender-domain" in hit_names(decision), domain
    assert decision.verdict == Verdict.QUARANTINE


def test_lookalike_in_reply_to_only() -> None:
    policy = base_policy()
    decision = policy.decide(
        report(),
        envelope(mail_from="a@partner.example"),
        headers(from_="a@partner.example", Reply_To="soumu@city.examp1e.lg.jp"),
    )
    assert "lookalike-sender-domain" in hit_names(decision)


def test_mixed_script_idn_is_quarantined_even_without_a_protected_twin() -> None:
    decision, _ = run("<x@pаypal.example>", "x@pаypal.example")  # Cyrillic а
    assert "lookalike-sender-domain" in hit_names(decision)


@pytest.mark.parametrize(
    "domain",
    [
        TENANT,  # our own domain (caught, if at all, by spoofed-internal-from)
        f"mail.{TENANT}",
        "example.lg.jp",  # the parent is not an imitation
        "partner.example",
        "日本語.jp",  # Japanese IDN: Han only
        "東京とうきょうトウキョウ.jp",  # Han + Hiragana + Katakana is ordinary Japanese
        "xn--wgv71a119e.jp",
    ],
)
def test_not_lookalikes(domain: str) -> None:
    policy = base_policy()
    decision = policy.decide(
        report(), envelope(mail_from="a@partner.example"), headers(from_=f"<x@{domain}>")
    )
    assert "lookalike-sender-domain" not in hit_names(decision), domain


def test_protected_domains_of_the_policy_are_checked(tmp_path: object) -> None:
    from pathlib import Path

    directory = Path(str(tmp_path))
    (directory / "city.yaml").write_text(
        "extends: lgwan-base\nprotected_domains: [pref.example.lg.jp, bank.example.co.jp]\n"
    )
    policy = load_policies(directory).get("city", frozenset({TENANT}))
    decision = policy.decide(
        report(), envelope(mail_from="a@x.example"), headers(from_="<info@bank-exarnple.co.jp>")
    )
    assert "lookalike-sender-domain" not in hit_names(decision)  # different name: not confusable
    decision = policy.decide(
        report(), envelope(mail_from="a@x.example"), headers(from_="<info@bank.exarnple.co.jp>")
    )
    assert "lookalike-sender-domain" in hit_names(decision)


def test_skeleton_examples() -> None:
    assert lookalike.skeleton("g00gle.com") == lookalike.skeleton("google.com")
    assert lookalike.skeleton("EXAMPLE.com") == lookalike.skeleton("example.com")
    assert lookalike.skeleton("ｅｘａｍｐｌｅ.com") == lookalike.skeleton("example.com")
    # i and l (and 1) are folded together: "exampie" reads as "example" in a mail font.
    assert lookalike.skeleton("exampie.com") == lookalike.skeleton("example.com")
    assert lookalike.skeleton("exarnpie.com") == lookalike.skeleton("example.com")
    assert lookalike.skeleton("exempla.com") != lookalike.skeleton("example.com")
    assert lookalike.imitated_domain("раураl.com", ["paypal.com"]) == "paypal.com"
    assert lookalike.imitated_domain("paypal.com", ["paypal.com"]) is None


# --- DMARC policy and malformed From: ------------------------------------------------------


def test_dmarc_fail_with_reject_policy_is_quarantined() -> None:
    dns = StaticResolver({("_dmarc.bank.example", "TXT"): ["v=DMARC1; p=reject"]})
    decision, results = run("<info@bank.example>", "info@bank.example", dns=dns)
    assert results.dmarc.result == "fail"
    assert "dmarc-policy-fail" in hit_names(decision)
    assert decision.verdict == Verdict.QUARANTINE


def test_dmarc_fail_with_none_policy_is_delivered() -> None:
    dns = StaticResolver({("_dmarc.shop.example", "TXT"): ["v=DMARC1; p=none"]})
    decision, _ = run("<info@shop.example>", "info@shop.example", dns=dns)
    assert "dmarc-policy-fail" not in hit_names(decision)
    assert decision.verdict == Verdict.DELIVER


def test_encoded_display_name_cannot_add_a_from_address() -> None:
    encoded = base64.b64encode("総務課, soumu@partner.example".encode()).decode()
    decision, results = run(f"=?UTF-8?B?{encoded}?= <x@free.example>", "x@free.example")
    assert results.dmarc.result == "none"  # one From: address, free.example
    assert results.from_domain == "free.example"
    assert "malformed-from" not in hit_names(decision)
    assert "display-name-other-address" in hit_names(decision)


def test_two_from_addresses_are_quarantined() -> None:
    decision, results = run("<a@partner.example>, <soumu@city.example.lg.jp>", "a@partner.example")
    assert results.dmarc.result == "permerror"
    assert "malformed-from" in hit_names(decision)


def test_legitimate_external_mail_is_delivered_with_no_hits() -> None:
    dns = StaticResolver(
        {
            ("partner.example", "TXT"): ["v=spf1 ip4:203.0.113.0/24 -all"],
            ("_dmarc.partner.example", "TXT"): ["v=DMARC1; p=reject"],
        }
    )
    decision, results = run(
        "山田 太郎 <yamada@partner.example>",
        "yamada@partner.example",
        signer="partner.example",
        dns=dns,
    )
    assert results.summary() == {"spf": "pass", "dkim": "pass", "dmarc": "pass", "arc": "none"}
    assert decision.hits == ()
    assert decision.verdict == Verdict.DELIVER
    assert len(decision.misses) == len(base_policy().rules)
