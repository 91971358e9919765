"""Errors of the quarantine package, each with a stable SHOUTED code (see gateway.errors).

The CLI turns them into one line and an exit code, the web UI into a page and an HTTP status,
the API into ``{"error": code, "detail": text}``. None of them carries a traceback to a user.
"""

from __future__ import annotations

from gateway.errors import ConfigError, MugaikaError


class QuarantineError(MugaikaError):
    """Base class. ``http_status`` is what the web UI and API answer.

    ``str()`` is the English sentence the CLI and the API print. ``key`` names the words the
    web UI shows instead, in the user's language (``error.<key>`` in
    ``quarantine/web/i18n/*.json``, formatted with ``values``); without a key the UI shows
    the words for the error's ``code``. ``tests/quarantine/test_i18n.py`` checks that every
    error the release path raises has a key with words in both languages."""

    code = "QUARANTINE_ERROR"
    http_status = 400

    def __init__(self, detail: str = "", *, key: str = "", **values: object) -> None:
        super().__init__(detail)
        self.key = key
        self.values = values


class ItemNotFound(QuarantineError):
    """No such item, or not visible to this user (the two are deliberately indistinguishable)."""

    code = "NOT_FOUND"
    http_status = 404


class PermissionDenied(QuarantineError):
    """The user may see the item but not do this to it (e.g. an auditor releasing)."""

    code = "FORBIDDEN"
    http_status = 403


class ReleaseRefused(QuarantineError):
    """A release that must not happen now: already released, claimed elsewhere, deleted."""

    code = "RELEASE_REFUSED"
    http_status = 409


class ReleaseFailed(QuarantineError):
    """The downstream refused or could not be reached; the item is back in ``held``."""

    code = "RELEASE_FAILED"
    http_status = 502


class BlobCorrupt(QuarantineError):
    """Stored bytes are missing or do not match their sha256: never hand them out."""

    code = "BLOB_CORRUPT"
    http_status = 500


class UserError(QuarantineError):
    """A user-management request that cannot be done (unknown user, bad role, short password)."""

    code = "USER_ERROR"


class SchemaNotCurrent(ConfigError):
    """The database schema is not at the version this code needs: run ``mugaika db upgrade``."""

    code = "SCHEMA_NOT_CURRENT"
