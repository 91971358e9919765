"""``mugaika scan FILE.eml``: the gateway's pipeline, offline, on one message.

Runs exactly the stages ``serve`` runs in a worker (parse, verify, inspect, decide, sanitize,
notice), with the same policies and the same per-document isolation, and prints the report:
the verdict and every action with its reason. Nothing is delivered or stored.

Exit codes: 0 the message would be delivered (possibly sanitized); 3 it would be quarantined;
4 it would be rejected; 1 the pipeline failed (the gateway would tempfail or quarantine);
2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import email.utils
import json
import sys
import time
from pathlib import Path
from typing import Any

from gateway.cli import EXIT_FAILURE, EXIT_OK, config_from_args
from gateway.errors import ConfigError
from gateway.logs import replace_control_chars
from gateway.message import ClientInfo, Envelope, Recipient
from gateway.pipeline import Job, Outcome, Pipeline, rule_headers
from gateway.report import Report, Verdict

EXIT_QUARANTINE = 3
EXIT_REJECT = 4


def envelope_for(raw: bytes, mail_from: str | None, recipients: list[str] | None) -> Envelope:
    """An envelope for an offline scan: given addresses, else the message's own From/To."""
    headers = rule_headers(raw)
    sender = mail_from
    if sender is None:
        sender = next(iter(_addresses(headers.get("From", ""))), "")
    if not recipients:
        recipients = _addresses(headers.get("To", ""))
    recipients = recipients or ["postmaster@localhost"]
    return Envelope(
        queue_id="SCAN",
        mail_from=sender,
        recipients=tuple(Recipient(r) for r in recipients),
        client=ClientInfo(address="127.0.0.1", helo="scan", proto="SMTP"),
        peer=ClientInfo(address="127.0.0.1", helo="scan", proto="SMTP"),
        received_at=time.time(),
    )


def _addresses(untrusted: str) -> list[str]:
    try:
        return [a for _, a in email.utils.getaddresses([untrusted]) if a]
    except (RecursionError, ValueError):  # pathological headers (deeply nested comments)
        return []


def _policy_set(path: Path | None, config: Any) -> Any:
    from rules.loader import load_policies, reload_policies

    if path is None:
        return reload_policies(config)
    if path.is_dir():
        return load_policies(path, default=config.policy.name)
    return load_policies(path.parent, default=path.stem)


def describe(outcome: Outcome) -> str:
    """The report in words: verdict, reasons, findings, actions and attachments."""
    report: Report = outcome.report
    lines = [f"verdict: {report.verdict.label}", f"policy: {report.policy}"]
    if report.reference_id:
        lines.append(f"reference: {report.reference_id}")
    for reason in report.reasons:
        lines.append(f"reason: {replace_control_chars(reason)}")
    for method, result in sorted(report.auth.items()):
        lines.append(f"auth: {method}={result}")
    for hit in report.rule_hits:
        mode = "" if hit.enforced else " (monitor)"
        lines.append(f"rule: {hit.rule} -> {hit.action}{mode}: {replace_control_chars(hit.reason)}")
    for finding in report.findings:
        detail = replace_control_chars(finding.detail)
        lines.append(f"finding: {finding.code} part={finding.part_id or '-'} {detail}".rstrip())
    for action in report.actions:
        count = f" x{action.count}" if action.count != 1 else ""
        reason = f": {replace_control_chars(action.reason)}" if action.reason else ""
        lines.append(f"action: {action.kind}{count} part={action.part_id or '-'}{reason}")
    for record in report.attachments:
        name = replace_control_chars(record.untrusted_filename) or "(unnamed)"
        out = (
            f" -> {replace_control_chars(record.output_filename)}" if record.output_filename else ""
        )
        lines.append(
            f"attachment: part={record.part_id} {name!r} declared={record.declared_type} "
            f"detected={record.detected_type} size={record.size} action={record.action or '-'}"
            f" reason={record.reason or '-'}{out}"
        )
    return "\n".join(lines)


def _scan(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    try:
        raw = args.file.read_bytes()
    except OSError as exc:
        print(f"mugaika scan: {args.file}: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILURE
    policies = _policy_set(args.policy, config)
    pipeline = Pipeline(config, policies)
    if args.no_auth:
        pipeline.auth_settings = None
    envelope = envelope_for(raw, args.mail_from, args.rcpt)
    started = time.perf_counter()
    try:
        outcome = pipeline.process(Job(envelope, raw, args.reference or "SCAN-ORIGINAL"))
    except ConfigError:
        raise
    except Exception as exc:
        print(f"mugaika scan: pipeline failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    elapsed = time.perf_counter() - started
    if args.out is not None and outcome.message is not None:
        args.out.write_bytes(outcome.message)
    if args.json:
        data = outcome.report.to_dict()
        data["seconds"] = round(elapsed, 4)
        data["output_bytes"] = len(outcome.message) if outcome.message is not None else None
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        print(describe(outcome))
        print(f"seconds: {elapsed:.3f}")
    return {
        Verdict.QUARANTINE: EXIT_QUARANTINE,
        Verdict.REJECT: EXIT_REJECT,
        Verdict.TEMPFAIL: EXIT_FAILURE,
    }.get(outcome.verdict, EXIT_OK)


def add_commands(subparsers: Any, common: argparse.ArgumentParser) -> None:
    scan = subparsers.add_parser(
        "scan",
        parents=[common],
        help="run the pipeline offline on one message and print the report",
        description=__doc__.split("\n\n")[1],
        epilog="Exit codes: 0 deliver, 3 quarantine, 4 reject, 1 pipeline failure, 2 usage.",
    )
    scan.add_argument("file", type=Path, metavar="FILE.eml")
    scan.add_argument(
        "--policy",
        type=Path,
        metavar="FILE",
        help="a policy file (or directory) instead of the configured ones",
    )
    scan.add_argument("--out", type=Path, metavar="OUT.eml", help="write the sanitized message")
    scan.add_argument("--json", action="store_true", help="print the report as JSON")
    scan.add_argument(
        "--from",
        dest="mail_from",
        metavar="ADDR",
        help="envelope sender (default: the From: address)",
    )
    scan.add_argument(
        "--rcpt",
        action="append",
        metavar="ADDR",
        help="envelope recipient, repeatable (default: the To: addresses)",
    )
    scan.add_argument(
        "--no-auth", action="store_true", help="skip SPF/DKIM/DMARC/ARC checks (no DNS lookups)"
    )
    scan.add_argument("--reference", metavar="ID", help="reference id to quote in the notice")
    scan.set_defaults(func=_scan)
