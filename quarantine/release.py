"""Release: send a held item through the normal downstream, exactly once.

Sequence, each step its own transaction:

1. check: the item is visible to the actor (else ItemNotFound, as if it did not exist), the
   actor's role allows this release, a reason is given;
2. **claim**: ``UPDATE items SET status='releasing' … WHERE id=? AND status='held'``. Of two
   admins or two nodes releasing at once, the database lets exactly one UPDATE match; the other
   gets ReleaseRefused. A released item is claimed again only with ``force``;
3. send with ``gateway.delivery.deliver`` (the same downstream as the gateway's, so the same
   TLS, XFORWARD and pool settings), with ``X-Mugaika-Released-By/-At/-Reason`` prepended;
4. **finish** (``released``) after the downstream's 250, or **undo** (back to the previous
   status) when it refused or was unreachable, so the admin can try again.

Crash between claim and finish (the process dies, the node loses power): the item stays
``releasing``. ``SqlStore.recover_stale_claims`` (run by the periodic task in ``serve`` and by
``mugaika quarantine purge``) returns claims older than ``quarantine.release.stale_claim_minutes``
to their previous status and marks them *interrupted*. Whether the downstream got the message
before the crash cannot be known from here, so an interrupted item is never re-sent
automatically: releasing it needs ``--force`` after checking the downstream's log for its
Message-ID. Never lost, never sent twice without a human deciding so.

Originals and the two-person rule (``quarantine.release.originals``): with ``two_person``, an
original can only leave through an approved request (``request_release`` by one person,
``approve_request`` by a different person with the ``approve`` permission). Sanitized copies
need no approval.

Where a release may go (``to``): a tenant admin only to addresses in their own domains (a role
without domains, such as an approver of every tenant: the item's own recipient domains); a
superadmin anywhere, and the audit entry then lists ``outside_item_domains``. A request's
``to`` is checked when it is made and again when it is carried out.

Every ``X-Mugaika-*`` field of the stored bytes is removed before ours are added (the sanitized
copy's describe its arrival, an original's were written by its sender), and the release writes
a summary of the released message itself (``released_summary``), so a recipient can trust
what they read there.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import re
from dataclasses import dataclass, field
from email.header import Header
from typing import Any

from gateway.config import RequestsConfig
from gateway.delivery import Downstream, deliver
from gateway.errors import DownstreamRefused, DownstreamUnavailable
from gateway.logs import log_fields, quarantine_log, replace_control_chars
from gateway.message import Recipient
from gateway.mime import split_header_block
from gateway.report import Report
from gateway.requests import mail_decision
from quarantine.errors import BlobCorrupt, PermissionDenied, ReleaseFailed, UserError
from quarantine.sql import Item, SqlStore
from quarantine.users import Actor, utcnow

MAX_REASON = 1000
# What leaves the quarantine: the same two words in the API, the web form and the CLI.
TARGETS = ("sanitized", "original")
_ADDRESS = re.compile(r"^[^@\s<>()\[\],;:\"]{1,64}@[A-Za-z0-9.-]{1,253}$")


@dataclass(frozen=True, slots=True)
class ReleaseResult:
    item_id: str
    target: str  # original | sanitized
    recipients: list[str]
    refused: dict[str, str] = field(default_factory=dict)
    reply: str = ""
    queue_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.item_id,
            "target": self.target,
            "recipients": self.recipients,
            "refused": self.refused,
            "reply": self.reply,
            "queue_id": self.queue_id,
        }


def check_target(target: str) -> str:
    if target not in TARGETS:
        raise UserError(
            "say which copy to release: target sanitized or target original", key="target"
        )
    return target


def check_reason(reason: str) -> str:
    reason = " ".join((reason or "").split())
    if not reason:
        raise UserError("a reason is required", key="reason")
    return reason[:MAX_REASON]


def check_addresses(addresses: list[str]) -> list[str]:
    out = []
    for untrusted_address in addresses:
        address = untrusted_address.strip()
        if not _ADDRESS.match(address):
            shown = replace_control_chars(address)[:100]
            raise UserError(f"not an e-mail address: {shown!r}", key="address", address=shown)
        out.append(address)
    if not out:
        raise UserError("no recipient address given", key="no_address")
    return out


def _without_our_fields(data: bytes) -> bytes:
    """``data`` without any ``X-Mugaika-*`` field: the stored sanitized copy's describe the
    arrival (``Verdict: quarantine``), an original's were written by its sender."""
    fields, offset = split_header_block(data)
    if not any(f.name.lower().startswith("x-mugaika-") for f in fields):
        return data
    kept = b"".join(f.raw + b"\r\n" for f in fields if not f.name.lower().startswith("x-mugaika-"))
    return kept + b"\r\n" + data[offset:]


