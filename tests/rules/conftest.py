"""Fixtures for policy tests: a policy directory from YAML text, a one-rule policy."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from policy_helpers import TENANTS

from rules.engine import Policy
from rules.loader import load_policies


@pytest.fixture
def policy_dir(tmp_path: Path) -> Callable[..., Path]:
    """Write ``name=yaml`` files into a fresh directory and return it."""
    directory = tmp_path / "policies"
    directory.mkdir()

    def write(**files: str) -> Path:
        for name, text in files.items():
            (directory / f"{name.replace('_', '-')}.yaml").write_text(
                textwrap.dedent(text), encoding="utf-8"
            )
        return directory

    return write


@pytest.fixture
def one_rule(policy_dir: Callable[..., Path]) -> Callable[..., Policy]:
    """A policy (not extending anything) holding just the given rule YAML."""

    def make(rule: str, extra: str = "") -> Policy:
        body = "rules:\n" + textwrap.indent(textwrap.dedent(rule).strip(), "  ") + "\n"
        directory = policy_dir(only=textwrap.dedent(extra) + body)
        return load_policies(directory).get("only", frozenset(TENANTS))

    return make
