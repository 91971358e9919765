"""Every SMTP reply the gateway gives, with its RFC 3463 enhanced status code.

The reply code is part of each name (as aiosmtpd's ``S250_OK``) so that a reader of
``handle_DATA`` sees what the sender will see. ``tests/qa/test_replies.py`` checks that every
name agrees with its code and that every enhanced code's class matches the reply class.

This module does not decide anything; it only names replies.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply: ``code``, RFC 3463 ``enhanced`` status and human ``text``."""

    code: int
    enhanced: str
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.enhanced} {self.text}"

    def with_text(self, text: str) -> Reply:
        """The same code with another text (used to carry a queue id or a downstream reply)."""
        return Reply(self.code, self.enhanced, text)

    @property
    def is_success(self) -> bool:
        return 200 <= self.code < 300

    @property
    def is_transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        return 500 <= self.code < 600


# 2xx
R250_OK = Reply(250, "2.0.0", "OK")
R250_SENDER_OK = Reply(250, "2.1.0", "Sender OK")
R250_RECIPIENT_OK = Reply(250, "2.1.5", "Recipient OK")
R250_DELIVERED = Reply(250, "2.0.0", "Delivered")
R250_QUARANTINED = Reply(250, "2.0.0", "Accepted and held for review")
R250_XFORWARD_OK = Reply(250, "2.0.0", "XFORWARD OK")
R221_BYE = Reply(221, "2.0.0", "Bye")

# 4xx: the sender must keep the message and retry.
R421_TOO_MANY_SESSIONS = Reply(421, "4.3.2", "Too many concurrent sessions, try again later")
R421_SHUTTING_DOWN = Reply(421, "4.3.2", "Gateway shutting down, try again later")
R421_TOO_MANY_CLIENT_SESSIONS = Reply(
    421, "4.7.0", "Too many concurrent sessions from your address, try again later"
)
R421_TOO_MANY_COMMANDS = Reply(421, "4.7.0", "Too many commands in this session")
R421_NO_PROGRESS = Reply(
    421, "4.7.0", "Too many commands without a completed message, closing connection"
)
R421_TOO_MANY_UNKNOWN_COMMANDS = Reply(
    421, "4.7.0", "Too many unrecognized commands, closing connection"
)
R421_IDLE_TIMEOUT = Reply(421, "4.4.2", "Idle timeout, closing connection")
R421_IDLE_TIMEOUT_BEFORE_MAIL = Reply(421, "4.4.2", "Idle timeout before MAIL, closing connection")
R451_INTERNAL = Reply(451, "4.3.0", "Temporary failure, try again later")
R451_DOWNSTREAM_UNAVAILABLE = Reply(451, "4.4.1", "Downstream server unavailable, try again later")
R451_DOWNSTREAM_TEMPFAIL = Reply(451, "4.4.0", "Downstream server deferred the message")
R451_WORKER_FAILED = Reply(451, "4.3.0", "Content inspection failed, try again later")
R451_WORKER_TIMEOUT = Reply(451, "4.4.7", "Content inspection timed out, try again later")
R451_STORE_UNAVAILABLE = Reply(451, "4.3.0", "Quarantine store unavailable, try again later")
R451_SHUTTING_DOWN = Reply(451, "4.3.2", "Gateway shutting down, try again later")
R452_TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients")
R454_TLS_UNAVAILABLE = Reply(454, "4.7.0", "TLS not available")

