"""The daily digest: one mail a day, in Japanese, listing what was held (issue 16).

For every tenant with ``tenants.<domain>.digest.enabled``, once per local day
(``time_zone``):

- each recipient in the tenant's domain who had mail held since the last digest gets the list
  of *their* held messages (``digest.recipients``, default on);
- each address in ``digest.admins`` gets the tenant's whole list, with the recipients;
- every entry gives the time received (in the configured zone), the sender, the subject,
  why it was held (in words), and its reference id; the mail says how to ask for a release
  (``digest.contact``, else "your system administrator") and that nothing needs doing for
  mail one does not recognise.

Only messages held back (``kind`` quarantined, still ``held``) are listed: retained originals
of delivered mail were delivered, and released or deleted ones need no action.

Sent through the normal downstream (``gateway.delivery.deliver``) from ``digest.sender``, as
``Auto-Submitted: auto-generated`` (RFC 3834) so that auto-responders stay quiet. The period
runs from the end of the tenant's previous digest (at most seven days back; the first covers
the last 24 hours) to now, so nothing falls between two digests.

Once a day, whatever the number of nodes: a row in ``digest_runs`` keyed by (tenant, local
day) is inserted before anything is sent; the node whose INSERT succeeds sends, the others
skip. If the downstream accepts none of a run's mails, the claim is withdrawn so the next
attempt (the scheduler tries every minute) sends it; once one mail is accepted the run
stands, and refused addresses are reported (and logged), never sent twice.

Not done here: scheduling (``quarantine/web/service.py`` runs ``due_tenants`` every minute
in ``serve``), and HTML: the digest is plain text, like the notices.
"""

from __future__ import annotations

import datetime
import email.utils
import secrets
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from gateway.config import Config
from gateway.delivery import Downstream, deliver
from gateway.errors import DownstreamRefused, DownstreamUnavailable
from gateway.logs import log_fields, quarantine_log, replace_control_chars
from gateway.message import Recipient
from gateway.notice import local_time
from gateway.sanitizers.urls import defang_untrusted
from quarantine import db
from quarantine.schema import digest_runs
from quarantine.sql import ItemQuery, ItemSummary, SqlStore
from quarantine.users import Actor
from quarantine.words import reason_words

FIRST_PERIOD = datetime.timedelta(hours=24)
LONGEST_PERIOD = datetime.timedelta(days=7)
MAX_ITEMS = 1000  # per tenant and day; more are counted, not listed


@dataclass(frozen=True, slots=True)
class DigestMail:
    to: str
    subject: str
    body: str
    items: tuple[ItemSummary, ...]


@dataclass(slots=True)
class DigestRun:
    tenant: str
    day: str
    period_start: datetime.datetime
    period_end: datetime.datetime
    mails: list[DigestMail] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: str = ""  # why nothing was sent (already sent today by some node)


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower().rstrip(".")


def sender(config: Config) -> str:
    return config.digest.sender or f"mugaika-digest@{config.hostname}"


def _entry(number: int, item: ItemSummary, zone: datetime.tzinfo, with_recipients: bool) -> str:
    def clean(value: str) -> str:
        return replace_control_chars(value)[:200]

    def quoted(untrusted: str) -> str:
        # The sender's own words: defanged like a body, or the digest carries their links.
        return defang_untrusted(clean(untrusted))

    reasons = "、".join(reason_words(r, "ja") for r in item.reasons) or "ポリシーによる"
    lines = [
        f"{number}. 件名: {quoted(item.subject) or '（件名なし）'}",
        f"   差出人: {quoted(item.header_from or item.envelope_from)}",
        f"   受信日時: {local_time(item.received_at, zone)}",
        f"   保留の理由: {clean(reasons)}",
        f"   参照番号: {item.id}",
    ]
    if with_recipients:
        lines.insert(2, f"   宛先: {clean(', '.join(item.recipients))}")
    return "\n".join(lines)


