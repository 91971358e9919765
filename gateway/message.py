"""The message as it travels: its SMTP envelope and the client that sent it.

``Envelope`` copies aiosmtpd's fields (``mail_from``, recipients, options) as immutable data and
adds the client as Postfix reported it through XFORWARD. It is what crosses into worker
processes beside the raw bytes. The MIME tree (``Part``) lives in ``gateway.mime``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """Who sent the message: the TCP peer, or the original client named by XFORWARD.

    Values from XFORWARD are what Postfix saw; ``forwarded`` says they came that way.
    """

    address: str
    port: int = 0
    helo: str = ""
    name: str = ""
    proto: str = ""
    ident: str = ""
    tls: str = ""
    forwarded: bool = False


@dataclass(frozen=True, slots=True)
class Recipient:
    """One RCPT TO with its ESMTP parameters exactly as received (NOTIFY, ORCPT)."""

    address: str
    options: tuple[str, ...] = ()

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2].lower()


@dataclass(frozen=True, slots=True)
class Envelope:
    """One SMTP transaction's envelope. ``mail_options`` keep their case (ENVID is xtext)."""

    queue_id: str
    mail_from: str
    recipients: tuple[Recipient, ...]
    mail_options: tuple[str, ...] = ()
    client: ClientInfo = field(default_factory=lambda: ClientInfo(address=""))
    peer: ClientInfo = field(default_factory=lambda: ClientInfo(address=""))
    received_at: float = 0.0
    smtputf8: bool = False
    body: str = "7BIT"

    @property
    def rcpt_tos(self) -> list[str]:
        return [r.address for r in self.recipients]

    @property
    def sender_domain(self) -> str:
        return self.mail_from.rpartition("@")[2].lower()