def released_summary(item: Item, target: str) -> bytes:
    """The ``X-Mugaika-*`` summary of the released message itself (issue 12: a released
    sanitized copy said ``Verdict: quarantine`` and ``stripped=0`` although its attachment
    was gone).

    ``Actions`` counts what was done to *this* copy, with the keys of the delivery headers
    (``gateway.notice.summary_headers``): for the sanitized copy, ``stripped`` is every
    attachment not in it (stripped, or held in quarantine); for the original, all are 0.
    ``Findings`` are those of the received message (what an original still contains)."""
    report = Report.from_dict(item.report)
    if target == "sanitized":
        counts = {
            "html": report.count_actions("html-to-text") + report.count_actions("html-sanitized"),
            "urls": report.count_actions("urls-defanged") + report.count_actions("urls-removed"),
            "rebuilt": sum(1 for a in report.attachments if a.action in ("rebuilt", "both")),
            "rasterized": sum(1 for a in report.attachments if a.action == "rasterized"),
            "stripped": sum(1 for a in report.attachments if a.action in ("stripped", "held")),
        }
    else:
        counts = dict.fromkeys(("html", "urls", "rebuilt", "rasterized", "stripped"), 0)
    fields = [
        ("X-Mugaika-Verdict", "released"),
        ("X-Mugaika-Released-Target", target),
        ("X-Mugaika-Policy", report.policy or "default"),
        ("X-Mugaika-Actions", "; ".join(f"{k}={v}" for k, v in counts.items())),
        ("X-Mugaika-Reference", item.id),
    ]
    codes = sorted(report.finding_codes())
    if codes:
        value = ", ".join(codes)
        if len(value) > 900:
            value = value[:900].rsplit(",", 1)[0] + ", ..."
        fields.append(("X-Mugaika-Findings", value))
    return "".join(f"{name}: {replace_control_chars(value)}\r\n" for name, value in fields).encode(
        "ascii", "replace"
    )


def release_headers(actor: Actor, reason: str, when: datetime.datetime) -> bytes:
    """The three trace headers (RFC 5322 folded; RFC 2047 for a non-ASCII reason or name)."""

    def encoded(name: str, value: str) -> str:
        value = replace_control_chars(value)
        header = Header(value, "utf-8", header_name=name) if not value.isascii() else None
        text = header.encode(linesep="\r\n") if header else value
        return f"{name}: {text}\r\n"

    return (
        encoded("X-Mugaika-Released-By", actor.name)
        + encoded("X-Mugaika-Released-At", email.utils.format_datetime(when))
        + encoded("X-Mugaika-Released-Reason", reason)
    ).encode("ascii")


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower().rstrip(".")


def check_destination(item: Item, actor: Actor, addresses: list[str]) -> None:
    """Refuse ``to`` addresses outside the actor's own domains (issue 11).

    A tenant admin's own domains are their ``domains``; a role without domains (an approver of
    every tenant) may send only within the item's own recipient domains. Only a superadmin may
    send anywhere (``release`` audits where it went outside the item's domains)."""
    if actor.role == "superadmin":
        return
    own = actor.domains or frozenset(item.domains)
    outside = [a for a in addresses if _domain(a) not in own]
    if outside:
        shown = ", ".join(replace_control_chars(a)[:100] for a in outside[:5])
        domains = ", ".join(sorted(own))
        raise PermissionDenied(
            f"{shown}: outside your domains ({domains}); only a superadmin may "
            "release to other addresses",
            key="outside_domains",
            addresses=shown,
            domains=domains,
        )


