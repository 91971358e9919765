"""Mugaika policies: YAML rules per tenant, compiled once, evaluated per message.

Public API (see ``rules/engine.py`` for the semantics)::

    from rules import load_policies, reload_policies
    policy = load_policies(directory).for_recipients(domains, tenants)
    decision = policy.decide(report, envelope, headers, auth=auth_results, message_size=n)

The import name ``rules`` is also used by PyPI's django-rules; ``tests/qa/test_packaging.py``
checks that this package is the one imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "Decision",
    "Policy",
    "PolicySet",
    "PolicySettings",
    "load_policies",
    "reload_policies",
]

if TYPE_CHECKING:
    from rules.engine import Decision, Policy, PolicySet, PolicySettings
    from rules.loader import load_policies, reload_policies


def __getattr__(name: str) -> Any:
    # Lazy, so that ``import rules.schema`` does not pull in the engine and its dependencies.
    if name in ("Decision", "Policy", "PolicySet", "PolicySettings"):
        from rules import engine

        return getattr(engine, name)
    if name in ("load_policies", "reload_policies"):
        from rules import loader

        return getattr(loader, name)
    raise AttributeError(name)
