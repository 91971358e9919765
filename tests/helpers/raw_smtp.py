"""A byte-exact SMTP client for tests that must send what ``smtplib`` refuses to send.

``smtplib`` (3.11+) raises on CR or LF inside a command, and encodes arguments itself; tests of
the SMTP boundary need bare CRs, NULs and bytes that are not UTF-8 on the wire, exactly as an
attacker would send them. This client sends the bytes it is given, reads whole replies
(multi-line included) and reports a closed connection as such instead of raising.
"""

from __future__ import annotations

import contextlib
import re
import socket
from dataclasses import dataclass

_REPLY_LINE = re.compile(rb"^([2-5][0-9]{2})([ -])(.*)$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class RawReply:
    """One SMTP reply. ``code`` 0 means the connection closed before a complete reply."""

    code: int
    lines: tuple[bytes, ...]

    @property
    def text(self) -> bytes:
        """The text of the last line (after ``NNN ``), as smtplib's ``docmd`` returns it."""
        return self.lines[-1][4:] if self.lines else b""

    @property
    def closed(self) -> bool:
        return self.code == 0


class MalformedReply(AssertionError):
    """The server sent a line that is not ``NNN[ -]text``: a finding in itself."""


class RawSmtp:
    """``with RawSmtp(port) as client: client.command(b"EHLO x")``; ``source`` binds 127.0.0.x."""

    def __init__(
        self, port: int, host: str = "127.0.0.1", source: str | None = None, timeout: float = 30
    ) -> None:
        self.sock = socket.create_connection(
            (host, port), timeout=timeout, source_address=(source, 0) if source else None
        )
        self._buffer = b""
        self.greeting = self.read_reply()

    def __enter__(self) -> RawSmtp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def _read_line(self) -> bytes | None:
        while b"\n" not in self._buffer:
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            if not chunk:
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        if not line.endswith(b"\r"):
            raise MalformedReply(f"reply line not ended by CRLF: {line!r}")
        return line[:-1]

    def read_reply(self) -> RawReply:
        """Read one whole reply; raise MalformedReply on a line that is not ``NNN[ -]text``."""
        lines: list[bytes] = []
        code = 0
        while True:
            line = self._read_line()
            if line is None:
                return RawReply(0, tuple(lines))
            match = _REPLY_LINE.match(line)
            if match is None or (code and int(match.group(1)) != code):
                raise MalformedReply(f"malformed reply line {line!r} after {lines!r}")
            code = int(match.group(1))
            lines.append(line)
            if match.group(2) == b" ":
                return RawReply(code, tuple(lines))

    def send(self, data: bytes) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.sock.sendall(data)

    def command(self, line: bytes) -> RawReply:
        """Send ``line`` + CRLF and read the reply."""
        self.send(line + b"\r\n")
        return self.read_reply()

    def data(self, message: bytes) -> RawReply:
        """DATA, then the message (dot-stuffed, CRLF-terminated) if the server said 354."""
        reply = self.command(b"DATA")
        if reply.code != 354:
            return reply
        stuffed = re.sub(rb"(?m)^\.", b"..", message)
        if not stuffed.endswith(b"\r\n"):
            stuffed += b"\r\n"
        self.send(stuffed + b".\r\n")
        return self.read_reply()
