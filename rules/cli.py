"""``mugaika rules check DIR`` and ``mugaika rules test DIR FILE.eml``.

``check`` loads the shipped policies and the files in DIR exactly as the gateway would and
prints one ``file:line: key: problem`` line per error (exit 2), or one OK line (exit 0).
With ``--config`` it also checks that the policies the configuration names exist.

``test`` shows what the policy does with a message: every rule with hit/miss, the verdict,
reasons, tag headers, skipped classes, and the action for each attachment. It reads the
message's headers and MIME parts itself (types by libmagic, as the gateway's detector does);
findings that only the sanitizers would produce can be given with ``--finding``.
Authentication results are ``none`` unless given (``--auth dmarc=fail``) or looked up with
``--verify`` (real DNS: the message is authenticated as the gateway would).

Neither command changes anything; both exit 2 on a configuration or policy error.
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import hashlib
import sys
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.message import Message
from pathlib import Path
from typing import Any

from gateway.config import Config, load_config
from gateway.errors import ConfigError
from gateway.findings import CODES, unknown_pattern_problem
from gateway.logs import replace_control_chars
from gateway.message import ClientInfo, Envelope, Recipient
from gateway.report import AttachmentRecord, Report
from rules.conditions import content_class_of, parse_addresses
from rules.loader import load_policies, reload_policies

HEADERS = ("From", "To", "Cc", "Reply-To", "Subject", "Message-ID", "Date", "Sender")


def add_commands(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Called by ``gateway.cli`` (``COMMAND_MODULES``)."""
    parser = subparsers.add_parser("rules", help="policy tools (check, test)")
    sub = parser.add_subparsers(dest="rules_command", required=True, metavar="ACTION")

    check = sub.add_parser(
        "check",
        parents=[common],
        help="validate the policies in DIR (with the shipped ones) and exit",
        epilog="Exit codes: 0 valid, 2 invalid (one line per problem: file:line: key).",
    )
    check.add_argument("dir", type=Path, metavar="DIR", nargs="?")
    check.set_defaults(func=_check)

    test = sub.add_parser(
        "test",
        parents=[common],
        help="show which rules match FILE.eml and what the policy does",
        epilog="Exit codes: 0 shown, 1 the message cannot be read, 2 invalid policy.",
    )
    test.add_argument("dir", type=Path, metavar="DIR", help="policy directory ('-': none)")
    test.add_argument("file", type=Path, metavar="FILE.eml")
    test.add_argument("--policy", help="policy name (default: by recipient tenant)")
    test.add_argument("--rcpt", action="append", default=[], help="envelope recipient")
    test.add_argument("--mail-from", help="envelope sender (default: the From address)")
    test.add_argument("--client", default="", help="client IP address (XFORWARD ADDR)")
    test.add_argument("--helo", default="", help="client HELO name")
    test.add_argument("--tenant", action="append", default=[], help="an internal domain")
    test.add_argument(
        "--auth", action="append", default=[], metavar="METHOD=RESULT", help="e.g. dmarc=fail"
    )
    test.add_argument("--verify", action="store_true", help="authenticate with real DNS")
    test.add_argument("--finding", action="append", default=[], metavar="CODE")
    test.set_defaults(func=_test)


def _directory(value: Path | None) -> Path | None:
    return None if value is None or str(value) == "-" else value


def _check(args: argparse.Namespace) -> int:
    directory = _directory(args.dir)
    if args.config is not None:
        config = load_config(args.config, environ={})
        if directory is None:
            directory = config.policy.dir
        config = config.model_copy(
            update={"policy": config.policy.model_copy(update={"dir": directory})}
        )
        policy_set = reload_policies(config)
    else:
        policy_set = load_policies(directory)
    where = str(directory) if directory else "shipped policies"
    print(f"{where}: OK ({len(policy_set.policies)} policies: {', '.join(policy_set.names())})")
    return 0


def _decoded(value: str | None) -> str:
    if value is None:
        return ""
    try:
        return str(make_header(decode_header(str(value))))
    except (ValueError, LookupError, UnicodeError, AssertionError, HeaderParseError):
        return str(value)


def _attachments(message: Message) -> list[AttachmentRecord]:
    import magic

    records = []

    def walk(part: Message, part_id: str) -> None:
        if part.is_multipart():
            payload = part.get_payload()
            for index, child in enumerate(payload if isinstance(payload, list) else [], 1):
                walk(child, f"{part_id}.{index}" if part_id else str(index))
            return
        filename = _decoded(part.get_filename())
        disposition = (part.get_content_disposition() or "").lower()
        declared = part.get_content_type()
        if not filename and disposition != "attachment" and declared.startswith("text/"):
            return  # a body part
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        try:
            detected = magic.from_buffer(data[:65536], mime=True) if data else "unknown"
        except Exception:  # libmagic on hostile bytes: fall back to the declared type
            detected = declared
        records.append(
            AttachmentRecord(
                part_id=part_id or "1",
                untrusted_filename=filename,
                declared_type=declared,
                detected_type=detected,
                sha256=hashlib.sha256(data).hexdigest(),
                size=len(data),
            )
        )

    walk(message, "")
    return records


