"""The policy engine: compiled policies, the choice of policy per message, and ``decide``.

Shapes (the pipeline calls exactly these)::

    policy_set = load_policies(directory)                  # rules/loader.py
    policy = policy_set.for_recipients(domains, tenants)   # -> Policy
    policy.settings                                        # PolicySettings: frozen, picklable
    decision = policy.decide(report, envelope, headers, auth=results, message_size=n)
    decision.record(report)                                # hits, misses, verdict, reasons

``decide`` evaluates *every* enabled rule and records hits and misses (Mailman's rule_hits and
rule_misses) before choosing: the most severe enforced action wins, in ``Verdict`` order
(deliver < tag < quarantine < reject). Rules in ``monitor`` mode are recorded as hits with
``enforced=False`` and change nothing. ``skip-sanitizer`` takes effect only when the sender
authenticated (DKIM aligned with From:, or DMARC pass) as one of the rule's
``trusted_domains`` (``rules.conditions.authenticated_for``); otherwise it is recorded as
refused.

Recipients of one message that belong to tenants with different policies get the strictest
combination of those policies (``strictest``): per content class the strictest action, the
smaller limits, and every rule of every policy. A recipient that is not a configured tenant
gets the default policy, which takes part in the combination like any other.

Everything here is plain data and picklable: a ``PolicySet`` can be built in the main process
and handed to workers. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from gateway.auth import AuthResults
from gateway.message import Envelope
from gateway.report import Report, RuleHit, Verdict
from gateway.sanitizers.base import CONTENT_CLASSES, Action, SanitizeOptions
from rules import schema
from rules.conditions import Condition, Facts, authenticated_for, compile_condition

VERDICT_OF_ACTION = {
    "deliver": Verdict.DELIVER,
    "skip-sanitizer": Verdict.DELIVER,
    "tag": Verdict.TAG,
    "quarantine": Verdict.QUARANTINE,
    "reject": Verdict.REJECT,
}

# Orders used to combine policies: a later entry is stricter.
_ATTACHMENT_STRICTNESS = ("keep", "rebuild", "both", "rasterize", "strip", "quarantine")
_STRICTNESS = {
    "html": ("sanitize", "to-text"),
    "url_mode": ("keep", "defang", "remove"),
    "signed": ("deliver-unmodified-if-clean", "deliver-modified", "quarantine"),
    "on_sanitize_failure": ("strip", "quarantine"),
    "csv_formulas": ("neutralize", "quarantine"),
    "pdf_url_text": ("rasterize-pages", "quarantine"),
    "legacy_office": ("convert", "quarantine"),
    "ambiguous_mime": ("rebuild", "quarantine"),
}


T = TypeVar("T", bound=str)


def _stricter(order: Sequence[str], a: T, b: T) -> T:
    return a if order.index(a) >= order.index(b) else b


# ---------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True, slots=True)
class UrlPolicy:
    mode: str = "defang"
    allow_domains: tuple[str, ...] = ()
    mailto: bool = False


@dataclass(frozen=True, slots=True)
class NoticePolicy:
    language: str = "ja"
    charset: str = "utf-8"
    templates: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Limits:
    max_depth: int = 10
    max_parts: int = 500
    max_decoded_size: int = 100 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class PasswordMail:
    """``password_mail`` of a policy (see ``rules.schema.PasswordMailSettings``)."""

    pair: bool = False
    window: int = 3600
    max_wrong: int = 5


@dataclass(frozen=True, slots=True)
class PolicySettings:
    """What the sanitizers and the notice read. Frozen plain data (crosses into workers)."""

    name: str
    attachments: tuple[tuple[str, Action], ...]  # content class -> action, for CONTENT_CLASSES
    archive_members: tuple[tuple[str, Action], ...]  # overrides for members of archives
    on_sanitize_failure: str = "quarantine"
    html: str = "to-text"
    urls: UrlPolicy = UrlPolicy()
    notice: NoticePolicy = NoticePolicy()
    signed: str = "deliver-modified"
    ambiguous_mime: str = "rebuild"
    limits: Limits = Limits()
    tag_header: str = "X-Mugaika-Tag"
    rasterize_dpi: int = 150
    max_pages: int = 300
    max_image_pixels: int = 64_000_000
    archive_max_depth: int = 3
    archive_max_members: int = 1000
    archive_max_total_size: int = 256 * 1024 * 1024
    archive_max_ratio: int = 200
    csv_formulas: str = "neutralize"
    pdf_url_text: str = "rasterize-pages"
    legacy_office: str = "convert"
    # password_mail (gateway/ppap.py): pair, window in seconds, max_wrong
    password_mail: PasswordMail = PasswordMail()

    def action_for(self, content_class: str) -> Action:
        """The action for a content class; a class the policy does not know is ``unknown``."""
        actions = dict(self.attachments)
        return actions.get(content_class, actions.get("unknown", "strip"))

    def member_actions(self) -> tuple[tuple[str, Action], ...]:
        """Actions for archive members: ``attachments`` with ``archive_members`` on top."""
        merged = dict(self.attachments)
        merged.update(dict(self.archive_members))
        return tuple(sorted(merged.items()))

    def sanitize_options(self, content_class: str) -> SanitizeOptions:
        """``SanitizeOptions`` for one attachment of ``content_class``."""
        mode = self.action_for(content_class)
        return SanitizeOptions(
            mode=mode if mode in ("rebuild", "rasterize", "both") else "rebuild",
            defang_urls=self.urls.mode != "keep",
            rasterize_dpi=self.rasterize_dpi,
            max_pages=self.max_pages,
            max_image_pixels=self.max_image_pixels,
            archive_max_depth=self.archive_max_depth,
            archive_max_members=self.archive_max_members,
            archive_max_total_size=self.archive_max_total_size,
            archive_max_ratio=self.archive_max_ratio,
            member_actions=self.member_actions(),
            csv_formulas=self.csv_formulas,
            pdf_url_text=self.pdf_url_text,
            legacy_office=self.legacy_office,
        )

    @classmethod
    def from_model(cls, name: str, model: schema.PolicyFile) -> PolicySettings:
        members = model.sanitize.archive_members.model_dump()
        return cls(
            name=name,
            attachments=tuple(model.attachments.model_dump().items()),
            archive_members=tuple((k, v) for k, v in members.items() if v is not None),
            on_sanitize_failure=model.on_sanitize_failure,
            html=model.html,
            urls=UrlPolicy(model.urls.mode, tuple(model.urls.allow_domains), model.urls.mailto),
            notice=NoticePolicy(
                model.notice.language,
                model.notice.charset,
                tuple(sorted(model.notice.templates.items())),
            ),
            signed=model.signed,
            ambiguous_mime=model.ambiguous_mime,
            limits=Limits(
                model.limits.max_depth, model.limits.max_parts, int(model.limits.max_decoded_size)
            ),
            tag_header=model.tag_header,
            rasterize_dpi=model.sanitize.rasterize_dpi,
            max_pages=model.sanitize.max_pages,
            max_image_pixels=model.sanitize.max_image_pixels,
            archive_max_depth=model.sanitize.archive_max_depth,
            archive_max_members=model.sanitize.archive_max_members,
            archive_max_total_size=int(model.sanitize.archive_max_total_size),
            archive_max_ratio=model.sanitize.archive_max_ratio,
            csv_formulas=model.sanitize.csv_formulas,
            pdf_url_text=model.sanitize.pdf_url_text,
            legacy_office=model.sanitize.legacy_office,
            password_mail=PasswordMail(
                model.password_mail.pair,
                model.password_mail.window,
                model.password_mail.max_wrong,
            ),
        )


def strictest_settings(name: str, all_settings: Sequence[PolicySettings]) -> PolicySettings:
    """The strictest combination: per class the strictest action, the smallest limits."""
    first = all_settings[0]
    result = replace(first, name=name)
    for other in all_settings[1:]:
        mine, theirs = dict(result.attachments), dict(other.attachments)
        attachments = tuple(
            (c, _stricter(_ATTACHMENT_STRICTNESS, mine[c], theirs[c])) for c in CONTENT_CLASSES
        )
        members_a = dict(result.member_actions())
        members_b = dict(other.member_actions())
        members = tuple(
            (c, _stricter(_ATTACHMENT_STRICTNESS, members_a[c], members_b[c]))
            for c in CONTENT_CLASSES
            if c in members_a and c in members_b
        )
        allow = tuple(sorted(set(result.urls.allow_domains) & set(other.urls.allow_domains)))
        result = replace(
            result,
            attachments=attachments,
            archive_members=members,
            on_sanitize_failure=_stricter(
                _STRICTNESS["on_sanitize_failure"],
                result.on_sanitize_failure,
                other.on_sanitize_failure,
            ),
            html=_stricter(_STRICTNESS["html"], result.html, other.html),
            urls=UrlPolicy(
                _stricter(_STRICTNESS["url_mode"], result.urls.mode, other.urls.mode),
                allow,
                result.urls.mailto and other.urls.mailto,
            ),
            signed=_stricter(_STRICTNESS["signed"], result.signed, other.signed),
            ambiguous_mime=_stricter(
                _STRICTNESS["ambiguous_mime"], result.ambiguous_mime, other.ambiguous_mime
            ),
            limits=Limits(
                min(result.limits.max_depth, other.limits.max_depth),
                min(result.limits.max_parts, other.limits.max_parts),
                min(result.limits.max_decoded_size, other.limits.max_decoded_size),
            ),
            rasterize_dpi=min(result.rasterize_dpi, other.rasterize_dpi),
            max_pages=min(result.max_pages, other.max_pages),
            max_image_pixels=min(result.max_image_pixels, other.max_image_pixels),
            archive_max_depth=min(result.archive_max_depth, other.archive_max_depth),
            archive_max_members=min(result.archive_max_members, other.archive_max_members),
            archive_max_total_size=min(result.archive_max_total_size, other.archive_max_total_size),
            archive_max_ratio=min(result.archive_max_ratio, other.archive_max_ratio),
            csv_formulas=_stricter(
                _STRICTNESS["csv_formulas"], result.csv_formulas, other.csv_formulas
            ),
            pdf_url_text=_stricter(
                _STRICTNESS["pdf_url_text"], result.pdf_url_text, other.pdf_url_text
            ),
            legacy_office=_stricter(
                _STRICTNESS["legacy_office"], result.legacy_office, other.legacy_office
            ),
            # Pairing only when every recipient's policy pairs; the shorter window.
            password_mail=PasswordMail(
                result.password_mail.pair and other.password_mail.pair,
                min(result.password_mail.window, other.password_mail.window),
                min(result.password_mail.max_wrong, other.password_mail.max_wrong),
            ),
        )
    return result


# ---------------------------------------------------------------------------------------------
# Rules and decisions


@dataclass(frozen=True, slots=True)
class CompiledRule:
    name: str
    condition: Condition
    action: str
    reason: str
    mode: str = "enforce"
    description: str = ""
    reject_text: str | None = None
    tag: str | None = None
    skip: frozenset[str] = frozenset()
    trusted_domains: tuple[str, ...] = ()
    policy: str = ""  # the policy it came from (shown when policies are combined)

    @property
    def verdict(self) -> Verdict:
        return VERDICT_OF_ACTION[self.action]

    @classmethod
    def from_model(cls, rule: schema.Rule, policy: str) -> CompiledRule:
        return cls(
            name=rule.name,
            condition=compile_condition(rule.when),
            action=rule.action,
            reason=rule.reason or rule.name,
            mode=rule.mode,
            description=rule.description,
            reject_text=rule.reject_text,
            tag=rule.tag,
            skip=frozenset(rule.skip),
            trusted_domains=tuple(rule.trusted_domains),
            policy=policy,
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of all rules for one message.

    ``hits`` holds every rule whose condition held (monitor-mode ones with
    ``enforced=False``); ``misses`` the names of the others (and of ``skip-sanitizer`` rules
    refused for lack of authentication, explained in ``notes``). ``reasons`` are those of the
    enforced hits that set the verdict. ``tag_headers`` are (name, value) pairs from enforced
    tag rules; ``skip_classes`` the content classes an authenticated, allow-listed sender may
    keep unsanitized; ``reject_text`` the 5xx text when the verdict is REJECT."""

    verdict: Verdict
    reasons: tuple[str, ...] = ()
    hits: tuple[RuleHit, ...] = ()
    misses: tuple[str, ...] = ()
    tag_headers: tuple[tuple[str, str], ...] = ()
    skip_classes: frozenset[str] = frozenset()
    reject_text: str | None = None
    policy: str = ""
    notes: tuple[str, ...] = ()

    def record(self, report: Report) -> None:
        """Append the hits, misses, verdict and reasons to the message's report."""
        report.rule_hits.extend(self.hits)
        report.rule_misses.extend(self.misses)
        report.policy = self.policy
        for reason in self.reasons:
            report.raise_verdict(self.verdict, reason)
        if not self.reasons:
            report.raise_verdict(self.verdict, "")


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    """One policy as loaded: settings and ordered rules."""

    name: str
    settings: PolicySettings
    rules: tuple[CompiledRule, ...]
    description: str = ""
    protected_domains: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()  # files it was built from, base first


