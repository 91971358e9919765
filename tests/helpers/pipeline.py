"""Run the real pipeline on bytes and look at its output as a mail client would."""

from __future__ import annotations

import email
import email.policy
import functools
import time
from collections.abc import Iterator
from email.message import Message

from gateway.config import Config, load_config
from gateway.message import ClientInfo, Envelope, Recipient
from gateway.pipeline import Job, Outcome, Pipeline


@functools.cache
def default_pipeline() -> Pipeline:
    """The shipped default policy (lgwan-base), no DNS (authentication off)."""
    config = load_config(environ={}, overrides={"auth.enabled": False})
    return Pipeline(config)


def pipeline_with(config: Config) -> Pipeline:
    return Pipeline(config)


def envelope(recipients: tuple[str, ...] = ("user@city.example.lg.jp",)) -> Envelope:
    client = ClientInfo(address="203.0.113.7", helo="mx.sender.example", proto="ESMTP")
    return Envelope(
        queue_id="TESTQUEUEID",
        mail_from="sender@sender.example",
        recipients=tuple(Recipient(r) for r in recipients),
        client=client,
        peer=client,
        received_at=time.time(),
    )


def run(raw: bytes, pipeline: Pipeline | None = None, **kwargs: object) -> Outcome:
    pipeline = pipeline or default_pipeline()
    return pipeline.process(Job(envelope(**kwargs), raw, "20261125-TESTREF1"))  # type: ignore[arg-type]


def parse(output: bytes) -> Message:
    return email.message_from_bytes(output, policy=email.policy.compat32)


def text_parts(output: bytes) -> Iterator[tuple[str, str]]:
    """(content type, decoded text) of every text/* part a client would show or open."""
    for part in parse(output).walk():
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        payload = part.get_payload(decode=True) or b""
        charset = part.get_content_charset() or "utf-8"
        yield part.get_content_type(), payload.decode(charset, "replace")


def body_text(output: bytes) -> str:
    """The first text/plain part: what a recipient reads."""
    return next(text for kind, text in text_parts(output) if kind == "text/plain")


def attachments(output: bytes) -> list[tuple[str, str, bytes]]:
    """(filename, content type, bytes) of every attachment in the output."""
    out = []
    for part in parse(output).walk():
        if part.is_multipart():
            continue
        if part.get_content_disposition() == "attachment":
            out.append(
                (
                    str(part.get_filename() or ""),
                    part.get_content_type(),
                    part.get_payload(decode=True) or b"",
                )
            )
    return out
