"""SPF, DKIM, DMARC and ARC with real signatures made here by dkimpy; DNS from a stub or a
real DNS server on loopback; never the network."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import authres
import dkim
import pytest
from auth_helpers import ed25519_key, envelope, message, publish, rsa_key, sign
from dns_server import DnsServer

from gateway.auth import (
    AuthSettings,
    DnsResolver,
    DnsTempError,
    SigningFailed,
    SigningKey,
    SigningKeys,
    StaticResolver,
    add_authentication_results,
    arc_seal,
    auth_settings,
    authenticate,
    check_dkim,
    dkim_sign,
    organizational_domain,
    signing_keys,
)
from gateway.config import load_config
from gateway.errors import ConfigError

SETTINGS = AuthSettings(authserv_id="gw.city.example.lg.jp", dns_timeout=1.0, spf_lifetime=5.0)
SPF = ("example.com", "TXT")


def resolver(**records: list[str]) -> StaticResolver:
    r = StaticResolver({SPF: ["v=spf1 ip4:192.0.2.0/24 ~all"]})
    for name, values in records.items():
        r.add(name, "TXT", *values)
    return r


# --- DKIM --------------------------------------------------------------------------------


def test_dkim_pass_with_a_signature_made_here() -> None:
    r = resolver()
    publish(r, "example.com")
    results = authenticate(sign(message(), "example.com"), envelope(), SETTINGS, r)
    assert results.dkim_result == "pass"
    assert results.dkim[0].prop("header.d") == "example.com"
    assert results.dkim[0].prop("header.s") == "sel"
    assert results.dkim_pass_domains == frozenset({"example.com"})
    assert "dkim=pass header.d=example.com header.s=sel header.b=" in results.header_value


def test_dkim_fail_when_the_body_was_changed() -> None:
    r = resolver()
    publish(r, "example.com")
    tampered = sign(message(), "example.com").replace(b"the report", b"the invoice")
    results = authenticate(tampered, envelope(), SETTINGS, r)
    assert results.dkim_result == "fail"
    assert results.dkim[0].reason == "body hash mismatch"
    assert results.dkim_pass_domains == frozenset()


def test_dkim_fail_when_a_signed_header_was_changed() -> None:
    r = resolver()
    publish(r, "example.com")
    tampered = sign(message(), "example.com").replace(b"Quarterly", b"Urgent")
    assert authenticate(tampered, envelope(), SETTINGS, r).dkim_result == "fail"


def test_dkim_none_without_signature() -> None:
    results = authenticate(message(), envelope(), SETTINGS, resolver())
    assert results.dkim == ()
    assert results.dkim_result == "none"
    assert "dkim=none" in results.header_value


def test_dkim_permerror_when_the_key_is_not_published() -> None:
    results = authenticate(sign(message(), "example.com"), envelope(), SETTINGS, resolver())
    assert results.dkim_result == "permerror"
    assert results.dkim[0].reason == "no key for signature"


def test_dkim_temperror_when_dns_times_out() -> None:
    r = resolver()
    r.temperror.add("sel._domainkey.example.com")
    results = authenticate(sign(message(), "example.com"), envelope(), SETTINGS, r)
    assert results.dkim_result == "temperror"


def test_dkim_wrong_key_fails() -> None:
    r = resolver()
    publish(r, "example.com", key="other")  # published key is not the signing key
    assert authenticate(sign(message(), "example.com"), envelope(), SETTINGS, r).dkim_result == (
        "fail"
    )


def test_dkim_ed25519_rfc8463() -> None:
    seed, record = ed25519_key()
    raw = message()
    signed = (
        dkim.sign(raw, b"ed", b"example.com", seed, signature_algorithm=b"ed25519-sha256") + raw
    )
    r = resolver()
    r.add("ed._domainkey.example.com", "TXT", record)
    assert authenticate(signed, envelope(), SETTINGS, r).dkim_result == "pass"


def test_several_signatures_one_result_each_and_a_bound() -> None:
    r = resolver()
    publish(r, "example.com")
    publish(r, "esp.example", key="b")
    raw = sign(sign(message(), "example.com"), "esp.example", key="b")
    results = check_dkim(raw, r, SETTINGS)
    assert sorted((x.prop("header.d"), x.result) for x in results) == [
        ("esp.example", "pass"),
        ("example.com", "pass"),
    ]
    many = raw
    for _ in range(20):
        many = sign(many, "example.com")
    assert len(check_dkim(many, r, SETTINGS)) == 8  # MAX_DKIM_SIGNATURES


@pytest.mark.parametrize(
    "signature",
    [
        b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=sel; b=!!!; bh=???; h=from\r\n",
        b"DKIM-Signature: garbage\r\n",
        b"DKIM-Signature: v=1; a=rsa-sha256; d=; s=; h=from; bh=; b=\r\n",
        b"DKIM-Signature: v=1; a=rsa-sha999; d=example.com; s=sel; h=from; bh=AA==; b=AA==\r\n",
    ],
)
def test_malformed_signatures_are_permerror_not_crashes(signature: bytes) -> None:
    r = resolver()
    publish(r, "example.com")
    results = authenticate(signature + message(), envelope(), SETTINGS, r)
    assert results.dkim_result in ("permerror", "fail")


# --- SPF ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "client", "expected"),
    [
        ("v=spf1 ip4:192.0.2.0/24 -all", "192.0.2.10", "pass"),
        ("v=spf1 ip4:192.0.2.0/24 -all", "203.0.113.5", "fail"),
        ("v=spf1 ip4:192.0.2.0/24 ~all", "203.0.113.5", "softfail"),
        ("v=spf1 ?all", "203.0.113.5", "neutral"),
        ("v=spf1 ip4:192.0.2.0/24 moo -all", "192.0.2.10", "permerror"),
        ("v=spf1 ip6:2001:db8::/32 -all", "2001:db8::25", "pass"),
    ],
)
def test_spf_results(record: str, client: str, expected: str) -> None:
    r = StaticResolver({SPF: [record]})
    results = authenticate(message(), envelope(client=client), SETTINGS, r)
    assert results.spf.result == expected
    assert results.spf.prop("smtp.mailfrom") == "example.com"
    assert f"spf={expected}" in results.header_value


def test_spf_follows_include_and_mx_through_the_resolver() -> None:
    r = StaticResolver(
        {
            SPF: ["v=spf1 include:_spf.esp.example mx -all"],
            ("_spf.esp.example", "TXT"): ["v=spf1 ip4:198.51.100.0/24 -all"],
            ("example.com", "MX"): ["10 mx.example.com"],
            ("mx.example.com", "A"): ["192.0.2.77"],
        }
    )
    assert authenticate(message(), envelope(client="198.51.100.9"), SETTINGS, r).spf.result == (
        "pass"
    )
    assert authenticate(message(), envelope(client="192.0.2.77"), SETTINGS, r).spf.result == (
        "pass"
    )
    assert ("_spf.esp.example", "TXT") in r.queries


def test_spf_none_without_record_and_temperror_on_dns_failure() -> None:
    assert authenticate(message(), envelope(), SETTINGS, StaticResolver()).spf.result == "none"
    failing = StaticResolver(temperror=["example.com"])
    assert authenticate(message(), envelope(), SETTINGS, failing).spf.result == "temperror"


def test_spf_checks_helo_for_the_null_sender() -> None:
    r = StaticResolver({("mx.example.com", "TXT"): ["v=spf1 ip4:192.0.2.10 -all"]})
    results = authenticate(message(), envelope(mail_from=""), SETTINGS, r)
    assert results.spf.result == "pass"
    assert results.spf.prop("smtp.helo") == "mx.example.com"
    assert results.spf.prop("smtp.mailfrom") == ""


def test_spf_not_evaluated_for_an_unforwarded_loopback_client() -> None:
    """Behind Postfix without XFORWARD every client is 127.0.0.1: no false fail for all."""
    r = StaticResolver({SPF: ["v=spf1 -all"]})
    results = authenticate(message(), envelope(client="127.0.0.1", forwarded=False), SETTINGS, r)
    assert results.spf.result == "none"
    assert results.spf.reason == "client address not forwarded"
    assert r.queries == [("_dmarc.example.com", "TXT")]  # SPF asked nothing


# --- DMARC -------------------------------------------------------------------------------


def _dmarc(record: str, **extra: list[str]) -> StaticResolver:
    r = resolver(**extra)
    r.add("_dmarc.example.com", "TXT", record)
    return r


def test_dmarc_pass_by_aligned_dkim_relaxed() -> None:
    r = _dmarc("v=DMARC1; p=reject")
    publish(r, "mail.example.com")
    raw = sign(message(), "mail.example.com")  # d= below the From: domain: relaxed alignment
    results = authenticate(raw, envelope(mail_from="bounce@esp.example"), SETTINGS, r)
    assert results.dmarc.result == "pass"
    assert results.dmarc_policy == "reject"
    assert results.authenticated_domains() == frozenset({"mail.example.com", "example.com"})


def test_dmarc_strict_dkim_alignment_fails_a_subdomain_signature() -> None:
    r = _dmarc("v=DMARC1; p=quarantine; adkim=s")
    publish(r, "mail.example.com")
    raw = sign(message(), "mail.example.com")
    results = authenticate(raw, envelope(mail_from="bounce@esp.example"), SETTINGS, r)
    assert results.dkim_result == "pass"
    assert results.dmarc.result == "fail"
    assert results.dmarc_policy == "quarantine"


def test_dmarc_pass_by_aligned_spf() -> None:
    r = _dmarc("v=DMARC1; p=none")
    results = authenticate(message(), envelope(), SETTINGS, r)
    assert results.spf.result == "pass"
    assert results.dmarc.result == "pass"
    assert "aligned spf" in results.dmarc.reason


def test_dmarc_fail_when_spf_passes_for_another_domain_and_nobody_signed() -> None:
    r = _dmarc("v=DMARC1; p=reject", **{"esp.example": ["v=spf1 ip4:192.0.2.0/24 -all"]})
    results = authenticate(message(), envelope(mail_from="x@esp.example"), SETTINGS, r)
    assert results.spf.result == "pass"
    assert results.dmarc.result == "fail"
    assert results.authenticated_domains() == frozenset()


def test_dmarc_fail_when_a_foreign_domain_signed() -> None:
    r = _dmarc("v=DMARC1; p=reject")
    publish(r, "attacker.example")
    raw = sign(message(), "attacker.example")
    results = authenticate(raw, envelope(client="203.0.113.9"), SETTINGS, r)
    assert results.dkim_result == "pass"
    assert results.dmarc.result == "fail"
    assert results.authenticated_domains() == frozenset({"attacker.example"})


def test_dmarc_organizational_domain_record_and_subdomain_policy() -> None:
    r = StaticResolver({("_dmarc.example.com", "TXT"): ["v=DMARC1; p=none; sp=reject"]})
    raw = message(from_="x@news.example.com")
    results = authenticate(raw, envelope(client="203.0.113.9"), SETTINGS, r)
    assert results.dmarc.result == "fail"
    assert results.dmarc_policy == "reject"  # sp= applies below the organizational domain
    assert ("_dmarc.news.example.com", "TXT") in r.queries


def test_dmarc_none_temperror_and_permerror() -> None:
    assert authenticate(message(), envelope(), SETTINGS, resolver()).dmarc.result == "none"
    r = resolver()
    r.temperror.add("_dmarc.example.com")
    assert authenticate(message(), envelope(), SETTINGS, r).dmarc.result == "temperror"
    two_from = message(from_="a@example.com, b@attacker.example")
    results = authenticate(two_from, envelope(), SETTINGS, resolver())
    assert results.dmarc.result == "permerror"
    assert results.from_domain == ""
    # An unquoted @ in the display name reads as a second address (real malspam does this).
    trick = message(from_="ceo@example.com <x@attacker.example>")
    assert authenticate(trick, envelope(), SETTINGS, resolver()).dmarc.result == "permerror"
    for no_domain in ("MAILER-DAEMON", "undisclosed-recipients:;"):
        results = authenticate(message(from_=no_domain), envelope(), SETTINGS, resolver())
        assert results.dmarc.result == "none"


@pytest.mark.parametrize(
    "records",
    [
        ["v=DMARC1; p=reject", "v=DMARC1; p=none"],  # two records: no DMARC (RFC 7489 6.6.3)
        ["v=DMARC1; p=bogus"],  # invalid p= and no rua=: no record
        ["v=spf1 -all"],  # not a DMARC record
    ],
)
def test_dmarc_unusable_records_mean_none(records: list[str]) -> None:
    r = StaticResolver({("_dmarc.example.com", "TXT"): records})
    results = authenticate(message(), envelope(client="203.0.113.9"), SETTINGS, r)
    assert results.dmarc.result == "none"


def test_organizational_domain_for_lgwan_names() -> None:
    assert organizational_domain("mail.city.shinjuku.lg.jp") == "shinjuku.lg.jp"
    assert organizational_domain("example.co.jp") == "example.co.jp"
    assert organizational_domain("a.b.example.com") == "example.com"


# --- Authentication-Results --------------------------------------------------------------


def test_header_is_rfc8601_and_parses_with_authres() -> None:
    r = _dmarc("v=DMARC1; p=reject")
    publish(r, "example.com")
    results = authenticate(sign(message(), "example.com"), envelope(), SETTINGS, r)
    parsed = authres.AuthenticationResultsHeader.parse(
        "Authentication-Results: " + results.header_value
    )
    assert parsed.authserv_id == "gw.city.example.lg.jp"
    assert {(x.method, x.result) for x in parsed.results} == {
        ("spf", "pass"),
        ("dkim", "pass"),
        ("dmarc", "pass"),
        ("arc", "none"),
    }
    assert results.summary() == {"spf": "pass", "dkim": "pass", "dmarc": "pass", "arc": "none"}


def test_forged_results_claiming_our_id_are_removed_others_kept() -> None:
    forged = (
        b"Authentication-Results: GW.City.Example.LG.JP; dkim=pass header.d=bank.example\r\n"
        b"Authentication-Results: (comment) gw.city.example.lg.jp;\r\n\tdmarc=pass\r\n"
        b"Authentication-Results: mx.upstream.example; spf=fail\r\n"
    )
    raw = message(extra=forged)
    results = authenticate(raw, envelope(), SETTINGS, resolver())
    out = add_authentication_results(raw, results)
    header_block = out.split(b"\r\n\r\n", 1)[0]
    assert header_block.count(b"gw.city.example.lg.jp") == 1  # ours, once
    assert b"bank.example" not in out
    assert b"Authentication-Results: mx.upstream.example; spf=fail" in out
    assert out.startswith(b"Authentication-Results: gw.city.example.lg.jp;\r\n\tspf=")
    assert out.endswith(b"\r\n\r\nHello,\r\nthe report is attached.\r\n")
    assert add_authentication_results(out, results) == out  # idempotent


def test_hostile_from_domain_cannot_inject_results() -> None:
    raw = message(from_='"x" <a@evil.example; dkim=pass>')
    results = authenticate(raw, envelope(), SETTINGS, resolver())
    parsed = authres.AuthenticationResultsHeader.parse(
        "Authentication-Results: " + results.header_value
    )
    assert [x.result for x in parsed.results if x.method == "dkim"] == ["none"]


# --- ARC and signing ---------------------------------------------------------------------


def _arc_dns(resolver_: StaticResolver) -> object:
    def lookup(name: bytes, timeout: float = 5) -> bytes | None:
        answers = resolver_.lookup(name.decode(), "TXT")
        return answers[0].encode() if answers else None

    return lookup


def test_arc_seal_after_modification_verifies_with_dkimpy() -> None:
    r = _dmarc("v=DMARC1; p=reject")
    publish(r, "example.com")
    publish(r, "gw.city.example.lg.jp", selector="arc", key="gw")
    original = sign(message(), "example.com")
    results = authenticate(original, envelope(), SETTINGS, r)
    # The gateway modifies the body (as a sanitizer would), then seals.
    modified = original.replace(b"the report is attached.", b"[attachment removed]")
    key = SigningKey("gw.city.example.lg.jp", "arc", rsa_key("gw")[0])
    sealed = arc_seal(add_authentication_results(modified, results), results, key)
    cv, sets, why = dkim.arc_verify(sealed, dnsfunc=_arc_dns(r))
    assert (cv, why) == (dkim.CV_Pass, "success")
    assert sets[0]["as-domain"] == b"gw.city.example.lg.jp"
    assert b"dkim=pass header.d=example.com" in sets[0]["aar-value"]
    # The original DKIM signature no longer verifies: that is why ARC is needed.
    assert authenticate(sealed, envelope(), SETTINGS, r).dkim_result == "fail"
    # And our own check of the chain agrees.
    assert authenticate(sealed, envelope(), SETTINGS, r).arc.result == "pass"


def test_arc_chain_of_two_hops_and_tampering_fails() -> None:
    r = resolver()
    publish(r, "gw.city.example.lg.jp", selector="arc", key="gw")
    publish(r, "relay.example", selector="arc", key="b")
    first = SETTINGS
    results1 = authenticate(message(), envelope(), first, r)
    hop1 = arc_seal(
        message(), results1, SigningKey("gw.city.example.lg.jp", "arc", rsa_key("gw")[0])
    )
    second = AuthSettings(authserv_id="relay.example")
    results2 = authenticate(hop1, envelope(), second, r)
    assert results2.arc.result == "pass"
    hop2 = arc_seal(hop1, results2, SigningKey("relay.example", "arc", rsa_key("b")[0]))
    cv, sets, _ = dkim.arc_verify(hop2, dnsfunc=_arc_dns(r))
    assert cv == dkim.CV_Pass
    assert [s["instance"] for s in sets] == [2, 1]
    tampered = hop2.replace(b"Quarterly", b"Changed")
    assert authenticate(tampered, envelope(), SETTINGS, r).arc.result == "fail"


def test_arc_seal_with_a_bad_key_raises_signing_failed() -> None:
    results = authenticate(message(), envelope(), SETTINGS, resolver())
    with pytest.raises(SigningFailed, match="ARC seal"):
        arc_seal(message(), results, SigningKey("gw.example", "arc", b"not a key"))


def test_dkim_sign_verifies_and_keys_are_chosen_by_recipient_domain() -> None:
    pem, record = rsa_key("out")
    signed = dkim_sign(
        message(from_="soumu@city.example.lg.jp"), SigningKey("city.example.lg.jp", "mugaika", pem)
    )
    r = StaticResolver({("mugaika._domainkey.city.example.lg.jp", "TXT"): [record]})
    assert check_dkim(signed, r, SETTINGS)[0].result == "pass"
    city = SigningKey("city.example.lg.jp", "s", pem)
    town = SigningKey("town.example.lg.jp", "s", pem)
    keys = SigningKeys("gw", dkim_keys=(city, town))
    assert keys.dkim_keys_for(["mail.city.example.lg.jp"]) == (city,)
    assert keys.dkim_keys_for(["TOWN.example.lg.jp.", "city.example.lg.jp"]) == (city, town)
    assert keys.dkim_keys_for(["example.lg.jp", "example.com"]) == ()
    assert "BEGIN" not in repr(keys)  # key material never in logs


# --- DNS resolver against a real DNS server on loopback -----------------------------------


def test_resolver_answers_caches_and_times_out() -> None:
    zone = {("example.com", "TXT"): ["v=spf1 -all"], ("example.com", "A"): ["192.0.2.1"]}
    with DnsServer(zone, silent=["slow.example"], servfail=["broken.example"]) as server:
        dns = DnsResolver(timeout=0.5, cache_size=2, nameservers=["127.0.0.1"], port=server.port)
        assert dns.lookup("example.com", "TXT") == ("v=spf1 -all",)
        assert dns.lookup("Example.COM.", "TXT") == ("v=spf1 -all",)
        assert server.queries.count(("example.com", "TXT")) == 1  # second answer from cache
        assert dns.lookup("nowhere.example", "TXT") == ()  # NXDOMAIN
        assert dns.lookup("example.com", "MX") == ()  # NODATA
        started = time.monotonic()
        with pytest.raises(DnsTempError):
            dns.lookup("slow.example", "TXT")
        assert time.monotonic() - started < 3
        with pytest.raises(DnsTempError):
            dns.lookup("broken.example", "TXT")
        # The cache is bounded: older entries are evicted.
        dns.lookup("example.com", "A")
        assert len(dns._cache) <= 2


def test_authenticate_through_the_real_resolver_turns_timeouts_into_temperror() -> None:
    with DnsServer({}, silent=["example.com", "_dmarc.example.com"]) as server:
        dns = DnsResolver(timeout=0.3, nameservers=["127.0.0.1"], port=server.port)
        results = authenticate(message(), envelope(), SETTINGS, dns)
    assert results.spf.result == "temperror"
    assert results.dmarc.result == "temperror"


def test_resolver_without_configuration_gives_temperror(monkeypatch: pytest.MonkeyPatch) -> None:
    import dns.resolver

    def no_config(self: object, configure: bool = True) -> None:
        raise dns.resolver.NoResolverConfiguration("no nameservers")

    real_init = dns.resolver.Resolver.__init__

    def init(self: dns.resolver.Resolver, configure: bool = True) -> None:
        if configure:
            no_config(self)
        real_init(self, configure=False)

    monkeypatch.setattr(dns.resolver.Resolver, "__init__", init)
    resolver_ = DnsResolver()
    with pytest.raises(DnsTempError, match="no resolver configuration"):
        resolver_.lookup("example.com", "TXT")


# --- configuration ------------------------------------------------------------------------


def test_auth_config_section_and_key_files(tmp_path: Path) -> None:
    key_file = tmp_path / "arc.pem"
    key_file.write_bytes(rsa_key("gw")[0])
    config_file = tmp_path / "mugaika.yaml"
    config_file.write_text(
        "auth:\n"
        "  authserv_id: gw.city.example.lg.jp\n"
        "  dns_timeout: 2\n"
        f"  arc_seal: {{domain: city.example.lg.jp, selector: arc2026, key_file: {key_file}}}\n"
        f"  dkim_sign:\n    - {{domain: city.example.lg.jp, selector: s1, key_file: {key_file}}}\n"
    )
    config = load_config(config_file, environ={})
    settings = auth_settings(config)
    assert settings.authserv_id == "gw.city.example.lg.jp"
    assert settings.dns_timeout == 2.0
    # What workers get holds no key (issue 11); only the signer process loads them.
    assert not any(isinstance(value, SigningKey | bytes) for value in dataclasses.astuple(settings))
    keys = signing_keys(config)
    assert keys.authserv_id == "gw.city.example.lg.jp"
    assert keys.arc_key is not None
    assert keys.arc_key.selector == "arc2026"
    assert keys.dkim_keys[0].private_key.startswith(b"-----BEGIN RSA PRIVATE KEY-----")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "auth:\n  arc_seal: {domain: a.example, selector: s, key_file: /nonexistent.pem}\n",
            ":2: auth.arc_seal.key_file: '/nonexistent.pem': cannot read: No such file",
        ),
        (
            "auth:\n  arc_seal:\n    domain: a.example\n    selector: 'bad selector'\n"
            "    key_file: /etc/hostname\n",
            ":4: auth.arc_seal.selector: 'bad selector': expected a DKIM selector",
        ),
        ("auth:\n  dns_timeout: 0\n", ":2: auth.dns_timeout: 0"),
        ("auth:\n  nameservers: [dns.example]\n", ":2: auth.nameservers[0]: 'dns.example'"),
        ("auth:\n  dkim: yes\n", ":2: auth.dkim: unknown key"),
    ],
)
def test_auth_config_errors_name_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    config_file = tmp_path / "mugaika.yaml"
    config_file.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(config_file, environ={})
    assert info.value.messages[0].startswith(f"{config_file}{expected}"), info.value.messages
