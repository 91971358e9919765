"""``mugaika quarantine …``, ``mugaika user …``, ``mugaika db …`` and ``mugaika admin``.

Every command takes ``--config FILE`` / ``--data-dir DIR`` like ``serve`` and opens the same
store. The CLI acts as ``cli:<login name>`` with superadmin rights (whoever can run it can read
the database anyway); every change it makes is written to the audit log under that name.

Exit codes: 0 OK; 1 the operation failed (downstream refused, item not found, …: one line
on stderr); 2 usage or configuration error, including a database that needs
``mugaika db upgrade``.

The embedded SQLite store (no ``quarantine.url``) is created and migrated on first use by any
command, as by ``serve``; a configured URL must be migrated explicitly with ``db upgrade``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import getpass
import json
import sys
import unicodedata
from collections.abc import Sequence
from typing import Any

from gateway.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, config_from_args
from gateway.config import Config
from gateway.delivery import make_downstream
from gateway.errors import ConfigError
from gateway.logs import replace_control_chars
from gateway.notice import local_time
from quarantine import db
from quarantine.errors import QuarantineError
from quarantine.release import TARGETS
from quarantine.sql import ItemQuery, SqlStore, open_store, parse_since
from quarantine.users import ROLES, UserStore, cli_actor


def open_for(config: Config) -> SqlStore:
    """The store of ``config``; the embedded default is created on first use."""
    return open_store(config, create=config.quarantine.url is None)


def since_argument(value: str) -> datetime.datetime:
    """``--since``: see ``quarantine.sql.parse_since``."""
    try:
        return parse_since(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _fail(command: str, exc: BaseException) -> int:
    print(f"mugaika {command}: {replace_control_chars(str(exc))}", file=sys.stderr)
    return EXIT_FAILURE


def _show(value: Any) -> str:
    return replace_control_chars(str(value))


def display_width(text: str) -> int:
    """Columns ``text`` takes in a terminal: East Asian wide and fullwidth characters take
    two (Unicode UAX #11), combining marks none."""
    width = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` columns (with … when cut) and padded to exactly ``width``."""
    if display_width(text) > width:
        cut, used = [], 0
        for char in text:
            step = display_width(char)
            if used + step > width - 1:
                break
            cut.append(char)
            used += step
        text = "".join(cut) + "…"
    return text + " " * (width - display_width(text))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], limits: Sequence[int]) -> str:
    """Rows as aligned columns, two spaces apart; column ``i`` at most ``limits[i]`` columns
    wide (0: no limit, used for the last one), widths by East Asian width."""
    widths = []
    for index, header in enumerate(headers):
        widest = max([display_width(header), *(display_width(r[index]) for r in rows)])
        widths.append(min(widest, limits[index]) if limits[index] else widest)
    lines = []
    for row in [list(headers), *rows]:
        cells = [fit(cell, widths[i]) for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


# -- quarantine ------------------------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    store = open_for(config_from_args(args))
    page = store.list(
        ItemQuery(
            status=args.status,
            kind=args.kind,
            tenant=args.tenant,
            since=args.since,
            search=args.search,
            limit=args.limit,
            offset=args.offset,
        )
    )
    if args.json:
        json.dump([i.to_dict() for i in page.items], sys.stdout, ensure_ascii=False, indent=1)
        print()
        return EXIT_OK
    if not page.items:
        print("no items")
        return EXIT_OK
    config = config_from_args(args)
    rows = [
        [
            item.id,
            local_time(item.received_at, config.zone),
            item.status + (" (interrupted)" if item.interrupted else ""),
            item.kind,
            _show(item.envelope_from),
            _show(", ".join(item.recipients)),
            _show(item.subject),
        ]
        for item in page.items
    ]
    headers = ["ID", "RECEIVED", "STATUS", "KIND", "FROM", "TO", "SUBJECT"]
    print(table(headers, rows, [40, 24, 22, 11, 32, 32, 60]))
    total = f"more than {page.total}" if page.total_capped else str(page.total)
    print(f"({len(page.items)} of {total}; times in {config.time_zone})")
    return EXIT_OK


def _show_item(args: argparse.Namespace) -> int:
    store = open_for(config_from_args(args))
    try:
        item = store.get(args.id)
    except QuarantineError as exc:
        return _fail("quarantine show", exc)
    data = item.to_dict()
    data["history"] = [h.to_dict() for h in store.history(args.id)]
    data["requests"] = [r.to_dict() for r in store.requests(status=None, item_id=args.id)]
    store.audit(cli_actor(), "viewed", args.id, item.summary.tenant)
    if args.json:
        json.dump(data, sys.stdout, ensure_ascii=False, indent=1)
        print()
        return EXIT_OK
    s = item.summary
    zone = config_from_args(args).zone
    fields: list[tuple[str, Any]] = [
        ("id", s.id),
        ("kind", s.kind),
        ("status", s.status + (" (a release was interrupted)" if s.interrupted else "")),
        ("received", local_time(s.received_at, zone, seconds=True)),
        ("tenant", s.tenant),
        ("envelope from", s.envelope_from),
        ("recipients", ", ".join(s.recipients)),
        ("from", s.header_from),
        ("subject", s.subject),
        ("message-id", s.message_id),
        ("client", f"{item.client.get('name')} [{item.client.get('address')}]"),
        ("size", s.size),
        ("verdict", s.verdict),
        ("reasons", "; ".join(s.reasons)),
        ("sha256", item.original_sha256),
        ("sanitized copy", "yes" if item.sanitized_available else "no"),
    ]
    if item.released_at:
        fields.append(("released", f"{local_time(item.released_at, zone)} by {item.released_by}"))
    label_width = max(display_width(label) for label, _ in fields) + 2
    for label, value in fields:
        print(f"{fit(label + ':', label_width)}{_show(value)}")
    sections = (
        (
            "findings",
            ["CODE", "PART", "DETAIL"],
            [
                [_show(f["code"]), _show(f["part_id"]), _show(f["detail"])]
                for f in item.report.get("findings", [])
            ],
        ),
        (
            "attachments",
            ["PART", "NAME", "DETECTED", "ACTION", "REASON"],
            [
                [
                    _show(a["part_id"]),
                    _show(a["untrusted_filename"]),
                    _show(a["detected_type"]),
                    _show(a["action"] or "-"),
                    _show(a["reason"]),
                ]
                for a in item.report.get("attachments", [])
            ],
        ),
        (
            "history",
            ["WHEN", "CHANGE", "BY", "REASON"],
            [
                [
                    local_time(change.at, zone, seconds=True),
                    f"{change.from_status or '-'} → {change.to_status}",
                    _show(change.actor),
                    _show(change.reason),
                ]
                for change in store.history(args.id)
            ],
        ),
    )
    for title, headers, rows in sections:
        if rows:
            print(f"\n{title}:")
            print(
                "\n".join(
                    "  " + line for line in table(headers, rows, [0] * len(headers)).split("\n")
                )
            )
    return EXIT_OK


# -- read: a message as a person reads it ---------------------------------------------------

# Header fields ``read`` prints, in this order (``--all-headers`` prints every one).
READ_FIELDS = ("from", "to", "cc", "date", "subject", "message-id")
READ_TIMEOUT = 60.0
READ_MEMORY_MB = 1024


def _summary_in_child(raw: bytes) -> dict[str, Any]:
    from quarantine.summary import summarize

    return summarize(raw).to_dict()


def _summary_from_child(frame: Any) -> Any:
    from gateway import wire
    from quarantine.summary import Summary

    return Summary.from_dict(wire.plain_value(frame))


def _size(value: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value //= 1024
    return f"{value} GiB"


def _read(args: argparse.Namespace) -> int:
    """``mugaika read FILE|ID``: a stored or delivered message, readably: the main header
    fields decoded, every text part decoded with the gateway's charset layer, the list of
    attachments. The message is parsed in a child process with memory and time limits
    (``gateway.workers.run_isolated``), as every parse of mail is; nothing is rendered or
    opened, control characters are replaced."""
    from pathlib import Path

    from gateway.errors import CannotSanitize
    from gateway.workers import run_isolated

    source = Path(args.message)
    if source.is_file():
        data = source.read_bytes()
        label = str(source)
    elif "/" in args.message or not args.message.strip():
        print(f"mugaika read: {args.message}: no such file", file=sys.stderr)
        return EXIT_FAILURE
    else:
        store = open_for(config_from_args(args))
        try:
            item = store.get(args.message)
            sanitized = args.target == "sanitized"
            data = store.sanitized(args.message) if sanitized else store.original(args.message)
        except QuarantineError as exc:
            return _fail("read", exc)
        store.audit(cli_actor(), "read", args.message, item.summary.tenant, target=args.target)
        label = f"{args.message} ({args.target})"
    try:
        summary = run_isolated(
            _summary_in_child,
            data,
            timeout=READ_TIMEOUT,
            memory_limit_mb=READ_MEMORY_MB,
            decode=_summary_from_child,
        )
    except CannotSanitize as exc:
        return _fail("read", Exception(f"{label}: cannot read the message ({exc.code}: {exc})"))
    headers = [
        (name, value)
        for name, value in summary.headers
        if args.all_headers or name.lower() in READ_FIELDS
    ]
    if not args.all_headers:
        headers.sort(key=lambda field: READ_FIELDS.index(field[0].lower()))
    width = max((display_width(name) for name, _ in headers), default=0) + 2
    for name, value in headers:
        print(f"{fit(name + ':', width)}{_show(value)}")
    if summary.note:
        print(f"({_show(summary.note)})")
    attachments = []
    for part in summary.parts:
        if part.text is None:
            attachments.append(part)
            continue
        note = f", {part.note}" if part.note else ""
        print(f"\n--- {_show(part.part_id)} {_show(part.content_type)}{note} ---")
        print(replace_control_chars(part.text, keep_newlines=True).rstrip("\n"))
    if attachments:
        print("\n--- attachments ---")
        rows = [
            [_show(a.part_id), _show(a.filename or "-"), _show(a.content_type), _size(a.size)]
            for a in attachments
        ]
        print(table(["PART", "NAME", "TYPE", "SIZE"], rows, [12, 60, 60, 0]))
    return EXIT_OK


# -- digest ----------------------------------------------------------------------------------


def _digest_send(args: argparse.Namespace) -> int:
    from quarantine import digest

    config = config_from_args(args)
    enabled = digest.enabled_tenants(config)
    tenants = args.tenant or enabled
    unknown = [t for t in tenants if t not in enabled]
    if unknown:
        print(
            f"mugaika digest send: {', '.join(unknown)}: not a tenant with digest.enabled "
            f"(enabled: {', '.join(enabled) or 'none'})",
            file=sys.stderr,
        )
        return EXIT_USAGE
    store = open_for(config)
    downstream = _downstream(config, args.downstream)

    async def run() -> Any:
        try:
            return await digest.send(
                store, config, downstream, tenants=tenants, dry_run=args.dry_run
            )
        finally:
            await downstream.close()

    runs = asyncio.run(run())
    failed = False
    for result in runs:
        head = f"{result.tenant} {result.day}"
        if result.skipped:
            print(f"{head}: {result.skipped}")
            continue
        if args.dry_run:
            print(f"{head}: {len(result.mails)} mails would be sent (dry run)")
            for mail in result.mails:
                print(f"\n--- To: {mail.to}\n--- Subject: {mail.subject}\n{mail.body}")
            continue
        print(f"{head}: {len(result.sent)} sent, {len(result.failed)} failed")
        for address, problem in result.failed.items():
            print(f"  {address}: {_show(problem)}")
        failed = failed or bool(result.failed)
    if not runs:
        print("no tenant has digest.enabled")
    return EXIT_FAILURE if failed else EXIT_OK


def _reason(args: argparse.Namespace, command: str) -> str | None:
    if args.reason:
        return str(args.reason)
    if sys.stdin.isatty():
        return input("reason: ")
    print(
        f"mugaika {command}: --reason TEXT is required (every release states a reason)",
        file=sys.stderr,
    )
    return None


def _release(args: argparse.Namespace) -> int:
    from quarantine.release import release

    config = config_from_args(args)
    store = open_for(config)
    if args.target is None:
        print(
            "mugaika quarantine release: say which copy: --target sanitized or --target original "
            "(--sanitized is short for --target sanitized)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    reason = _reason(args, "quarantine release")
    if reason is None:
        return EXIT_USAGE
    downstream = _downstream(config, args.downstream)

    async def run() -> Any:
        try:
            return await release(
                store,
                downstream,
                args.id,
                cli_actor(),
                reason,
                target=args.target,
                to=args.to or None,
                force=args.force,
                policy=config.quarantine.release.originals,
            )
        finally:
            await downstream.close()

    try:
        result = asyncio.run(run())
    except QuarantineError as exc:
        return _fail("quarantine release", exc)
    print(
        f"released {result.item_id} ({result.target}) to {', '.join(result.recipients)}: "
        f"{result.reply}"
    )
    for address, reply in result.refused.items():
        print(f"  refused {address}: {reply}")
    return EXIT_OK


def _downstream(config: Config, override: str | None) -> Any:
    return make_downstream(
        override or config.downstream,
        config.maildir,
        config.delivery.helo_name or config.hostname,
        connect_timeout=config.delivery.connect_timeout,
        command_timeout=config.delivery.command_timeout,
        pool_size=0,
        max_reuse=1,
        starttls=config.delivery.starttls,
    )


def _delete(args: argparse.Namespace) -> int:
    store = open_for(config_from_args(args))
    actor = cli_actor()
    try:
        item = store.get(args.id)
        store.delete(args.id, actor, args.reason or "deleted with the CLI")
    except QuarantineError as exc:
        return _fail("quarantine delete", exc)
    store.audit(actor, "deleted", args.id, item.summary.tenant, reason=args.reason or "")
    print(f"deleted {args.id}")
    return EXIT_OK


def _purge(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    store = open_for(config)
    recovered = store.recover_stale_claims(
        datetime.timedelta(minutes=config.quarantine.release.stale_claim_minutes)
    )
    result = store.purge()
    store.audit(cli_actor(), "purged", None, None, expired=len(result.expired), recovered=recovered)
    print(
        f"expired {len(result.expired)} items, removed {result.blobs_removed} blobs, "
        f"recovered {len(recovered)} interrupted releases"
    )
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    store = open_for(config_from_args(args))
    try:
        item = store.get(args.id)
        data = store.sanitized(args.id) if args.target == "sanitized" else store.original(args.id)
    except QuarantineError as exc:
        return _fail("quarantine export", exc)
    store.audit(cli_actor(), "exported", args.id, item.summary.tenant, target=args.target)
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return EXIT_OK


def _request(args: argparse.Namespace) -> int:
    from quarantine.release import request_release

    store = open_for(config_from_args(args))
    actor = cli_actor()
    if args.by:
        actor = type(actor)(name=f"recipient:{args.by}", role="superadmin", remote="local")
    try:
        request_id = request_release(
            store, args.id, actor, args.reason, to=args.to or None, target=args.target
        )
    except QuarantineError as exc:
        return _fail("quarantine request", exc)
    print(f"request {request_id} recorded for {args.id}; an approver decides in the web UI")
    return EXIT_OK


def _requests(args: argparse.Namespace) -> int:
    store = open_for(config_from_args(args))
    requests = store.requests(status=None if args.all else "pending")
    if args.json:
        json.dump([r.to_dict() for r in requests], sys.stdout, ensure_ascii=False, indent=1)
        print()
        return EXIT_OK
    if not requests:
        print("no requests")
        return EXIT_OK
    zone = config_from_args(args).zone
    rows = [
        [
            str(r.id),
            local_time(r.created_at, zone),
            r.status,
            r.item_id,
            r.target,
            _show(r.requested_by),
            _show(r.reason),
        ]
        for r in requests
    ]
    headers = ["REQUEST", "CREATED", "STATUS", "ITEM", "TARGET", "BY", "REASON"]
    print(table(headers, rows, [10, 24, 9, 40, 9, 32, 0]))
    return EXIT_OK


def _decide(args: argparse.Namespace) -> int:
    from quarantine.release import decide_request

    config = config_from_args(args)
    store = open_for(config)
    downstream = _downstream(config, args.downstream)
    approve = args.quarantine_command == "approve"

    async def run() -> Any:
        try:
            return await decide_request(
                store,
                downstream,
                args.request_id,
                cli_actor(),
                approve,
                args.reason,
                config.requests,
            )
        finally:
            await downstream.close()

    try:
        result = asyncio.run(run())
    except QuarantineError as exc:
        return _fail(f"quarantine {args.quarantine_command}", exc)
    if result is None:
        print(f"request {args.request_id} refused")
    else:
        print(f"request {args.request_id} approved; released to {', '.join(result.recipients)}")
    return EXIT_OK


# -- users -----------------------------------------------------------------------------------


def _read_password(args: argparse.Namespace) -> str | None:
    if getattr(args, "password_stdin", False):
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise QuarantineError("no terminal to ask for a password: use --password-stdin")
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise QuarantineError("the passwords differ")
    return first


def _users(args: argparse.Namespace) -> UserStore:
    return UserStore(open_for(config_from_args(args)).engine)


def _user_add(args: argparse.Namespace) -> int:
    users = _users(args)
    try:
        password = None if args.sso else _read_password(args)
        user = users.add(args.name, args.role, args.domain or [], password, args.language)
    except QuarantineError as exc:
        return _fail("user add", exc)
    _audit_user(args, "user-added", user.username, role=user.role, domains=list(user.domains))
    print(
        f"added {user.username} ({user.role}{' ' + ','.join(user.domains) if user.domains else ''})"
    )
    return EXIT_OK


def _audit_user(args: argparse.Namespace, action: str, username: str, **detail: Any) -> None:
    store = open_for(config_from_args(args))
    store.audit(cli_actor(), action, None, None, user=username, **detail)


def _user_passwd(args: argparse.Namespace) -> int:
    users = _users(args)
    try:
        users.set_password(args.name, _read_password(args) or "")
    except QuarantineError as exc:
        return _fail("user passwd", exc)
    _audit_user(args, "user-password-set", args.name)
    print(f"password of {args.name} changed; their sessions ended")
    return EXIT_OK


def _user_disable(args: argparse.Namespace) -> int:
    users = _users(args)
    disable = args.user_command == "disable"
    try:
        users.set_disabled(args.name, disable)
    except QuarantineError as exc:
        return _fail(f"user {args.user_command}", exc)
    _audit_user(args, "user-disabled" if disable else "user-enabled", args.name)
    print(f"{args.name} {'disabled' if disable else 'enabled'}")
    return EXIT_OK


def _user_role(args: argparse.Namespace) -> int:
    users = _users(args)
    try:
        users.set_role(args.name, args.role, args.domain or [])
    except QuarantineError as exc:
        return _fail("user role", exc)
    _audit_user(args, "user-role-set", args.name, role=args.role, domains=args.domain or [])
    print(f"{args.name} is now {args.role}")
    return EXIT_OK


def _user_list(args: argparse.Namespace) -> int:
    users = _users(args).list()
    if args.json:
        json.dump([u.to_dict() for u in users], sys.stdout, ensure_ascii=False, indent=1)
        print()
        return EXIT_OK
    rows = [
        [
            _show(user.username),
            user.role,
            "disabled" if user.disabled else "active",
            "password" if user.has_password else "sso-only",
            ",".join(user.domains),
        ]
        for user in users
    ]
    print(table(["NAME", "ROLE", "STATE", "LOGIN", "DOMAINS"], rows, [40, 13, 8, 9, 0]))
    return EXIT_OK


def _token(args: argparse.Namespace) -> int:
    users = _users(args)
    try:
        action = args.token_command
        if action == "create":
            token = users.create_token(args.name, args.label)
            _audit_user(args, "token-created", args.name, label=args.label)
            print(token)
        elif action == "list":
            for t in users.list_tokens(args.name):
                state = "revoked" if t["revoked"] else "active"
                print(f"{t['id']:>4} {state:<8} {t['name']:<20} created {t['created_at']}")
        else:
            users.revoke_token(args.name, args.token_id)
            _audit_user(args, "token-revoked", args.name, token=args.token_id)
            print(f"token {args.token_id} of {args.name} revoked")
    except QuarantineError as exc:
        return _fail(f"user token {args.token_command}", exc)
    return EXIT_OK


# -- db, admin -------------------------------------------------------------------------------


def _db_upgrade(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    engine = db.make_engine(config.quarantine_url)
    try:
        before, after = db.upgrade(engine)
    except Exception as exc:
        return _fail("db upgrade", exc)
    finally:
        engine.dispose()
    url = engine.url.render_as_string(hide_password=True)
    if before == after:
        print(f"{url}: already at {after}")
    else:
        print(f"{url}: upgraded {before or '(empty)'} → {after}")
    return EXIT_OK


def _db_status(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    engine = db.make_engine(config.quarantine_url)
    try:
        current = db.current_revision(engine)
    except Exception as exc:
        return _fail("db status", exc)
    finally:
        engine.dispose()
    head = db.head_revision()
    print(f"current {current or '(empty)'}, needed {head}")
    if current == head:
        index = open_store(config).search_index()
        advice = {
            "fts5": "SQLite FTS5, trigram tokenizer",
            "pg_trgm": "PostgreSQL pg_trgm GIN index",
            "none": "none: search scans every item; as a superuser run "
            "CREATE EXTENSION pg_trgm; then "
            "CREATE INDEX ix_items_search_trgm ON items USING gin (search_text gin_trgm_ops);",
        }[index]
        print(f"search index: {advice}")
    return EXIT_OK if current == head else EXIT_FAILURE


def _admin(args: argparse.Namespace) -> int:
    from quarantine.web.service import run_standalone

    config = config_from_args(args, **{"admin.listen": args.listen, "downstream": args.downstream})
    if config.admin.listen is None:
        raise ConfigError("admin.listen is null: give --listen HOST:PORT")
    return run_standalone(config)


def _target_options(parser: argparse.ArgumentParser, default: str | None, help_text: str) -> None:
    """``--target sanitized|original`` (the API's and the web form's word) and its short form
    ``--sanitized``; ``default`` None makes the choice mandatory (checked in the command)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--target", choices=TARGETS, default=default, help=help_text)
    group.add_argument(
        "--sanitized",
        dest="target",
        action="store_const",
        const="sanitized",
        help="short for --target sanitized",
    )


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``quarantine``, ``user``, ``db`` and ``admin`` (see gateway/cli.py)."""
    q = sub.add_parser("quarantine", help="held messages and retained originals")
    qsub = q.add_subparsers(dest="quarantine_command", required=True, metavar="ACTION")

    p = qsub.add_parser("list", parents=[common], help="list items, newest first")
    p.add_argument("--json", action="store_true", help="a JSON array")
    p.add_argument("--status", choices=("held", "releasing", "released", "deleted", "expired"))
    p.add_argument("--kind", choices=("quarantined", "retained"))
    p.add_argument("--tenant", metavar="DOMAIN", help="items with a recipient in DOMAIN")
    p.add_argument("--since", type=since_argument, metavar="WHEN", help="2026-11-01, 12h, 7d")
    p.add_argument("--search", metavar="TEXT", help="in id, addresses, subject, Message-ID")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--offset", type=int, default=0)
    p.set_defaults(func=_list)

    p = qsub.add_parser("show", parents=[common], help="everything about one item")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_show_item)

    p = qsub.add_parser(
        "release",
        parents=[common],
        help="send an item on through the downstream",
        epilog="Exit codes: 0 released, 1 refused or failed (the item stays held), 2 usage.",
    )
    p.add_argument("id")
    p.add_argument("--reason", metavar="TEXT", help="why (stored; required)")
    p.add_argument("--to", action="append", metavar="ADDR", help="instead of the recipients")
    _target_options(p, None, "which copy to send (required)")
    p.add_argument("--downstream", metavar="HOST:PORT", help="default: the configured one")
    p.add_argument("--force", action="store_true", help="even if already released")
    p.set_defaults(func=_release)

    p = qsub.add_parser("delete", parents=[common], help="drop an item's content")
    p.add_argument("id")
    p.add_argument("--reason", metavar="TEXT", default="")
    p.set_defaults(func=_delete)

    p = qsub.add_parser("purge", parents=[common], help="expire items past their retention")
    p.set_defaults(func=_purge)

    p = qsub.add_parser("export", parents=[common], help="write the original to stdout")
    p.add_argument("id")
    _target_options(p, "original", "which copy to write (default: original)")
    p.set_defaults(func=_export)

    p = qsub.add_parser("request", parents=[common], help="record a request to release")
    p.add_argument("id", help="the reference id quoted in the notice")
    p.add_argument("--reason", metavar="TEXT", required=True)
    p.add_argument("--by", metavar="WHO", help="who asked (e.g. the recipient's address)")
    p.add_argument("--to", action="append", metavar="ADDR")
    _target_options(p, "original", "what the approver releases (default: original)")
    p.set_defaults(func=_request)

    p = qsub.add_parser("requests", parents=[common], help="pending release requests")
    p.add_argument("--all", action="store_true", help="decided ones too")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_requests)

    for name in ("approve", "refuse"):
        p = qsub.add_parser(name, parents=[common], help=f"{name} a release request")
        p.add_argument("request_id", type=int)
        p.add_argument("--reason", metavar="TEXT", required=True)
        p.add_argument("--downstream", metavar="HOST:PORT")
        p.set_defaults(func=_decide)

    u = sub.add_parser("user", help="admin accounts of the web UI and API")
    usub = u.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    p = usub.add_parser("add", parents=[common], help="add a user (asks for the password)")
    p.add_argument("name")
    p.add_argument("--role", choices=ROLES, required=True)
    p.add_argument("--domain", action="append", metavar="DOMAIN", help="scope (repeatable)")
    p.add_argument("--language", choices=("ja", "en"))
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.add_argument("--sso", action="store_true", help="no password: header single sign-on only")
    p.set_defaults(func=_user_add)
    p = usub.add_parser("passwd", parents=[common], help="set a new password")
    p.add_argument("name")
    p.add_argument("--password-stdin", action="store_true")
    p.set_defaults(func=_user_passwd)
    for name in ("disable", "enable"):
        p = usub.add_parser(name, parents=[common], help=f"{name} a user")
        p.add_argument("name")
        p.set_defaults(func=_user_disable)
    p = usub.add_parser("role", parents=[common], help="change role and domains")
    p.add_argument("name")
    p.add_argument("--role", choices=ROLES, required=True)
    p.add_argument("--domain", action="append", metavar="DOMAIN")
    p.set_defaults(func=_user_role)
    p = usub.add_parser("list", parents=[common], help="list users")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_user_list)
    t = usub.add_parser("token", help="API bearer tokens")
    tsub = t.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    p = tsub.add_parser("create", parents=[common], help="print a new token (shown once)")
    p.add_argument("name")
    p.add_argument("--label", default="api")
    p.set_defaults(func=_token)
    p = tsub.add_parser("list", parents=[common])
    p.add_argument("name")
    p.set_defaults(func=_token)
    p = tsub.add_parser("revoke", parents=[common])
    p.add_argument("name")
    p.add_argument("token_id", type=int)
    p.set_defaults(func=_token)

    d = sub.add_parser("db", help="the quarantine database")
    dsub = d.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    p = dsub.add_parser("upgrade", parents=[common], help="create or migrate the schema")
    p.set_defaults(func=_db_upgrade)
    p = dsub.add_parser("status", parents=[common], help="exit 0 when the schema is current")
    p.set_defaults(func=_db_status)

    g = sub.add_parser("digest", help="the daily digest of held mail")
    gsub = g.add_subparsers(dest="digest_command", required=True, metavar="ACTION")
    p = gsub.add_parser(
        "send",
        parents=[common],
        help="send today's digest now (once per tenant and day, like serve's scheduler)",
        epilog="Exit codes: 0 sent (or already sent today), 1 a mail was refused, 2 usage.",
    )
    p.add_argument("--dry-run", action="store_true", help="print the mails; send nothing")
    p.add_argument("--tenant", action="append", metavar="DOMAIN", help="only this tenant")
    p.add_argument("--downstream", metavar="HOST:PORT", help="default: the configured one")
    p.set_defaults(func=_digest_send)

    p = sub.add_parser(
        "read",
        parents=[common],
        help="print a message readably: header fields, decoded text, attachments",
        description="Print a delivered message (a file, e.g. in the Maildir) or a quarantined "
        "one (its reference id) as a person reads it: From, To, Date, Subject decoded, every "
        "text part decoded (ISO-2022-JP, Shift_JIS, base64, quoted-printable...), then the "
        "list of attachments. Nothing is opened or rendered.",
        epilog="Exit codes: 0 printed, 1 no such file or item, or unreadable, 2 usage.",
    )
    p.add_argument("message", metavar="FILE|ID", help="a message file, or a reference id")
    _target_options(p, "original", "for an id: which copy (default: original)")
    p.add_argument("--all-headers", action="store_true", help="every header field")
    p.set_defaults(func=_read)

    p = sub.add_parser("admin", parents=[common], help="run the admin web UI and API alone")
    p.add_argument("--listen", metavar="HOST:PORT", help="default admin.listen (127.0.0.1:8025)")
    p.add_argument("--downstream", metavar="HOST:PORT", help="where releases go")
    p.set_defaults(func=_admin)


__all__ = ["add_commands", "open_for"]
