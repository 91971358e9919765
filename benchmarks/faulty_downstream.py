"""A downstream SMTP server that fails on purpose, for ``soak.py`` (not part of the package).

    python benchmarks/faulty_downstream.py --port 26200 --accepted accepted.log [--seed 13]
        [--clean]

aiosmtpd, one process. For each transaction it draws (from a seeded generator) whether to:

- answer RCPT with 450 or 550, or drop the connection at RCPT;
- drop the connection at the DATA command, before reading the message;
- after reading the whole message: answer 451 or 554, or drop the connection.

**What a drop means here.** A drop before the final reply is a downstream that did *not*
accept the message: it is discarded, never recorded. That is the only case a gateway can
be held to: RFC 5321 section 6.1 lets the other case (the server kept the message but the
reply was lost) end in a duplicate, and neither the gateway nor this benchmark could tell
it from a loss, so it is not simulated.

Every accepted message's Message-ID is appended to ``--accepted`` (one a line) and flushed
*before* the 250 is sent, so the file is the sink's exact record; each fault's name goes to
``faults.log`` beside it. ``--clean`` turns every
fault off (``soak.py``'s 25 MB step). Prints ``listening`` when ready.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
from pathlib import Path
from typing import IO, Any

from aiosmtpd.smtp import SMTP, Envelope, Session

# Probability of each fault per transaction, in the order the transaction meets them.
RCPT_4XX = 0.02
RCPT_5XX = 0.01
RCPT_DROP = 0.01
DATA_DROP = 0.01  # at the DATA command, before the message is read
FINAL_4XX = 0.03
FINAL_5XX = 0.01
FINAL_DROP = 0.02  # after the message is read, instead of the final reply

_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(<[^>\r\n]*>)", re.IGNORECASE | re.MULTILINE)


def message_id(raw: bytes) -> str:
    """The Message-ID of a message's header section, or "" when it has none."""
    end = raw.find(b"\r\n\r\n")
    found = _MESSAGE_ID.search(raw[: end if end >= 0 else len(raw)])
    return found.group(1).decode("ascii", "replace") if found else ""


class FaultyHandler:
    def __init__(self, accepted: IO[str], faults: IO[str], rng: random.Random, clean: bool) -> None:
        self.accepted = accepted
        self.faults = faults
        self.rng = rng
        self.clean = clean

    def draw(self, probability: float, name: str) -> bool:
        if self.clean or self.rng.random() >= probability:
            return False
        self.faults.write(name + "\n")
        self.faults.flush()
        return True

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.draw(RCPT_DROP, "rcpt-drop"):
            drop(server)
            return "421 4.4.2 dropped"  # never sent: the transport is gone
        if self.draw(RCPT_4XX, "rcpt-4xx"):
            return "450 4.2.1 Mailbox busy, try again"
        if self.draw(RCPT_5XX, "rcpt-5xx"):
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        if self.draw(FINAL_DROP, "final-drop"):
            drop(server)  # read but not kept: this downstream did not accept it
            return "421 4.4.2 dropped"
        if self.draw(FINAL_4XX, "final-4xx"):
            return "451 4.3.0 Temporary failure, try again"
        if self.draw(FINAL_5XX, "final-5xx"):
            return "554 5.6.0 Message refused"
        raw = envelope.original_content or b""
        self.accepted.write(message_id(raw) + "\n")
        self.accepted.flush()  # recorded before the 250 leaves
        return "250 2.0.0 Ok: queued"


def drop(server: SMTP) -> None:
    transport = server.transport
    if isinstance(transport, asyncio.WriteTransport):
        transport.abort()


class FaultySMTP(SMTP):
    async def smtp_DATA(self, arg: str) -> None:  # noqa: N802
        handler: FaultyHandler = self.event_handler
        if (
            self.envelope is not None
            and self.envelope.rcpt_tos
            and handler.draw(DATA_DROP, "data-drop")
        ):
            drop(self)
            return
        await super().smtp_DATA(arg)


async def serve(port: int, accepted: Path, seed: int, clean: bool) -> None:
    loop = asyncio.get_running_loop()
    faults = accepted.with_name("faults.log")
    with accepted.open("a", encoding="ascii") as output, faults.open("a") as fault_log:
        rng = random.Random(seed)  # noqa: S311 (faults, not security)
        handler = FaultyHandler(output, fault_log, rng, clean)

        def factory() -> Any:
            return FaultySMTP(handler, data_size_limit=200 * 1024 * 1024, hostname="sink.test")

        server = await loop.create_server(factory, "127.0.0.1", port)
        print("listening", flush=True)
        async with server:
            await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--accepted", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--clean", action="store_true")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.accepted, args.seed, args.clean))


if __name__ == "__main__":
    main()
