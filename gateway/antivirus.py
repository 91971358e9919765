"""Known-malware scanning beside CDR: ClamAV's clamd (INSTREAM) and ICAP (RFC 3507) engines.

CDR removes active content from the formats it rebuilds; it does not recognise known malware
in what it keeps (text, images) or holds. With ``antivirus.enabled``, the original bytes of
every leaf of the MIME tree (after its transfer encoding is undone, before anything is
rebuilt; parts of attached messages, hidden and uuencoded parts included) and of every member
the ZIP sanitizer extracts are sent to each configured engine:

- **clamd** (Debian ``clamav-daemon``): ``INSTREAM`` over a Unix or TCP socket, through
  clamdpy (MIT, maintained; clamav-client is GPL-2.0, which an Apache-2.0 project cannot
  ship with). clamd unpacks archives and Office files itself as well;
- **ICAP**: ``RESPMOD`` (RFC 3507 section 4.9) with a preview (section 4.5) and ``Allow:
  204`` (section 4.6), so a clean object costs one round trip of at most the preview size
  when the server decides early, for the commercial engines municipalities own. No
  maintained Python ICAP client exists (icapclient: a C extension, last release 2015), so the
  client is here: one request per object on its own connection, nothing pipelined.

A scan says one of three things (``ScanResult``): infected (signature names, ``VIRUS_FOUND``;
``gateway.inspect`` holds the whole message with the name as the reason), clean, or that it
could not be done (``VIRUS_SCAN_UNAVAILABLE``: engine down, killed mid-scan, timeout, a reply
that is not the protocol; the configured ``on_unavailable`` then tempfails the message, or
holds it). An object larger than ``max_size`` is not sent (``VIRUS_SCAN_SKIPPED``, recorded,
the CDR still applies; a policy rule may hold on that finding).

What this module does not do: it never decides a verdict (``gateway.inspect`` does), never
retries (the sender's retry after 451 is the retry), and never sends a file name or any
other untrusted text to an engine: an ICAP request names the part id only.
"""

from __future__ import annotations

import io
import re
import socket
import time
import urllib.parse
from dataclasses import dataclass

import clamdpy
import clamdpy.exceptions

from gateway.report import Finding

FINDING_CODES: tuple[str, ...] = (
    "VIRUS_FOUND",  # an engine named a signature: the message is held, the name is the reason
    "VIRUS_SCAN_UNAVAILABLE",  # an engine could not scan (down, timeout, protocol): on_unavailable
    "VIRUS_SCAN_SKIPPED",  # larger than antivirus.max_size: not sent to the engines
)

# clamd's chunks: big enough that a 2 MB part is a handful of writes, far below clamd's
# StreamMaxLength (25 MB by default).
_CLAMD_CHUNK = 256 * 1024
_ICAP_CHUNK = 64 * 1024
_MAX_ICAP_HEADER = 64 * 1024  # an ICAP reply head longer than this is not an ICAP reply


class ScanUnavailable(Exception):
    """An engine could not give an answer for this object (the code says which engine)."""


@dataclass(frozen=True, slots=True)
class ScanTarget:
    """Where and how to scan: plain data, built once from ``antivirus`` in the configuration,
    inherited by sanitizer children through ``fork`` (``SanitizeOptions.antivirus``).

    ``clamd``: ``unix:/path`` or ``tcp:HOST:PORT``; ``icap``: ``icap://HOST:PORT/SERVICE``."""

    clamd: str | None = None
    icap: str | None = None
    timeout: float = 30.0
    max_size: int = 25 * 1024 * 1024
    icap_preview: int = 4096


@dataclass(frozen=True, slots=True)
class ScanResult:
    """``signatures``: what the engines found (``"clamd: Win.Trojan.X"``); ``unavailable``:
    why an engine gave no answer ("" when all did); ``skipped``: why nothing was sent."""

    signatures: tuple[str, ...] = ()
    unavailable: str = ""
    skipped: str = ""

    @property
    def infected(self) -> bool:
        return bool(self.signatures)


def scan(target: ScanTarget, data: bytes, part_id: str, deadline: float = 0.0) -> ScanResult:
    """Scan ``data`` with every engine of ``target`` within ``target.timeout`` seconds (and
    before ``deadline``, a ``time.monotonic()`` value, when given). Never raises for an
    engine's failure: that is ``ScanResult.unavailable``. A hit by the first engine still
    lets the second scan (both names are reported)."""
    if len(data) > target.max_size:
        return ScanResult(skipped=f"{len(data)} bytes > antivirus.max_size {target.max_size}")
    signatures: list[str] = []
    engines = [("clamd", target.clamd, _clamd), ("icap", target.icap, _icap)]
    for name, address, engine in engines:
        if not address:
            continue
        timeout = target.timeout
        if deadline:
            timeout = min(timeout, deadline - time.monotonic())
        if timeout <= 0:
            return ScanResult(tuple(signatures), f"{name}: the message's time budget is spent")
        try:
            found = engine(address, data, part_id, timeout, target.icap_preview)
        except ScanUnavailable as exc:
            return ScanResult(tuple(signatures), f"{name}: {exc}"[:300])
        signatures.extend(f"{name}: {signature}" for signature in found)
    return ScanResult(tuple(signatures))


