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
from typing import Any

from gateway.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, config_from_args
from gateway.config import Config
from gateway.delivery import make_downstream
from gateway.errors import ConfigError
from gateway.logs import replace_control_chars
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
    print(f"{'ID':<18} {'RECEIVED (UTC)':<17} {'STATUS':<9} {'KIND':<11} {'FROM':<28} SUBJECT")
    for item in page.items:
        print(
            f"{item.id:<18} {item.received_at:%Y-%m-%d %H:%M} {item.status:<9} "
            f"{item.kind:<11} {_show(item.envelope_from)[:28]:<28} {_show(item.subject)[:60]}"
        )
    print(f"({len(page.items)} of {page.total})")
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
    for label, value in (
        ("id", s.id),
        ("kind", s.kind),
        ("status", s.status + (" (a release was interrupted)" if s.interrupted else "")),
        ("received", s.received_at.isoformat()),
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
    ):
        print(f"{label + ':':<16}{_show(value)}")
    for finding in item.report.get("findings", []):
        print(f"  finding {finding['code']} part {finding['part_id']}: {_show(finding['detail'])}")
    for attachment in item.report.get("attachments", []):
        print(
            f"  attachment {attachment['part_id']} {_show(attachment['untrusted_filename'])!r} "
            f"detected {attachment['detected_type']} → {attachment['action'] or '-'}"
        )
    print("history:")
    for change in store.history(args.id):
        print(
            f"  {change.at:%Y-%m-%d %H:%M:%S} {change.from_status or '-'} → {change.to_status} "
            f"by {_show(change.actor)} {_show(change.reason)}"
        )
    return EXIT_OK


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
    for r in requests:
        print(
            f"{r.id:>5} {r.status:<9} {r.item_id:<18} {r.target:<9} by {_show(r.requested_by)}: "
            f"{_show(r.reason)}"
        )
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
                store, downstream, args.request_id, cli_actor(), approve, args.reason
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
    for user in users:
        state = "disabled" if user.disabled else "active"
        login = "password" if user.has_password else "sso-only"
        print(f"{user.username:<20} {user.role:<13} {state:<8} {login:<9} {','.join(user.domains)}")
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

    p = sub.add_parser("admin", parents=[common], help="run the admin web UI and API alone")
    p.add_argument("--listen", metavar="HOST:PORT", help="default admin.listen (127.0.0.1:8025)")
    p.add_argument("--downstream", metavar="HOST:PORT", help="where releases go")
    p.set_defaults(func=_admin)


__all__ = ["add_commands", "open_for"]
