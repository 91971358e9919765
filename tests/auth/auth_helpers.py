"""Keys, DNS records and signed messages made in the tests with dkimpy and cryptography."""

from __future__ import annotations

import base64
import functools

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from gateway.auth import StaticResolver
from gateway.message import ClientInfo, Envelope, Recipient

CRLF = b"\r\n"


@functools.cache
def rsa_key(name: str = "a", bits: int = 2048) -> tuple[bytes, str]:
    """(PEM private key, DKIM TXT record) — cached per name: key generation is slow."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
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
def ed25519_key() -> tuple[bytes, str]:
    """(base64 private seed as dkimpy wants it, TXT record) for RFC 8463."""
    key = ed25519.Ed25519PrivateKey.generate()
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return base64.b64encode(seed), "v=DKIM1; k=ed25519; p=" + base64.b64encode(public).decode()


def message(
    from_: str = "Alice <alice@example.com>",
    subject: str = "Quarterly report",
    body: bytes = b"Hello,\r\nthe report is attached.\r\n",
    extra: bytes = b"",
) -> bytes:
    head = (
        f"From: {from_}\r\nTo: user@city.example.lg.jp\r\nSubject: {subject}\r\n"
        "Date: Mon, 01 Jun 2026 09:00:00 +0900\r\nMessage-ID: <m1@example.com>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
    ).encode()
    return extra + head + CRLF + body


def sign(raw: bytes, domain: str, selector: str = "sel", key: str = "a") -> bytes:
    pem, _ = rsa_key(key)
    header = dkim.sign(
        raw, selector.encode(), domain.encode(), pem, canonicalize=(b"relaxed", b"simple")
    )
    return header + raw


def publish(resolver: StaticResolver, domain: str, selector: str = "sel", key: str = "a") -> None:
    resolver.add(f"{selector}._domainkey.{domain}", "TXT", rsa_key(key)[1])


def envelope(
    mail_from: str = "alice@example.com",
    client: str = "192.0.2.10",
    helo: str = "mx.example.com",
    forwarded: bool = True,
) -> Envelope:
    return Envelope(
        queue_id="Q1",
        mail_from=mail_from,
        recipients=(Recipient("user@city.example.lg.jp"),),
        client=ClientInfo(address=client, helo=helo, forwarded=forwarded),
    )