def compose(
    config: Config,
    tenant: str,
    to: str,
    held: list[ItemSummary],
    start: datetime.datetime,
    end: datetime.datetime,
    for_admin: bool,
) -> DigestMail:
    """The digest for one address (see the module docstring for what it says)."""
    zone = config.zone
    settings = config.tenants[tenant]
    name = settings.name or tenant
    contact = settings.digest.contact or "システム管理者"
    day = end.astimezone(zone)
    subject = f"【保留メールのお知らせ】{day:%Y年%m月%d日} {len(held)}件"
    if for_admin:
        subject = f"【保留メール一覧】{name} {day:%Y年%m月%d日} {len(held)}件"
    shown = held[:MAX_ITEMS]
    intro = (
        f"{name}で、次の {len(held)} 件のメールを安全のため保留しています"
        if for_admin
        else f"{to} 様宛てに届いた次の {len(held)} 件のメールを、安全のため保留しています"
    )
    body = [
        "【保留メールのお知らせ】",
        f"{intro}（{local_time(start, zone)} から {local_time(end, zone)} までに届いたもの）。",
        "",
        *(_entry(n, item, zone, for_admin) + "\n" for n, item in enumerate(shown, 1)),
    ]
    if len(held) > len(shown):
        body.append(f"ほか {len(held) - len(shown)} 件は管理画面でご確認ください。\n")
    if for_admin:
        body += [
            "解放や削除は管理画面で、またはコマンドで行えます:",
            "  mugaika quarantine show 参照番号",
            "  mugaika quarantine release 参照番号 --sanitized --reason 理由",
        ]
    else:
        body += [
            f"必要なメールの場合は、参照番号を添えて{contact}に解放を依頼してください。",
            "確認のうえ、安全な形に処理した写しなどをお届けします。",
            *_request_lines(config),
            "心当たりのないメールは、何もする必要はありません。"
            f"保管期間（{config.quarantine.retention_days}日）を過ぎると自動的に削除されます。",
        ]
    body += ["", "─" * 30, "このメールはメールゲートウェイ（無害化）が自動で送信しています。"]
    return DigestMail(to, subject, "\n".join(body) + "\n", tuple(held))


def _request_lines(config: Config) -> list[str]:
    """How to ask by mail (``requests.address``, gateway/requests.py), when it is on."""
    address = config.requests.address
    if not address:
        return []
    return [
        f"メールでも依頼できます: 件名に参照番号を書いて {address} 宛てに送ってください"
        "（本文の1行目に理由）。パスワード付き圧縮ファイルの場合は、本文に"
        "「パスワード：（パスワード）」と書いて送ると、ゲートウェイが開いて検査します。",
    ]


def message_bytes(config: Config, mail: DigestMail, now: datetime.datetime) -> bytes:
    message = EmailMessage(policy=SMTP)
    message["From"] = sender(config)
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Date"] = email.utils.format_datetime(now.astimezone(config.zone))
    message["Message-ID"] = email.utils.make_msgid("digest", _domain(sender(config)))
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies
    message["X-Mugaika-Digest"] = "daily"
    message.set_content(mail.body, charset="utf-8")
    return message.as_bytes()


def plan(
    store: SqlStore,
    config: Config,
    tenant: str,
    start: datetime.datetime,
    end: datetime.datetime,
) -> list[DigestMail]:
    """The mails of one tenant's digest for ``[start, end)``; empty when nothing was held."""
    settings = config.tenants[tenant].digest
    page = store.list(
        ItemQuery(
            status="held",
            kind="quarantined",
            tenant=tenant,
            since=start,
            until=end,
            limit=MAX_ITEMS,
        )
    )
    held = sorted(page.items, key=lambda i: i.received_at)
    if not held:
        return []
    mails = []
    if settings.recipients:
        by_recipient: dict[str, list[ItemSummary]] = {}
        for item in held:
            for address in item.recipients:
                if _domain(address) == tenant:
                    by_recipient.setdefault(address.lower(), []).append(item)
        for address, theirs in sorted(by_recipient.items()):
            mails.append(compose(config, tenant, address, theirs, start, end, for_admin=False))
    for address in settings.admins:
        mails.append(compose(config, tenant, address, held, start, end, for_admin=True))
    return mails


def _period_start(store: SqlStore, tenant: str, now: datetime.datetime) -> datetime.datetime:
    with store.engine.connect() as conn:
        last = conn.execute(
            select(digest_runs.c.period_end)
            .where(digest_runs.c.tenant == tenant)
            .order_by(digest_runs.c.period_end.desc())
            .limit(1)
        ).scalar()
    if last is None:
        return now - FIRST_PERIOD
    if last.tzinfo is None:
        last = last.replace(tzinfo=datetime.UTC)
    return max(last, now - LONGEST_PERIOD)


