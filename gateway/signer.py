"""The signer: the one process that holds the gateway's private keys (issue 11, issue 12 item 6).

What it signs, just before delivery (``Relay``):

- ``auth.arc_seal``: an ARC set (RFC 8617) on every delivered message that carries our
  Authentication-Results, so that a downstream server can trust our SPF/DKIM/DMARC results
  although sanitizing broke the sender's signatures;
- ``auth.dkim_sign``: a DKIM signature (RFC 6376) of our own on every message whose body the
  gateway rebuilt (``Outcome.rebuilt``), with the key of each recipient domain (or its nearest
  configured parent). A message delivered unchanged keeps the sender's own signature, which
  still verifies, and gets none of ours.

Why a process of its own. A worker parses hostile MIME, PDFs and Office files with large
libraries: a key in a worker is a key in every exploit's reach. The main process parses no
content either, but it holds the SMTP sessions, the store's credentials and the admin UI, and
signing costs CPU proportional to the message (body canonicalisation and hashing). So the keys
are read from their files here, at this process's start, and nowhere else
(``auth.signing_keys``); ``AuthSettings``, which the workers get, holds none.

What the signer reads of a message: dkimpy's split of the header block into fields, its
relaxed canonicalisation of header fields and body lines, the tag lists of earlier ARC sets
(for the instance number and the seal, as RFC 8617 requires), and our own
Authentication-Results field (through ``authres``); the A-R fields of other hosts are removed
before dkimpy sees the message (they are never signed). It never parses MIME structure,
decodes a body, or looks at an attachment. The bytes it signs were assembled by a worker: a
compromised worker could have it sign anything, which it could as well deliver unsigned; it
cannot get at the key.

The signer runs under ``gateway.workers.WorkerPool`` (one process, started by the same
forkserver as the workers, RLIMIT_AS, a timeout, replaced when it dies). It answers with a
``gateway.wire`` frame: only the new header fields, which the main process checks
(``Signatures.from_frame``: size, field names, no control characters) before prepending them.
A signing failure is logged and the message is delivered unsigned, as before this process
existed (sealing is an assurance for the next hop, not a content decision).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated

from pydantic import Field

from gateway import auth, wire
from gateway.config import Config
from gateway.logs import log_fields, worker_log
from gateway.workers import WorkerLimits, WorkerPool

MAX_SIGNATURE_BYTES = 64 * 1024  # a few ARC and DKIM fields; RSA-4096 b= is 700 characters
# Field names we add; values of printable characters (UTF-8 allowed: RFC 6532), folded with
# CRLF + WSP, each field ending in CRLF.
_FIELDS = re.compile(
    rb"(?:(?i:DKIM-Signature|ARC-Seal|ARC-Message-Signature|ARC-Authentication-Results):"
    rb"[\t\x20-\x7e\x80-\xff]*\r\n(?:[\t ][\t\x20-\x7e\x80-\xff]*\r\n)*)+"
)


@dataclass(frozen=True, slots=True)
class SigningJob:
    """What the main process asks the signer: the final message, the recipient domains
    (they choose the DKIM keys) and whether the gateway rebuilt it (DKIM-sign it then)."""

    message: bytes
    recipient_domains: tuple[str, ...]
    rebuilt: bool


@dataclass(frozen=True, slots=True)
class Signatures:
    """The header fields to prepend, topmost first (empty when nothing applied), and what
    could not be signed, in words for the log."""

    fields: bytes = b""
    problems: tuple[str, ...] = ()

    def to_frame(self) -> wire.Frame:
        header = {"size": len(self.fields), "problems": list(self.problems)}
        return wire.Frame(header, (self.fields,))

    @classmethod
    def from_frame(cls, frame: wire.Frame) -> Signatures:
        """Checked: one byte string of the declared size, at most ``MAX_SIGNATURE_BYTES``,
        made only of our signature fields. Raises ``wire.WireError``."""
        checked = wire.check(_WireSignatures, frame.header, "signatures")
        wire.blob_sizes_match(frame.blobs, [checked.size], "signatures")
        fields = frame.blobs[0]
        if fields and not _FIELDS.fullmatch(fields):
            raise wire.WireError("signatures: not only signature header fields")
        return cls(fields, tuple(checked.problems))


class _WireSignatures(wire.WireModel):
    size: Annotated[int, Field(ge=0, le=MAX_SIGNATURE_BYTES)]
    problems: Annotated[list[wire.Line], Field(max_length=16)]


def enabled(config: Config) -> bool:
    """True when the configuration asks for any signature."""
    return config.auth.arc_seal is not None or bool(config.auth.dkim_sign)


def init_signer(config: Config) -> Callable[[SigningJob], Signatures]:
    """``WorkerPool`` target, in the signer process: read the keys once, then sign."""
    keys = auth.signing_keys(config)

    def sign(job: SigningJob) -> Signatures:
        message = job.message
        added = b""
        problems: list[str] = []
        if job.rebuilt:
            for key in keys.dkim_keys_for(job.recipient_domains):
                try:
                    field = auth.dkim_signature(message, key)
                except auth.SigningFailed as exc:
                    problems.append(f"{key.domain}: {exc}"[:500])
                    continue
                message, added = field + message, field + added
        if keys.arc_key is not None:
            # Empty when the message has no Authentication-Results of ours (authentication
            # off, or it failed): there is then nothing for an ARC set to vouch for. dkimpy
            # refuses some broken chains of earlier hops (e.g. i=1 with cv=pass).
            try:
                added = auth.arc_set(message, keys.authserv_id, keys.arc_key) + added
            except auth.SigningFailed as exc:
                problems.append(str(exc)[:500])
        return Signatures(added, tuple(problems))

    return sign


class Signer:
    """The signer process, as the main process sees it. ``sign`` never raises."""

    def __init__(self, config: Config, on_restart: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.pool = WorkerPool(
            "gateway.signer:init_signer",
            config,
            1,
            WorkerLimits(memory_limit_mb=1024, timeout=60.0, max_jobs=100_000),
            on_restart=on_restart,
            decode=Signatures.from_frame,
            max_result_bytes=MAX_SIGNATURE_BYTES + 1024,
        )

    async def start(self) -> None:
        await self.pool.start()

    async def reload(self, config: Config) -> None:
        """New keys take effect for the next message; one being signed finishes first."""
        self.config = config
        await self.pool.reload(config)

    async def close(self) -> None:
        await self.pool.close(grace=5)

    def pids(self) -> list[int]:
        return self.pool.pids()

    async def sign(
        self, message: bytes, recipient_domains: Iterable[str], rebuilt: bool, queue_id: str
    ) -> bytes:
        """``message`` with its signatures on top; unsigned (and a warning logged) if the
        signer fails."""
        job = SigningJob(message, tuple(sorted(set(recipient_domains))), rebuilt)
        try:
            signatures: Signatures = await self.pool.run(job)
        except Exception as exc:
            log_fields(
                worker_log,
                30,
                "signing failed; delivering unsigned",
                queue_id=queue_id,
                error=f"{getattr(exc, 'code', type(exc).__name__)}: {exc}"[:300],
            )
            return message
        for problem in signatures.problems:
            log_fields(worker_log, 30, "not signed", queue_id=queue_id, error=problem)
        return signatures.fields + message
