"""The ICAP (RFC 3507) client: RESPMOD with preview and 204.

Against Debian's c-icap with its virus_scan module backed by the private clamd (the engine
municipalities' commercial products stand in for), over real SMTP; and against a small
scripted ICAP server that records what the client sent, for the protocol's corners: the
preview and ``ieof``, ``100 Continue``, a 200 that names the threat in ``X-Virus-ID``, a
block page without a name, a reply that is not ICAP, and a server that never answers.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway import antivirus
from tests.antivirus.conftest import ScanningChain
from tests.helpers import hostile
from tests.helpers.clamd import EICAR, EICAR_NAME, TEST_MARKER, PrivateClamd
from tests.helpers.icap import C_ICAP_MISSING, PrivateCIcap, c_icap_installed
from tests.helpers.redteam import plain, with_attachment

pytestmark = pytest.mark.slow

needs_c_icap = pytest.mark.skipif(not c_icap_installed(), reason=C_ICAP_MISSING)


@pytest.fixture(scope="module")
def c_icap(
    tmp_path_factory: pytest.TempPathFactory, clamd_server: PrivateClamd
) -> Iterator[PrivateCIcap]:
    if not c_icap_installed():
        pytest.skip(C_ICAP_MISSING)
    with PrivateCIcap(tmp_path_factory.mktemp("c-icap"), clamd_server) as server:
        yield server


@needs_c_icap
def test_c_icap_virus_scan_finds_eicar_over_smtp(tmp_path: Path, c_icap: PrivateCIcap):
    overrides = {
        "antivirus.enabled": True,
        "antivirus.clamd": None,
        "antivirus.icap": c_icap.url("avscan"),
        "antivirus.icap_preview": 1024,
    }
    with ScanningChain(tmp_path, overrides) as chain:
        held = chain.send(with_attachment("eicar.com.txt", EICAR, content_type="text/plain"))
        clean = chain.send(
            with_attachment(
                "報告書.docx",
                hostile.benign_docx(paragraphs=400),  # larger than the preview: 100 Continue
                content_type="application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            )
        )
    assert held.code == 250
    assert held.delivered == []
    [item] = held.held
    details = [f["detail"] for f in chain.report_of(item)["findings"] if f["code"] == "VIRUS_FOUND"]
    assert details == [f"icap: {EICAR_NAME}"] * len(details)
    assert details
    assert clean.code == 250
    assert not clean.was_held
    assert len(clean.delivered) == 1


@needs_c_icap
@pytest.mark.parametrize("size", [10, 1024, 300_000])
def test_c_icap_answers_clean_and_infected_at_every_size(c_icap: PrivateCIcap, size: int):
    target = antivirus.ScanTarget(icap=c_icap.url("avscan"), icap_preview=1024)
    clean = (b"0123456789abcdef" * (size // 16 + 1))[:size]
    assert antivirus.scan(target, clean, "1") == antivirus.ScanResult()
    infected = antivirus.scan(target, clean + TEST_MARKER, "1")
    assert infected.signatures == ("icap: Mugaika.Test.Marker.UNOFFICIAL",)


@needs_c_icap
def test_echo_service_answering_200_unchanged_is_clean(c_icap: PrivateCIcap):
    """c-icap's echo service may answer 200 with the object itself instead of 204."""
    target = antivirus.ScanTarget(icap=c_icap.url("echo"), icap_preview=1024)
    for data in (b"small", b"B" * 300_000, EICAR):
        assert antivirus.scan(target, data, "1") == antivirus.ScanResult()


# --- a scripted ICAP server -----------------------------------------------------------------


class ScriptedIcap:
    """Accepts one connection at a time, records the bytes of each request head and preview,
    and answers with ``script(recorded) -> (first reply, reply after the rest)``."""

    def __init__(self, script: Callable[[bytes], tuple[bytes, bytes]]) -> None:
        self.script = script
        self.requests: list[bytes] = []
        self.rest: list[bytes] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"icap://127.0.0.1:{self.server.getsockname()[1]}/scan"
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> ScriptedIcap:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    request = _read_until(conn, (b"0\r\n\r\n", b"0; ieof\r\n\r\n"))
                    self.requests.append(request)
                    first, after = self.script(request)
                    if first:
                        conn.sendall(first)
                    if first.startswith(b"ICAP/1.0 100"):
                        self.rest.append(_read_until(conn, (b"0\r\n\r\n",)))
                        conn.sendall(after)
                except OSError:
                    pass