def outside_item_domains(item: Item, addresses: list[str]) -> list[str]:
    """The addresses whose domain is none of the item's recipient domains."""
    domains = {d.lower() for d in item.domains}
    return [a for a in addresses if _domain(a) not in domains]


def _recipients(item: Item, actor: Actor, to: list[str] | None) -> list[Recipient]:
    if to:
        addresses = check_addresses(to)
        check_destination(item, actor, addresses)
        return [Recipient(address) for address in addresses]
    scope = actor.scope
    chosen = [
        Recipient(r["address"], tuple(r.get("options", ())))
        for r in item.recipient_options
        if scope is None or r["address"].rpartition("@")[2].lower() in scope
    ]
    if not chosen:
        raise UserError(
            "none of the original recipients is in your domains; give --to", key="no_recipient"
        )
    return chosen


def planned_recipients(item: Item, actor: Actor, to: list[str] | None) -> list[str]:
    """Who a release by ``actor`` would go to (the confirmation page shows this); raises the
    same errors as ``release`` would."""
    return [r.address for r in _recipients(item, actor, to)]


def check_release(
    item: Item, actor: Actor, target: str, policy: str, approved_request: int | None = None
) -> None:
    """Raise PermissionDenied or UserError when ``actor`` may not release ``target`` now."""
    if approved_request is not None:
        if not actor.can("approve"):
            raise PermissionDenied(
                "only an approver can carry out an approved request", key="approver_only"
            )
    elif target == "sanitized":
        if not actor.can("release-sanitized"):
            raise PermissionDenied("your role may not release messages", key="role_release")
    else:
        if not actor.can("release-original"):
            raise PermissionDenied("your role may not release originals", key="role_original")
        if policy == "two_person":
            raise PermissionDenied(
                "releasing an original needs a second person (release.originals: two_person): "
                "request it, and an approver approves",
                key="two_person",
            )
    if target == "sanitized" and not item.sanitized_available:
        raise UserError(f"{item.id} has no sanitized copy", key="no_sanitized", id=item.id)


