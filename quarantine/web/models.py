"""The API's request bodies and query parameters as pydantic models: the contract, in one place.

Every model forbids unknown fields (``extra="forbid"``): a field the server does not know is an
error the client sees, never silently dropped. Bodies are strict (JSON ``"yes"`` is not a
boolean, ``1`` is not a string); query parameters arrive as text and are read in pydantic's
lax mode (``"50"`` is 50) but within bounds. ``quarantine/web/api.py`` answers a body error
with 422 and a query error with 400, both naming the field; the OpenAPI document
(``/api/v1/openapi.json``) is generated from these classes, so it cannot drift from them.

The release target is called ``target`` (``sanitized`` or ``original``) here, in the web form
and in the CLI (``--target``). It has no default in the API: a program must say which copy it
means (the web form preselects the sanitized copy, and asks for confirmation before an
original leaves).

Not here: permissions and tenant scope (``quarantine/release.py`` and the store).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from quarantine.sql import parse_since

# The same two words as quarantine.release.TARGETS (tests/quarantine/test_release_target.py).
Target = Literal["sanitized", "original"]

Reason = Annotated[
    str,
    Field(
        min_length=1,
        max_length=1000,
        description="Why (stored in the item's history and the audit log; required)",
    ),
]
Addresses = Annotated[
    list[Annotated[str, Field(max_length=320)]],
    Field(
        min_length=1,
        max_length=100,
        description="Send to these addresses instead of the original recipients; a "
        "tenant admin may name only addresses in their own domains",
    ),
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ReleaseBody(_Body):
    """``POST /api/v1/items/{item_id}/release``."""

    target: Target = Field(
        description="sanitized: the copy the gateway made harmless; original: the message "
        "exactly as received (may contain what the item was held for)"
    )
    reason: Reason
    to: Addresses | None = None
    force: bool = Field(
        False, description="Send even if already released or a release was interrupted"
    )


class RequestBody(_Body):
    """``POST /api/v1/items/{item_id}/requests``: ask an approver to release (two-person rule)."""

    target: Target = Field("original", description="What the approver will release when approving")
    reason: Reason
    to: Addresses | None = None


class DecisionBody(_Body):
    """``POST /api/v1/requests/{request_id}/approve`` and ``…/refuse``."""

    reason: Reason


class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_since(value: str | None) -> str | None:
    if value:
        parse_since(value)  # ValueError names the accepted forms
    return value


class ItemListQuery(_Query):
    """``GET /api/v1/items``."""

    status: Literal["held", "releasing", "released", "deleted", "expired"] | None = None
    kind: Literal["quarantined", "retained"] | None = None
    tenant: Annotated[str, Field(max_length=255)] | None = Field(
        None, description="Items with a recipient in this domain"
    )
    since: Annotated[str | None, AfterValidator(_check_since)] = Field(
        None,
        description="An ISO date or date-time (2026-11-01, 2026-11-01T09:00+09:00) or a "
        "relative age: 30m, 12h, 7d, 2w",
    )
    search: Annotated[str, Field(max_length=200)] | None = Field(
        None, description="Substring of the id, addresses, subject or Message-ID"
    )
    limit: int = Field(50, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=10_000_000)


class RequestListQuery(_Query):
    """``GET /api/v1/requests``."""

    status: Literal["pending", "approved", "refused", "done", "failed", "all"] = "pending"


class AuditQuery(_Query):
    """``GET /api/v1/audit``."""

    item: Annotated[str, Field(max_length=40)] | None = None
    actor: Annotated[str, Field(max_length=128)] | None = None
    action: Annotated[str, Field(max_length=64)] | None = None
    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=10_000_000)


class DeleteQuery(_Query):
    """``DELETE /api/v1/items/{item_id}``."""

    reason: Reason | None = None


class NoQuery(_Query):
    """Routes without query parameters: any parameter is an error."""
