"""aiosmtplib's DATA preparation without its two whole-message regular expressions.

``aiosmtplib.protocol.SMTPProtocol.execute_data_command`` turns lone CR and LF into CRLF
with one regex substitution and dot-stuffs with another (``(?m)^\\.``), over the whole
message: for a 2 MB message they were two thirds of the gateway's main process (issue 13).
The gateway only sends CRLF text (a rebuilt message, or one delivered as received because
the framing proof found no lone CR or LF), for which the first is the identity.

``install()`` replaces the two module globals that method uses with exact equivalents that
take the fast path when it applies: ``normalize_message_line_endings`` checks by counting
that there is no lone CR or LF (then only a missing final CRLF is added) and falls back to
aiosmtplib's own function otherwise; the dot-stuffer is a ``bytes.replace`` of ``\\n.``.
tests/gateway/test_smtpdata.py compares both with aiosmtplib's originals on arbitrary bytes
and fails if a release of aiosmtplib no longer has them.
"""

from __future__ import annotations

import re

import aiosmtplib.protocol as _protocol

ORIGINAL_NORMALIZE = _protocol.normalize_message_line_endings
ORIGINAL_PERIOD_REGEX: re.Pattern[bytes] = _protocol.PERIOD_REGEX


def normalize_message_line_endings(message: bytes) -> bytes:
    """``aiosmtplib.protocol.normalize_message_line_endings``, the same bytes out."""
    crlf = message.count(b"\r\n")
    if message.count(b"\r") != crlf or message.count(b"\n") != crlf:
        return ORIGINAL_NORMALIZE(message)
    return message if message.endswith(b"\r\n") else message + b"\r\n"


class PeriodStuffer:
    """Stands in for ``PERIOD_REGEX`` (``(?m)^\\.``), whose one use is ``.sub(b"..", message)``:
    a dot at the start of the message or after a LF gets a second dot."""

    pattern = ORIGINAL_PERIOD_REGEX.pattern

    def sub(self, replacement: bytes, message: bytes) -> bytes:
        if replacement != b"..":
            return ORIGINAL_PERIOD_REGEX.sub(replacement, message)
        stuffed = message.replace(b"\n.", b"\n..")
        return b"." + stuffed if stuffed.startswith(b".") else stuffed


def install() -> None:
    _protocol.normalize_message_line_endings = normalize_message_line_endings
    _protocol.PERIOD_REGEX = PeriodStuffer()  # type: ignore[assignment]