@dataclass(frozen=True, slots=True)
class Policy:
    """A policy bound to the tenants it serves (their domains are "internal")."""

    compiled: CompiledPolicy
    internal_domains: frozenset[str] = frozenset()

    @property
    def name(self) -> str:
        return self.compiled.name

    @property
    def settings(self) -> PolicySettings:
        return self.compiled.settings

    @property
    def rules(self) -> tuple[CompiledRule, ...]:
        return self.compiled.rules

    def facts(
        self,
        report: Report,
        envelope: Envelope,
        headers: Mapping[str, str],
        auth: AuthResults | None = None,
        message_size: int = 0,
    ) -> Facts:
        return Facts.gather(
            report,
            envelope,
            headers,
            auth=auth,
            message_size=message_size,
            internal_domains=self.internal_domains,
            protected_domains=self.compiled.protected_domains,
        )

    def decide(
        self,
        report: Report,
        envelope: Envelope,
        headers: Mapping[str, str],
        *,
        auth: AuthResults | None = None,
        message_size: int = 0,
    ) -> Decision:
        """Evaluate every rule, then choose. Pure; never raises for message content.

        ``auth`` (optional) gives the authenticated domains that ``skip-sanitizer`` and
        ``auth.dmarc_policy``/``authenticated_domains`` conditions need; without it those
        never hold (fail closed). ``message_size`` is the size as received, for ``size``."""
        facts = self.facts(report, envelope, headers, auth, message_size)
        hits: list[RuleHit] = []
        misses: list[str] = []
        notes: list[str] = []
        enforced: list[CompiledRule] = []
        skip: set[str] = set()
        for rule in self.compiled.rules:
            if not rule.condition.test(facts):
                misses.append(rule.name)
                continue
            if rule.action == "skip-sanitizer" and rule.mode == "enforce":
                proven = authenticated_for(facts, rule.trusted_domains)
                if proven is None:
                    misses.append(rule.name)
                    notes.append(
                        f"{rule.name}: skip-sanitizer refused: the sender did not authenticate "
                        "as a trusted domain (DKIM aligned with From:, or DMARC pass)"
                    )
                    continue
                skip |= rule.skip
            monitor = rule.mode == "monitor"
            hits.append(RuleHit(rule.name, rule.action, rule.reason, enforced=not monitor))
            if not monitor:
                enforced.append(rule)
        verdict = max((r.verdict for r in enforced), default=Verdict.DELIVER)
        reasons = tuple(dict.fromkeys(r.reason for r in enforced if r.verdict == verdict))
        if verdict == Verdict.DELIVER:
            reasons = ()
        tag_headers = tuple(
            (self.settings.tag_header, r.tag or r.reason) for r in enforced if r.action == "tag"
        )
        reject_text = None
        if verdict == Verdict.REJECT:
            reject_text = next(
                (r.reject_text or r.reason for r in enforced if r.action == "reject"), None
            )
        return Decision(
            verdict=verdict,
            reasons=reasons,
            hits=tuple(hits),
            misses=tuple(misses),
            tag_headers=tag_headers,
            skip_classes=frozenset(skip),
            reject_text=reject_text,
            policy=self.name,
            notes=tuple(notes),
        )