def _claim(store: SqlStore, run: DigestRun, now: datetime.datetime, node: str) -> bool:
    try:
        with db.write_transaction(store.engine) as conn:
            conn.execute(
                insert(digest_runs).values(
                    tenant=run.tenant,
                    day=run.day,
                    claimed_at=now,
                    claimed_by=node,
                    period_start=run.period_start,
                    period_end=run.period_end,
                    mails=0,
                    items=0,
                )
            )
    except IntegrityError:
        return False
    return True


def enabled_tenants(config: Config) -> list[str]:
    return sorted(d for d, t in config.tenants.items() if t.digest.enabled)


def due_tenants(store: SqlStore, config: Config, now: datetime.datetime) -> list[str]:
    """Tenants whose digest of today is due (``digest.send_at`` passed) and not yet sent."""
    if config.digest.send_at is None:
        return []
    local = now.astimezone(config.zone)
    hour, minute = (int(x) for x in config.digest.send_at.split(":"))
    if (local.hour, local.minute) < (hour, minute):
        return []
    tenants = enabled_tenants(config)
    if not tenants:
        return []
    with store.engine.connect() as conn:
        done = set(
            conn.execute(
                select(digest_runs.c.tenant).where(
                    digest_runs.c.day == local.date().isoformat(),
                    digest_runs.c.tenant.in_(tenants),
                )
            ).scalars()
        )
    return [t for t in tenants if t not in done]


async def send(
    store: SqlStore,
    config: Config,
    downstream: Downstream,
    now: datetime.datetime | None = None,
    tenants: list[str] | None = None,
    dry_run: bool = False,
    node: str = "",
) -> list[DigestRun]:
    """Send today's digest of ``tenants`` (default: every enabled one) once; see the module
    docstring. ``dry_run`` composes without claiming or sending."""
    import asyncio

    now = now or datetime.datetime.now(datetime.UTC)
    node = node or f"{config.hostname}:{secrets.token_hex(3)}"
    day = now.astimezone(config.zone).date().isoformat()
    runs = []
    for tenant in tenants if tenants is not None else enabled_tenants(config):
        start = await asyncio.to_thread(_period_start, store, tenant, now)
        run = DigestRun(tenant, day, start, now)
        runs.append(run)
        if not dry_run and not await asyncio.to_thread(_claim, store, run, now, node):
            run.skipped = "already sent today"
            continue
        run.mails = await asyncio.to_thread(plan, store, config, tenant, start, now)
        if dry_run:
            continue
        for mail in run.mails:
            data = message_bytes(config, mail, now)
            try:
                await deliver(downstream, sender(config), [Recipient(mail.to)], data)
            except (DownstreamRefused, DownstreamUnavailable) as exc:
                run.failed[mail.to] = f"{exc.code}: {exc}"
            else:
                run.sent.append(mail.to)
        await asyncio.to_thread(_finish, store, run, now)
    return runs


def _finish(store: SqlStore, run: DigestRun, now: datetime.datetime) -> None:
    key = (digest_runs.c.tenant == run.tenant, digest_runs.c.day == run.day)
    with db.write_transaction(store.engine) as conn:
        if run.failed and not run.sent:
            # Nothing was accepted: withdraw the claim so that the next attempt sends it.
            conn.execute(delete(digest_runs).where(*key))
        else:
            conn.execute(
                update(digest_runs)
                .where(*key)
                .values(
                    finished_at=now,
                    mails=len(run.sent),
                    items=len({i.id for m in run.mails for i in m.items}),
                )
            )
    if run.mails:
        store.audit(
            Actor("system:digest", "superadmin", remote="local"),
            "digest-sent",
            None,
            run.tenant,
            day=run.day,
            sent=run.sent,
            failed=run.failed,
        )
    log_fields(
        quarantine_log,
        30 if run.failed else 20,
        "digest",
        tenant=run.tenant,
        day=run.day,
        sent=len(run.sent),
        failed=len(run.failed),
    )
