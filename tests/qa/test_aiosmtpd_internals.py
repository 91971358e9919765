"""The aiosmtpd internals ``gateway/smtp.py`` depends on still exist (issue 12, item 10).

``GatewaySMTP`` overrides and calls private members of ``aiosmtpd.smtp.SMTP`` (timeouts, the
post-DATA state, session and envelope factories, command-keyword stripping, HELP's syntax
attributes, two stock reply strings it rewrites). pyproject pins ``aiosmtpd>=1.4.6,<1.5``;
this test is what fails, rather than production, when a release within or beyond that range
changes one of them. The list is derived from the source of ``GatewaySMTP`` itself, so a new
dependency on a private member is checked as soon as it is written.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import aiosmtpd
import aiosmtpd.smtp
from aiosmtpd.smtp import SMTP, syntax

ROOT = Path(__file__).resolve().parents[2]
SMTP_SOURCE = inspect.getsource(aiosmtpd.smtp)


def _gateway_smtp() -> ast.ClassDef:
    tree = ast.parse((ROOT / "gateway" / "smtp.py").read_text(encoding="utf-8"))
    return next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "GatewaySMTP")


def _private_members_used(cls: ast.ClassDef) -> set[str]:
    """``self._x`` / ``super()._x`` read, and ``_x`` methods defined, that GatewaySMTP does not
    itself create (a private name it assigns first is its own)."""
    defined_here = {
        target.attr
        for node in ast.walk(cls)
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Attribute)
        and isinstance(target.value, ast.Name)
        and target.value.id == "self"
    }
    used: set[str] = set()
    for node in ast.walk(cls):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            owner = node.value
            is_self = isinstance(owner, ast.Name) and owner.id == "self"
            is_super = (
                isinstance(owner, ast.Call)
                and isinstance(owner.func, ast.Name)
                and owner.func.id == "super"
            )
            if (is_self or is_super) and not node.attr.startswith("__"):
                used.add(node.attr)
        elif (
            isinstance(node, ast.FunctionDef)
            and node.name.startswith("_")
            and not node.name.startswith("__")
        ):
            used.add(node.name)
    own_methods = {
        n.name
        for n in cls.body
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and not hasattr(SMTP, n.name)
    }
    return {name for name in used - own_methods if name not in defined_here or hasattr(SMTP, name)}


def test_the_pinned_range_is_the_installed_version() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '"aiosmtpd>=1.4.6,<1.5"' in pyproject
    major, minor, *_ = (int(x) for x in re.findall(r"\d+", aiosmtpd.__version__)[:3])
    assert (major, minor) == (1, 4), aiosmtpd.__version__


def test_every_private_member_gateway_smtp_uses_exists_in_aiosmtpd() -> None:
    used = _private_members_used(_gateway_smtp())
    # The scan must see the ones we know about, or it proves nothing.
    assert {"_reset_timeout", "_timeout_cb", "_set_post_data_state"} <= used, used
    missing = [
        name
        for name in sorted(used)
        if not hasattr(SMTP, name) and f"self.{name}" not in SMTP_SOURCE
    ]
    assert missing == [], f"aiosmtpd no longer has {missing}"


def test_overridden_methods_keep_their_signatures() -> None:
    # GatewaySMTP._reset_timeout(duration=None) is called by aiosmtpd at connect and before
    # every command; _timeout_cb and _set_post_data_state take nothing but self.
    assert list(inspect.signature(SMTP._reset_timeout).parameters) == ["self", "duration"]
    assert list(inspect.signature(SMTP._timeout_cb).parameters) == ["self"]
    assert list(inspect.signature(SMTP._set_post_data_state).parameters) == ["self"]
    assert "_smtp_methods" in SMTP_SOURCE  # commands are dispatched through this table
    assert "_original_transport" in SMTP_SOURCE  # STARTTLS keeps the plain transport here


def test_help_reads_the_syntax_attributes_the_decorator_sets() -> None:
    @syntax("NOOP [ignored]", extended=" X", when="sentinel")
    async def smtp_NOOP(self: object, arg: str) -> None:  # noqa: N802
        return None

    assert smtp_NOOP.__smtp_syntax__ == "NOOP [ignored]"  # type: ignore[attr-defined]
    assert smtp_NOOP.__smtp_syntax_extended__ == " X"  # type: ignore[attr-defined]
    assert smtp_NOOP.__smtp_syntax_when__ == "sentinel"  # type: ignore[attr-defined]
    assert "__smtp_syntax__" in inspect.getsource(SMTP.smtp_HELP)


def test_stock_replies_gateway_smtp_rewrites_are_still_written_so() -> None:
    # GatewaySMTP.push rewrites these to carry enhanced codes and no echoed controls.
    assert '500 Error: command "' in SMTP_SOURCE
    assert "502 5.5.1 Too many unrecognized commands, goodbye." in SMTP_SOURCE