def _test(args: argparse.Namespace) -> int:
    directory = _directory(args.dir)
    config: Config = load_config(args.config, environ={}) if args.config else Config()
    policy_set = load_policies(directory, default=config.policy.name)
    try:
        raw = args.file.read_bytes()
    except OSError as exc:
        print(f"mugaika rules test: {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(raw)
    headers = {name: _decoded(message.get(name)) for name in HEADERS if message.get(name)}
    senders = parse_addresses(headers.get("From", ""))
    mail_from = args.mail_from if args.mail_from is not None else ""
    if args.mail_from is None and senders:
        mail_from = senders[0].address
    rcpts = args.rcpt or [
        a.address for a in parse_addresses(headers.get("To", "")) if "@" in a.address
    ]
    envelope = Envelope(
        queue_id="TEST",
        mail_from=mail_from,
        recipients=tuple(Recipient(r) for r in rcpts),
        client=ClientInfo(address=args.client, helo=args.helo, forwarded=True),
    )
    for code in args.finding:  # a typo would make the test show rules that never fire
        if code not in CODES:
            problem = unknown_pattern_problem(code) or "a pattern, not one finding code"
            raise ConfigError(f"--finding: {code!r}: {problem}")
    report = Report(queue_id="TEST")
    report.attachments.extend(_attachments(message))
    for code in args.finding:
        report.add_finding(code, "", "given on the command line")
    auth_results = None
    if args.verify:
        from gateway.auth import auth_settings, authenticate, make_resolver

        auth_results = authenticate(raw, envelope, auth_settings(config), make_resolver(config))
        report.auth.update(auth_results.summary())
        print(f"Authentication-Results: {auth_results.header_value}")
    for item in args.auth:
        method, sep, result = item.partition("=")
        if not sep:
            raise ConfigError(f"--auth {item!r}: expected METHOD=RESULT, e.g. dmarc=fail")
        report.auth[method.strip().lower()] = result.strip().lower()

    tenants: dict[str, Any] = dict(config.tenants)
    for domain in args.tenant:
        tenants.setdefault(domain.lower(), None)
    if args.policy:
        if args.policy not in policy_set.policies:
            known = ", ".join(policy_set.names())
            raise ConfigError(f"--policy {args.policy!r}: no such policy (known: {known})")
        policy = policy_set.get(args.policy, frozenset(tenants))
    else:
        policy = policy_set.for_recipients([r.rpartition("@")[2] for r in rcpts], tenants)
    decision = policy.decide(report, envelope, headers, auth=auth_results, message_size=len(raw))

    out = sys.stdout
    clean = replace_control_chars
    print(f"policy: {policy.name}  ({', '.join(policy.compiled.sources)})", file=out)
    print(f"from: {clean(headers.get('From', ''))}  envelope: <{clean(mail_from)}>", file=out)
    print(f"auth: {', '.join(f'{k}={v}' for k, v in sorted(report.auth.items())) or 'none'}")
    hits = {h.rule: h for h in decision.hits}
    width = max((len(r.name) for r in policy.rules), default=10)
    for rule in policy.rules:
        hit = hits.get(rule.name)
        if hit is None:
            print(f"  miss  {rule.name}", file=out)
        else:
            mode = "" if hit.enforced else " (monitor: not enforced)"
            print(f"  HIT   {rule.name:<{width}}  {hit.action}{mode}  {clean(hit.reason)}")
    for note in decision.notes:
        print(f"  note: {note}", file=out)
    print(f"verdict: {decision.verdict.label}", file=out)
    for reason in decision.reasons:
        print(f"  reason: {clean(reason)}", file=out)
    if decision.reject_text:
        print(f"  reply: 550 5.7.1 {decision.reject_text}", file=out)
    for name, value in decision.tag_headers:
        print(f"  header: {name}: {clean(value)}", file=out)
    if decision.skip_classes:
        print(f"  not sanitized: {', '.join(sorted(decision.skip_classes))}", file=out)
    settings = policy.settings
    print(f"body: html {settings.html}, urls {settings.urls.mode}", file=out)
    for record in report.attachments:
        cls = content_class_of(record.detected_type)
        action = "keep (sender allow-listed)" if cls in decision.skip_classes else None
        print(
            f"  attachment {record.part_id} {clean(record.untrusted_filename)!r} "
            f"{record.detected_type} ({cls}): {action or settings.action_for(cls)}",
            file=out,
        )
    return 0