def strictest(policies: Sequence[CompiledPolicy]) -> CompiledPolicy:
    """One policy no weaker than any of ``policies`` (see module docstring)."""
    unique = list({p.name: p for p in policies}.values())
    if len(unique) == 1:
        return unique[0]
    name = "strictest(" + "+".join(sorted(p.name for p in unique)) + ")"
    rules: list[CompiledRule] = []
    seen: set[tuple[str, str]] = set()
    for policy in unique:
        for rule in policy.rules:
            key = (rule.name, repr(replace(rule, policy="")))
            if key in seen:
                continue  # the same inherited rule in several policies: evaluate it once
            seen.add(key)
            rules.append(rule)
    return CompiledPolicy(
        name=name,
        settings=strictest_settings(name, [p.settings for p in unique]),
        rules=tuple(rules),
        description="combination of " + ", ".join(p.name for p in unique),
        protected_domains=tuple(sorted({d for p in unique for d in p.protected_domains})),
        sources=tuple(s for p in unique for s in p.sources),
    )


@dataclass(frozen=True, slots=True)
class PolicySet:
    """All loaded policies by name, and the default for recipients without a tenant policy."""

    policies: Mapping[str, CompiledPolicy]
    default: str = "lgwan-base"
    directory: str = ""
    _combined: dict[frozenset[str], CompiledPolicy] = field(
        default_factory=dict, compare=False, repr=False
    )

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self.policies))

    def get(self, name: str, internal_domains: frozenset[str] = frozenset()) -> Policy:
        return Policy(self.policies[name], internal_domains)

    def policy_name_for(self, domain: str, tenants: Mapping[str, object]) -> str:
        tenant = tenants.get(domain.lower().rstrip("."))
        name = getattr(tenant, "policy", None) if tenant is not None else None
        return name if isinstance(name, str) and name in self.policies else self.default

    def for_recipients(self, domains: Sequence[str], tenants: Mapping[str, object]) -> Policy:
        """The policy for a message to ``domains``: the tenant's (or default) policy, or the
        strictest combination when recipients' policies differ. Tenants' domains are the
        internal domains of the returned policy."""
        names = frozenset(self.policy_name_for(d, tenants) for d in domains) or frozenset(
            {self.default}
        )
        internal = frozenset(d.lower().rstrip(".") for d in tenants)
        if len(names) == 1:
            return Policy(self.policies[next(iter(names))], internal)
        combined = self._combined.get(names)
        if combined is None:
            combined = strictest([self.policies[n] for n in sorted(names)])
            self._combined[names] = combined
        return Policy(combined, internal)