# 5xx: permanent; the sender bounces.
R500_LINE_TOO_LONG = Reply(500, "5.5.2", "Line too long (RFC 5321 section 4.5.3.1.6)")
R500_SYNTAX = Reply(500, "5.5.2", "Syntax error")
R500_UNKNOWN_COMMAND = Reply(500, "5.5.1", "Command not recognized")
R501_BAD_ARGUMENT = Reply(501, "5.5.2", "Syntax error in command argument")
R501_BAD_SENDER = Reply(501, "5.1.7", "Bad sender address syntax")
R501_BAD_RECIPIENT = Reply(501, "5.1.3", "Bad recipient address syntax")
R501_SYNTAX_PARAMS = Reply(501, "5.5.4", "Syntax error in parameters or arguments")
R501_BAD_XFORWARD = Reply(501, "5.5.4", "Bad XFORWARD attribute")
R503_BAD_SEQUENCE = Reply(503, "5.5.1", "Bad sequence of commands")
R530_STARTTLS_REQUIRED = Reply(530, "5.7.0", "Must issue a STARTTLS command first")
R550_XFORWARD_DENIED = Reply(550, "5.7.0", "XFORWARD not permitted from this client")
R552_MESSAGE_TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
R553_BAD_SENDER = Reply(553, "5.1.7", "Malformed sender address")
R553_BAD_RECIPIENT = Reply(553, "5.1.3", "Malformed recipient address")
R553_SMTPUTF8_REQUIRED = Reply(553, "5.6.7", "Non-ASCII address requires SMTPUTF8")
R554_RELAY_DENIED = Reply(554, "5.7.1", "Relay access denied")
R550_REQUESTS_INTERNAL_ONLY = Reply(
    550, "5.7.1", "The request address accepts mail from the internal network only"
)
R554_SMTPUTF8_UNSUPPORTED = Reply(
    554, "5.6.7", "Message requires SMTPUTF8, which the downstream server does not support"
)
R550_POLICY_REJECT = Reply(550, "5.7.1", "Message rejected by content policy")
R554_UNPARSEABLE = Reply(554, "5.6.0", "Message could not be parsed and was not accepted")
R555_PARAM_NOT_RECOGNIZED = Reply(555, "5.5.4", "Parameter not recognized or not implemented")

# aiosmtpd sends a few replies itself, without enhanced codes. ``smtp.GatewaySMTP.push``
# rewrites them to these so that every reply the gateway sends carries one (RFC 2034).
AIOSMTPD_REPLACEMENTS: dict[str, Reply] = {
    "500 Line too long (see RFC5321 4.5.3.1.6)": R500_LINE_TOO_LONG,
    "500 Command line too long": Reply(500, "5.5.2", "Command line too long"),
    "552 Error: Too much mail data": R552_MESSAGE_TOO_BIG,
    "552 Error: message size exceeds fixed maximum message size": R552_MESSAGE_TOO_BIG,
    "500 Error: bad syntax": R500_SYNTAX,
    "503 Error: need MAIL command": R503_BAD_SEQUENCE.with_text("Need MAIL command"),
    "503 Error: need RCPT command": R503_BAD_SEQUENCE.with_text("Need RCPT command"),
    "503 Error: nested MAIL command": R503_BAD_SEQUENCE.with_text("Nested MAIL command"),
    "503 Error: send HELO first": R503_BAD_SEQUENCE.with_text("Send HELO/EHLO first"),
    "530 Must issue a STARTTLS command first": R530_STARTTLS_REQUIRED,
    "554 Command refused due to lack of security": Reply(
        554, "5.7.0", "Command refused due to lack of security"
    ),
    "500 Error: strict ASCII mode": Reply(500, "5.6.7", "Non-ASCII input requires SMTPUTF8"),
    "221 Bye": R221_BYE,
    # aiosmtpd closes the connection after this one: RFC 5321 section 3.8 wants a 421 then.
    "502 5.5.1 Too many unrecognized commands, goodbye.": R421_TOO_MANY_UNKNOWN_COMMANDS,
    "250 OK": R250_OK,
}


def downstream_reply(code: int, text: str) -> Reply:
    """A reply carrying the downstream server's own code and text to our sender.

    The downstream text usually starts with its enhanced code ("5.1.1 User unknown"); we keep it
    when present and well-formed, else derive one from the reply class (RFC 3463 section 3.1).
    A multi-line reply (aiosmtplib joins its lines with LF) becomes one line, the repeated
    enhanced codes dropped: a line break in our reply would end it early and leave the rest to
    be read as the answer to the sender's next command. Other controls become "?".
    """
    lines = [line.strip() for line in text.split("\n")]
    first, _, rest = lines[0].partition(" ")
    parts = first.split(".")
    if (
        len(parts) == 3
        and all(p.isdigit() for p in parts)
        and parts[0] in "245"
        and parts[0] == str(code)[0]
    ):
        more = [line.removeprefix(first).strip() for line in lines[1:]]
        return Reply(code, first, _one_line(" ".join([rest.strip(), *more])) or "Downstream reply")
    return Reply(code, f"{str(code)[0]}.0.0", _one_line(" ".join(lines)) or "Downstream reply")


def _one_line(text: str) -> str:
    return "".join(char if char.isprintable() else "?" for char in text).strip()
