"""A real DNS server on 127.0.0.1 (UDP, port 0) for testing the resolver: answers from a
zone dict, NXDOMAIN for unknown names, SERVFAIL or silence for names told to fail."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


class DnsServer:
    def __init__(
        self,
        zone: Mapping[tuple[str, str], Sequence[str]],
        ttl: int = 60,
        silent: Iterable[str] = (),
        servfail: Iterable[str] = (),
    ) -> None:
        self.zone = {(n.lower().rstrip("."), t.upper()): list(v) for (n, t), v in zone.items()}
        self.ttl = ttl
        self.silent = {n.lower() for n in silent}
        self.servfail = {n.lower() for n in servfail}
        self.queries: list[tuple[str, str]] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> DnsServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            query = dns.message.from_wire(data)
            question = query.question[0]
            name = question.name.to_text(omit_final_dot=True).lower()
            rdtype = dns.rdatatype.to_text(question.rdtype)
            self.queries.append((name, rdtype))
            if name in self.silent:
                continue
            response = dns.message.make_response(query)
            response.flags |= dns.flags.AA
            if name in self.servfail:
                response.set_rcode(dns.rcode.SERVFAIL)
            elif (name, rdtype) in self.zone:
                values = self.zone[(name, rdtype)]
                if rdtype == "TXT":
                    # One record of character-strings of at most 255 octets (RFC 1035 3.3.14;
                    # a 2048-bit DKIM key record is longer than one).
                    values = [
                        " ".join(
                            '"' + v[i : i + 255].replace('"', '\\"') + '"'
                            for i in range(0, max(len(v), 1), 255)
                        )
                        for v in values
                    ]
                response.answer.append(
                    dns.rrset.from_text_list(question.name, self.ttl, "IN", rdtype, values)
                )
            elif not any(n == name for n, _ in self.zone):
                response.set_rcode(dns.rcode.NXDOMAIN)
            self._sock.sendto(response.to_wire(), peer)