def _read_until(conn: socket.socket, ends: tuple[bytes, ...]) -> bytes:
    data = b""
    while not data.endswith(ends):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


NO_CONTENT = b"ICAP/1.0 204 No Content\r\nISTag: x\r\n\r\n"
CONTINUE = b"ICAP/1.0 100 Continue\r\n\r\n"


def test_preview_then_continue_then_204():
    data = b"x" * 5000
    with ScriptedIcap(lambda request: (CONTINUE, NO_CONTENT)) as server:
        result = antivirus.scan(
            antivirus.ScanTarget(icap=server.url, icap_preview=100), data, "1.2"
        )
    assert result == antivirus.ScanResult()
    [request] = server.requests
    assert request.startswith(b"RESPMOD " + server.url.encode() + b" ICAP/1.0\r\n")
    assert b"\r\nAllow: 204\r\n" in request
    assert b"\r\nPreview: 100\r\n" in request
    assert request.endswith(b"\r\n64\r\n" + b"x" * 100 + b"\r\n0\r\n\r\n")  # 0x64 = 100 bytes
    assert b"GET /1.2 HTTP/1.1" in request  # the part id, never a file name
    [rest] = server.rest
    assert rest == b"%x\r\n" % 4900 + b"x" * 4900 + b"\r\n0\r\n\r\n"


def test_an_object_within_the_preview_ends_with_ieof_and_needs_no_second_round():
    with ScriptedIcap(lambda request: (NO_CONTENT, b"")) as server:
        result = antivirus.scan(
            antivirus.ScanTarget(icap=server.url, icap_preview=4096), b"hi", "1"
        )
    assert result == antivirus.ScanResult()
    assert server.requests[0].endswith(b"2\r\nhi\r\n0; ieof\r\n\r\n")
    assert server.rest == []


def test_200_with_x_virus_id_names_the_threat():
    reply = (
        b"ICAP/1.0 200 OK\r\nX-Virus-ID: W32/Test.Vendor\r\n"
        b"Encapsulated: res-hdr=0, res-body=19\r\n\r\nHTTP/1.1 403 No\r\n\r\n0\r\n\r\n"
    )
    with ScriptedIcap(lambda request: (reply, b"")) as server:
        result = antivirus.scan(antivirus.ScanTarget(icap=server.url), b"data", "1")
    assert result.signatures == ("icap: W32/Test.Vendor",)


def test_a_block_page_without_a_name_is_still_a_hit():
    page = b"<html>blocked</html>"
    http = b"HTTP/1.1 403 Forbidden\r\n\r\n"
    reply = (
        b"ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, res-body=%d\r\n\r\n" % len(http)
        + http
        + b"%x\r\n" % len(page)
        + page
        + b"\r\n0\r\n\r\n"
    )
    with ScriptedIcap(lambda request: (reply, b"")) as server:
        result = antivirus.scan(antivirus.ScanTarget(icap=server.url), b"data", "1")
    assert result.infected
    assert "no name given" in result.signatures[0]


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (b"HTTP/1.1 200 OK\r\n\r\n", "not an ICAP reply"),
        (b"ICAP/1.0 500 Server Error\r\n\r\n", "answered ICAP 500"),
        (b"", "closed before"),
    ],
    ids=["not-icap", "server-error", "closed"],
)
def test_replies_that_are_not_an_answer_make_the_scan_unavailable(reply: bytes, expected: str):
    with ScriptedIcap(lambda request: (reply, b"")) as server:
        result = antivirus.scan(antivirus.ScanTarget(icap=server.url), b"data", "1")
    assert not result.infected
    assert expected in result.unavailable


def test_a_server_that_never_answers_times_out():
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"icap://127.0.0.1:{silent.getsockname()[1]}/scan"
        result = antivirus.scan(antivirus.ScanTarget(icap=url, timeout=0.5), b"data", "1")
    assert "within 0.5 s" in result.unavailable


def test_icap_server_down_tempfails_the_message(tmp_path: Path):
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed again below: nothing listens there
    overrides = {
        "antivirus.enabled": True,
        "antivirus.clamd": None,
        "antivirus.icap": f"icap://127.0.0.1:{port}/avscan",
    }
    with ScanningChain(tmp_path, overrides) as chain:
        outcome = chain.send(plain("本文"))
    assert outcome.code == 451
    assert outcome.delivered == []
    assert outcome.held == []
