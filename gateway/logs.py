"""Logging: named loggers by purpose, one structured line per message, never a body.

Loggers: ``mugaika.smtp`` (sessions), ``mugaika.verdict`` (one line per message),
``mugaika.worker`` (process lifecycle), ``mugaika.delivery``, ``mugaika.quarantine``,
``mugaika.audit`` (admin actions). Lines are ``key=value`` pairs, or JSON objects with
``logging.json: true``. Every value that came from the network passes through
``replace_control_chars`` first, so a file name with RTLO or a header with CR/LF cannot forge
log lines or reorder what an admin reads (dangerzone ``util.replace_control_chars``).
"""

from __future__ import annotations

import json
import logging
import sys
import time
import unicodedata
from collections.abc import Mapping
from typing import Any

smtp_log = logging.getLogger("mugaika.smtp")
verdict_log = logging.getLogger("mugaika.verdict")
worker_log = logging.getLogger("mugaika.worker")
delivery_log = logging.getLogger("mugaika.delivery")
quarantine_log = logging.getLogger("mugaika.quarantine")
audit_log = logging.getLogger("mugaika.audit")


def replace_control_chars(untrusted: str, keep_newlines: bool = False) -> str:
    """Replace control and bidi-format characters with U+FFFD; keep printable text as is.

    Covers C0/C1 controls, DEL, and Unicode format characters (category Cf: RLO/LRO/RLE,
    isolates, zero-width joiners), which can make ``evil\u202egnp.exe`` display as
    ``evilexe.png``.
    """
    out = []
    for char in untrusted:
        if keep_newlines and char == "\n":
            out.append(char)
        elif unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn") and char != " ":
            out.append("\ufffd")
        else:
            out.append(char)
    return "".join(out)


def _format_value(value: Any) -> str:
    text = replace_control_chars(str(value))
    if text == "" or any(c in text for c in ' "='):
        return json.dumps(text, ensure_ascii=False)
    return text


class StructuredFormatter(logging.Formatter):
    """``2026-11-25T20:43:14Z mugaika.verdict INFO queue_id=... verdict=deliver``.

    Fields come from ``extra={"fields": {...}}``; the message text is kept for free-form lines.
    """

    def __init__(self, json_lines: bool) -> None:
        super().__init__()
        self.json_lines = json_lines

    def format(self, record: logging.LogRecord) -> str:
        fields: Mapping[str, Any] = getattr(record, "fields", {}) or {}
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        message = replace_control_chars(record.getMessage())
        if self.json_lines:
            data: dict[str, Any] = {
                "ts": stamp,
                "logger": record.name,
                "level": record.levelname,
            }
            if message:
                data["msg"] = message
            data.update({k: _json_safe(v) for k, v in fields.items()})
            if record.exc_info:
                data["exc"] = self.formatException(record.exc_info)
            return json.dumps(data, ensure_ascii=False, sort_keys=False)
        parts = [stamp, record.name, record.levelname]
        if message:
            parts.append(message)
        parts.extend(f"{k}={_format_value(v)}" for k, v in fields.items())
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _json_safe(value: Any) -> Any:
    if isinstance(value, str):
        return replace_control_chars(value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return replace_control_chars(str(value))


def configure(level: str = "INFO", json_lines: bool = False) -> None:
    """Send mugaika.* to stderr in the chosen format; quieten chatty libraries."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(StructuredFormatter(json_lines))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("mugaika").setLevel(level)
    # aiosmtpd logs every command at INFO, including raw arguments: too much, and it would
    # put addresses in the log twice. Our own session log covers what operators need.
    logging.getLogger("mail.log").setLevel(logging.WARNING)


def log_fields(logger: logging.Logger, level: int, message: str, **fields: Any) -> None:
    """Log one structured line; ``fields`` become ``key=value`` pairs (or JSON keys)."""
    logger.log(level, message, extra={"fields": fields})