def findings(target: ScanTarget | None, data: bytes, part_id: str) -> list[Finding]:
    """``scan`` as findings, for the archive sanitizer's members (``[]`` when clean or off)."""
    if target is None:
        return []
    result = scan(target, data, part_id)
    return result_findings(result, part_id)


def result_findings(result: ScanResult, part_id: str) -> list[Finding]:
    out = [Finding("VIRUS_FOUND", part_id, signature[:200]) for signature in result.signatures]
    if result.unavailable:
        out.append(Finding("VIRUS_SCAN_UNAVAILABLE", part_id, result.unavailable))
    if result.skipped:
        out.append(Finding("VIRUS_SCAN_SKIPPED", part_id, result.skipped))
    return out


# --- clamd ---------------------------------------------------------------------------------


def _clamd_socket(address: str, timeout: float) -> clamdpy.ClamdNetworkSocket:
    kind, _, rest = address.partition(":")
    if kind == "unix":
        return clamdpy.ClamdUnixSocket(rest, timeout=timeout, max_chunk_size=_CLAMD_CHUNK)
    host, _, port = rest.rpartition(":")
    return clamdpy.ClamdNetworkSocket(
        host.strip("[]"), int(port), timeout=timeout, max_chunk_size=_CLAMD_CHUNK
    )


def _clamd(address: str, data: bytes, part_id: str, timeout: float, preview: int) -> list[str]:
    """Signature names clamd found in ``data`` (``[]`` when clean). clamdpy bounds each socket
    operation by ``timeout``; a 2 MB object is eight writes and one read."""
    try:
        result = _clamd_socket(address, timeout).instream(io.BytesIO(data))
    except clamdpy.exceptions.BufferTooLongError as exc:
        raise ScanUnavailable(f"larger than clamd's StreamMaxLength ({exc.error})") from None
    except clamdpy.exceptions.ClamdException as exc:
        detail = getattr(exc, "msg", "") or getattr(exc, "error", "") or type(exc).__name__
        raise ScanUnavailable(str(detail)) from None
    except (OSError, ValueError) as exc:  # EPIPE/ECONNRESET when clamd dies mid-stream
        raise ScanUnavailable(f"{type(exc).__name__}: {exc}") from None
    if result.status == "FOUND":
        return [result.reason or "unnamed signature"]
    if result.status == "OK":
        return []
    raise ScanUnavailable(f"clamd error: {result.reason}")