async def release(
    store: SqlStore,
    downstream: Downstream,
    item_id: str,
    actor: Actor,
    reason: str,
    *,
    target: str,
    to: list[str] | None = None,
    force: bool = False,
    policy: str = "single",
    approved_request: int | None = None,
) -> ReleaseResult:
    """Release ``target`` (sanitized or original) of ``item_id`` once; see the module
    docstring for every refusal and failure. There is no default target: the caller says."""
    target = check_target(target)
    sanitized = target == "sanitized"
    reason = check_reason(reason)
    item = await asyncio.to_thread(store.get, item_id, actor.scope)
    check_release(item, actor, target, policy, approved_request)
    recipients = _recipients(item, actor, to)
    claim = await asyncio.to_thread(store.claim, item_id, actor, force)
    try:
        data = await asyncio.to_thread(store.sanitized if sanitized else store.original, item_id)
        now = utcnow()
        message = (
            release_headers(actor, reason, now)
            + released_summary(item, target)
            + _without_our_fields(data)
        )
        mail_options = [o for o in item.mail_options if o.upper().startswith(("BODY=", "SMTPUTF8"))]
        result, refused = await deliver(
            downstream,
            item.summary.envelope_from,
            recipients,
            message,
            mail_options=mail_options,
            smtputf8=any(o.upper() == "SMTPUTF8" for o in mail_options),
        )
    except (DownstreamUnavailable, DownstreamRefused, BlobCorrupt) as exc:
        await asyncio.to_thread(store.undo_claim, claim, actor, f"release failed: {exc}")
        await asyncio.to_thread(
            store.audit,
            actor,
            "release-failed",
            item_id,
            item.summary.tenant,
            target=target,
            reason=reason,
            error=f"{exc.code}: {exc}",
        )
        raise ReleaseFailed(
            f"{exc.code}: {exc}", key="release_failed", reply=f"{exc.code}: {exc}"
        ) from None
    except BaseException:
        # Anything else before the downstream's 250: nothing was accepted; give the item back.
        await asyncio.shield(asyncio.to_thread(store.undo_claim, claim, actor, "release aborted"))
        raise
    await asyncio.to_thread(store.finish_release, claim, actor, reason)
    outside = outside_item_domains(item, [r.address for r in recipients])
    outcome = ReleaseResult(
        item_id=item_id,
        target=target,
        recipients=[r.address for r in recipients if r.address not in refused],
        refused={address: str(reply) for address, reply in refused.items()},
        reply=str(result.reply),
        queue_id=result.queue_id,
    )
    await asyncio.to_thread(
        store.audit,
        actor,
        "released",
        item_id,
        item.summary.tenant,
        target=target,
        reason=reason,
        force=force,
        request=approved_request,
        **{"to": outcome.recipients, "refused": outcome.refused, "queue_id": result.queue_id},
        # A superadmin's destination, or a tenant admin's other domain (check_destination):
        # said explicitly, so a reviewer need not compare domains by eye.
        **({"outside_item_domains": outside} if outside else {}),
    )
    log_fields(
        quarantine_log,
        30 if outside else 20,
        "released",
        ref=item_id,
        by=actor.name,
        target=target,
        rcpt=",".join(outcome.recipients),
        outside=",".join(outside),
        downstream_id=result.queue_id,
    )
    return outcome


def request_release(
    store: SqlStore,
    item_id: str,
    actor: Actor,
    reason: str,
    to: list[str] | None = None,
    target: str = "original",
) -> int:
    """Record a request to release (normally an original) for an approver to decide."""
    target = check_target(target)
    reason = check_reason(reason)
    if to:
        to = check_addresses(to)
        check_destination(store.get(item_id, actor.scope), actor, to)
    return store.create_request(
        item_id,
        actor,
        reason,
        target=target,
        to_addresses=to,
        scope=actor.scope,
    )


async def decide_request(
    store: SqlStore,
    downstream: Downstream,
    request_id: int,
    actor: Actor,
    approve: bool,
    reason: str,
    requests: RequestsConfig | None = None,
) -> ReleaseResult | None:
    """Approve (and carry out) or refuse a request. The approver must not be the requester.
    A request that came by mail (``gateway.requests``) gets the result by mail when
    ``requests`` (the ``requests:`` configuration) names the request address."""
    if not actor.can("approve"):
        raise PermissionDenied("your role may not decide release requests", key="role_decide")
    reason = check_reason(reason)
    request = await asyncio.to_thread(store.get_request, request_id, actor.scope)
    if request.requested_by == actor.name:
        raise PermissionDenied(
            "a different person must decide on your own request", key="own_request"
        )
    await asyncio.to_thread(store.decide_request, request_id, actor, approve, reason, actor.scope)

    async def tell_requester(result: str) -> None:
        sent = await mail_decision(
            requests, downstream, request.requested_by, request.item_id, request_id, result, reason
        )
        if sent:
            await asyncio.to_thread(
                store.audit,
                actor,
                "request-result-mailed",
                request.item_id,
                request.tenant,
                request=request_id,
                result=result,
                to=request.requested_by,
            )

    if not approve:
        await tell_requester("refused")
        return None
    try:
        result = await release(
            store,
            downstream,
            request.item_id,
            actor,
            f"{request.reason} (requested by {request.requested_by}; approved: {reason})",
            target=request.target,
            to=request.to_addresses,
            approved_request=request_id,
        )
    except Exception:
        await asyncio.to_thread(store.close_request, request_id, "failed")
        await tell_requester("release-failed")
        raise
    await asyncio.to_thread(store.close_request, request_id, "done")
    await tell_requester("approved")
    return result
