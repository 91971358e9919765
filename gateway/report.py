"""What happened to one message: findings, actions, rule hits and the verdict.

A ``Report`` is created when a message is received and travels with it through every stage.
Stages only append to it. It is plain data (dataclasses of str/int): ``to_dict`` is what
crosses the worker boundary (inside a ``gateway.wire`` frame) and what the quarantine store
and the log keep; ``from_dict`` reads it back and checks every type, length and number first,
because the dict may come from a worker that parsed hostile input.

Finding codes are SHOUTED and stable: the same string appears in the report, in policy YAML
(``when: {finding: [PDF_JAVASCRIPT]}``), in metric labels and in the admin UI.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Annotated, Any

from pydantic import Field as Bounded

from gateway import wire


class Verdict(IntEnum):
    """What the gateway does with a message, ordered by severity (the highest one wins)."""

    DELIVER = 0
    TAG = 1
    QUARANTINE = 2
    REJECT = 3
    TEMPFAIL = 4

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Finding:
    """An evidence-bearing fact about one part.

    Example: ``Finding("PDF_JAVASCRIPT", "1.2", "OpenAction")``.
    """

    code: str
    part_id: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Action:
    """Something a stage did to the message, with the reason a reader can check.

    ``kind`` is kebab-case: ``html-to-text``, ``urls-defanged``, ``attachment-rebuilt``,
    ``attachment-stripped``, ``header-added``, ``received-added``...
    """

    kind: str
    part_id: str = ""
    reason: str = ""
    detail: str = ""
    count: int = 1


@dataclass(slots=True)
class AttachmentRecord:
    """One attachment as received and what became of it (issue 5: one entry per attachment)."""

    part_id: str
    untrusted_filename: str
    declared_type: str
    detected_type: str
    sha256: str
    size: int
    action: str = ""
    reason: str = ""
    output_filename: str = ""
    output_sha256: str = ""
    output_size: int = 0


@dataclass(frozen=True, slots=True)
class RuleHit:
    """A policy rule whose conditions matched. ``enforced`` is False for rules in monitor mode."""

    rule: str
    action: str
    reason: str = ""
    enforced: bool = True


@dataclass(slots=True)
class Report:
    """Append-only record of everything done to one message."""

    queue_id: str
    findings: list[Finding] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    attachments: list[AttachmentRecord] = field(default_factory=list)
    rule_hits: list[RuleHit] = field(default_factory=list)
    rule_misses: list[str] = field(default_factory=list)
    auth: dict[str, str] = field(default_factory=dict)
    verdict: Verdict = Verdict.DELIVER
    reasons: list[str] = field(default_factory=list)
    policy: str = ""
    reference_id: str = ""

    def add_finding(self, code: str, part_id: str = "", detail: str = "") -> Finding:
        finding = Finding(code, part_id, detail)
        self.findings.append(finding)
        return finding

    def add_action(
        self, kind: str, part_id: str = "", reason: str = "", detail: str = "", count: int = 1
    ) -> Action:
        action = Action(kind, part_id, reason, detail, count)
        self.actions.append(action)
        return action

    def raise_verdict(self, verdict: Verdict, reason: str) -> None:
        """Move the verdict up to ``verdict`` (never down) and record why."""
        if verdict > self.verdict:
            self.verdict = verdict
        if reason and reason not in self.reasons:
            self.reasons.append(reason)

    def finding_codes(self) -> set[str]:
        return {f.code for f in self.findings}

    def count_actions(self, kind: str) -> int:
        return sum(a.count for a in self.actions if a.kind == kind)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["verdict"] = self.verdict.label
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_dict(cls, data: object) -> Report:
        """The report ``to_dict`` made, checked: strict types, bounded strings, lists and
        numbers, a known verdict, no unknown keys. Raises ``wire.WireError`` naming the first
        problem (``data`` may come from a compromised worker)."""
        checked = wire.check(_WireReport, data, "report")
        return cls(
            queue_id=checked.queue_id,
            findings=[Finding(**f.model_dump()) for f in checked.findings],
            actions=[Action(**a.model_dump()) for a in checked.actions],
            attachments=[AttachmentRecord(**a.model_dump()) for a in checked.attachments],
            rule_hits=[RuleHit(**r.model_dump()) for r in checked.rule_hits],
            rule_misses=list(checked.rule_misses),
            auth=dict(checked.auth),
            verdict=Verdict[checked.verdict.upper()],
            reasons=list(checked.reasons),
            policy=checked.policy,
            reference_id=checked.reference_id,
        )


# --- the checked shape of ``Report.to_dict`` ------------------------------------------------
# Bounds are far above what an honest report holds (a message has at most
# ``limits.max_parts`` parts, 100,000 at most) and keep a dishonest one from costing more than
# its frame's bytes.

_MANY = 1_000_000


class _WireFinding(wire.WireModel):
    code: wire.Name
    part_id: wire.Name
    detail: wire.Detail = ""


class _WireAction(wire.WireModel):
    kind: wire.Name
    part_id: wire.Name = ""
    reason: wire.Detail = ""
    detail: wire.Detail = ""
    count: wire.Count = 1


class _WireAttachment(wire.WireModel):
    part_id: wire.Name
    untrusted_filename: wire.Detail
    declared_type: wire.Detail
    detected_type: wire.Name
    sha256: wire.Name
    size: wire.Size
    action: wire.Name = ""
    reason: wire.Detail = ""
    output_filename: wire.Detail = ""
    output_sha256: wire.Name = ""
    output_size: wire.Size = 0


class _WireRuleHit(wire.WireModel):
    rule: wire.Line
    action: wire.Name
    reason: wire.Detail = ""
    enforced: bool = True


class _WireReport(wire.WireModel):
    queue_id: wire.Name
    findings: Annotated[list[_WireFinding], Bounded(max_length=_MANY)]
    actions: Annotated[list[_WireAction], Bounded(max_length=_MANY)]
    attachments: Annotated[list[_WireAttachment], Bounded(max_length=_MANY)]
    rule_hits: Annotated[list[_WireRuleHit], Bounded(max_length=100_000)]
    rule_misses: Annotated[list[wire.Line], Bounded(max_length=100_000)]
    auth: Annotated[dict[wire.Name, wire.Detail], Bounded(max_length=64)]
    verdict: Annotated[str, Bounded(pattern="^(deliver|tag|quarantine|reject|tempfail)$")]
    reasons: Annotated[list[wire.Detail], Bounded(max_length=100_000)]
    policy: wire.Line
    reference_id: wire.Name