# --- ICAP (RFC 3507) -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IcapService:
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> IcapService:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "icap" or not parts.hostname:
            raise ValueError("expected icap://HOST[:PORT]/SERVICE")
        return cls(parts.hostname, parts.port or 1344, parts.path or "/")

    @property
    def uri(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"icap://{host}:{self.port}{self.path}"


# The names engines give in an ICAP reply: c-icap and most engines (draft-stecher-icap-subid),
# Symantec/McAfee/Kaspersky's X-Virus-ID, and X-Violations-Found (count, then name lines).
_THREAT = re.compile(r"Threat=([^;]+)", re.IGNORECASE)


def _icap(address: str, data: bytes, part_id: str, timeout: float, preview: int) -> list[str]:
    """Signature names the ICAP service found (``[]`` when it answered 204, or 200 with the
    object unchanged). RESPMOD with a ``preview``-byte preview and ``Allow: 204``; one
    connection per object, closed after the reply."""
    try:
        service = IcapService.parse(address)
    except ValueError as exc:
        raise ScanUnavailable(str(exc)) from None
    deadline = time.monotonic() + timeout
    http_request = f"GET /{part_id} HTTP/1.1\r\nHost: mugaika.invalid\r\n\r\n".encode("ascii")
    http_response = (
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode("ascii")
    preview = max(0, min(preview, len(data)))
    head = (
        f"RESPMOD {service.uri} ICAP/1.0\r\n"
        f"Host: {service.host}\r\n"
        "Allow: 204\r\n"
        f"Preview: {preview}\r\n"
        "Connection: close\r\n"
        f"Encapsulated: req-hdr=0, res-hdr={len(http_request)}, "
        f"res-body={len(http_request) + len(http_response)}\r\n\r\n"
    ).encode("ascii")
    try:
        with socket.create_connection((service.host, service.port), timeout=timeout) as sock:
            reader = _Reader(sock, deadline)
            first = data[:preview]
            whole = preview == len(data)
            # RFC 3507 4.5: "0; ieof" ends a preview that already holds the whole object.
            sock.sendall(head + http_request + http_response + _chunks(first, ieof=whole))
            status, headers = reader.reply_head()
            unchanged = False
            if status == 100:
                if whole:
                    raise ScanUnavailable("ICAP 100 Continue after the whole object")
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                sock.sendall(_chunks(data[preview:], ieof=False))
                status, headers = reader.reply_head()
            unchanged = status == 200 and _icap_unchanged(reader, headers, data)
    except TimeoutError:
        raise ScanUnavailable(f"no answer from {service.uri} within {timeout:.1f} s") from None
    except OSError as exc:
        raise ScanUnavailable(f"{service.uri}: {type(exc).__name__}: {exc}") from None
    if status == 204:
        return []
    if status == 200:
        # 200 is "here is the response to use": a block page when the engine found
        # something, or the object itself from a server that does not answer 204 (c-icap's
        # echo service does that). Only the latter, byte for byte, is clean.
        return [] if unchanged and not _named_threat(headers) else [_icap_threat(headers)]
    raise ScanUnavailable(f"{service.uri} answered ICAP {status}")


def _named_threat(headers: dict[str, str]) -> bool:
    return any(headers.get(h) for h in ("x-infection-found", "x-virus-id", "x-virus-name")) or (
        headers.get("x-violations-found", "0").split("\n", 1)[0].strip() not in ("", "0")
    )


def _icap_unchanged(reader: _Reader, headers: dict[str, str], data: bytes) -> bool:
    """Whether a 200 reply encapsulates an HTTP 2xx response whose body is ``data`` exactly.
    Reads at most the size of ``data`` plus a little: anything longer is a changed object."""
    offsets = dict(
        (name.strip().lower(), value.strip())
        for name, _, value in (
            item.partition("=") for item in headers.get("encapsulated", "").split(",")
        )
    )
    if "res-hdr" not in offsets or "res-body" not in offsets:
        return False
    try:
        if int(offsets["res-hdr"]):
            return False  # a req-hdr comes back first: not the response we sent
        head = reader.read_exact(int(offsets["res-body"]))
    except ValueError:
        return False
    if re.match(rb"HTTP/1\.[01] 2\d\d ", head) is None:
        return False
    return reader.read_chunked(len(data) + 1) == data


def _icap_threat(headers: dict[str, str]) -> str:
    """The signature name of an ICAP 200 (the service replaced the object): from the headers
    engines use; without one, the object was still blocked, so it is a hit all the same."""
    found = headers.get("x-infection-found", "")
    match = _THREAT.search(found)
    if match:
        return match.group(1).strip()
    for name in ("x-virus-id", "x-virus-name"):
        if headers.get(name):
            return headers[name].strip()
    lines = [line.strip() for line in headers.get("x-violations-found", "").split("\n")]
    if len(lines) >= 3 and lines[2]:
        return lines[2]
    return "blocked by the ICAP service (no name given)"


def _chunks(data: bytes, *, ieof: bool) -> bytes:
    out = [
        b"%x\r\n%s\r\n" % (len(data[i : i + _ICAP_CHUNK]), data[i : i + _ICAP_CHUNK])
        for i in range(0, len(data), _ICAP_CHUNK)
    ]
    out.append(b"0; ieof\r\n\r\n" if ieof else b"0\r\n\r\n")
    return b"".join(out)


class _Reader:
    """ICAP reply heads from one connection, bounded in size and by the deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.buffer = b""

    def _more(self) -> None:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self.sock.settimeout(remaining)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ScanUnavailable("ICAP connection closed before the reply ended")
        self.buffer += chunk

    def read_exact(self, count: int) -> bytes:
        if not 0 <= count <= _MAX_ICAP_HEADER:
            raise ValueError(count)
        while len(self.buffer) < count:
            self._more()
        out, self.buffer = self.buffer[:count], self.buffer[count:]
        return out

    def read_chunked(self, limit: int) -> bytes | None:
        """An HTTP/1.1 chunked body (RFC 9112 section 7.1), or None when it is longer than
        ``limit`` or malformed."""
        body = b""
        while True:
            while b"\r\n" not in self.buffer:
                if len(self.buffer) > 1024:
                    return None
                self._more()
            line, _, self.buffer = self.buffer.partition(b"\r\n")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                return None
            if size == 0:
                return body
            if len(body) + size > limit:
                return None
            while len(self.buffer) < size + 2:
                self._more()
            body += self.buffer[:size]
            self.buffer = self.buffer[size + 2 :]

    def reply_head(self) -> tuple[int, dict[str, str]]:
        while b"\r\n\r\n" not in self.buffer:
            if len(self.buffer) > _MAX_ICAP_HEADER:
                raise ScanUnavailable("ICAP reply head too long")
            self._more()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        match = re.fullmatch(r"ICAP/1\.0 (\d{3})( .*)?", lines[0])
        if match is None:
            raise ScanUnavailable(f"not an ICAP reply: {lines[0][:80]!r}")
        headers: dict[str, str] = {}
        last = ""
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and last:  # a continuation line (X-Violations-Found)
                headers[last] += "\n" + line.strip()
                continue
            name, _, value = line.partition(":")
            last = name.strip().lower()
            headers[last] = value.strip()
        return int(match.group(1)), headers
