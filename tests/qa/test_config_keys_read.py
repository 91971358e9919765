"""Every configuration and policy key is read by the code (issue 12, item 6: "a config key
that nothing reads is a defect"; ``auth.dkim_sign`` was documented and validated for a release while
nothing signed).

A key counts as read when its name is accessed outside ``gateway/config.py``: as an
attribute (``config.smtp.max_recipients``, ``auth.dkim_sign``), a keyword argument built from
the model (``**config.x.model_dump()`` is not counted), or ``getattr(obj, "name")``. This is a
name check, not a data-flow proof: a key whose name is also the name of something else
(``listen``, ``enabled``) passes on that other use. It still catches what happened before: a
key added to the schema and the example file with no code behind it.
"""

from __future__ import annotations

import ast
import typing
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from gateway.config import Config
from gateway.sanitizers.base import CONTENT_CLASSES
from rules.schema import PolicyFile

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("gateway", "rules", "quarantine")


def _models_in(annotation: object) -> Iterator[type[BaseModel]]:
    """The models an annotation names: itself, or inside ``X | None``, ``dict[str, X]``..."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    for argument in typing.get_args(annotation):
        yield from _models_in(argument)


def config_keys(
    model: type[BaseModel] = Config, prefix: str = "", seen: frozenset[type] = frozenset()
) -> Iterator[tuple[str, str]]:
    """(dotted key, field name) for every field of a settings model, nested models too (a
    recursive model, such as a rule condition's ``all``/``any``/``not``, once)."""
    for name, field in model.model_fields.items():
        yield f"{prefix}{name}", name
        for sub in _models_in(field.annotation):
            if sub not in seen:
                yield from config_keys(sub, f"{prefix}{name}.", seen | {model})


def names_read(exclude: Path) -> set[str]:
    read: set[str] = set()
    for top in SOURCES:
        for path in sorted((ROOT / top).rglob("*.py")):
            if path == exclude or "migrations" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Attribute):
                    read.add(node.attr)
                elif isinstance(node, ast.keyword) and node.arg:
                    read.add(node.arg)
                elif (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id == "getattr"
                    and len(node.args) > 1
                    and isinstance(node.args[1], ast.Constant)
                ):
                    read.add(str(node.args[1].value))
    return read


READ = names_read(exclude=ROOT / "gateway" / "config.py")
POLICY_READ = names_read(exclude=ROOT / "rules" / "schema.py")


def test_the_check_sees_nested_keys_and_can_fail() -> None:
    keys = dict(config_keys())
    assert {"smtp.max_recipients", "auth.dkim_sign", "quarantine.release.originals"} <= set(keys)
    assert "a_key_nothing_reads" not in READ


def test_every_configuration_key_is_read_by_the_code() -> None:
    unread = [key for key, name in config_keys() if name not in READ]
    assert unread == [], "remove these keys or make the code use them"


def test_every_policy_key_is_read_by_the_code() -> None:
    keys = dict(config_keys(PolicyFile))
    assert {"attachments.pdf", "sanitize.csv_formulas", "rules.when.finding"} <= set(keys)
    # Read by content class (``model_dump()`` into the compiled policy, looked up with the
    # class ``gateway.detect`` gives a part): one key per class, no more, no fewer.
    by_class = {"attachments", "sanitize.archive_members"}
    for table in by_class:
        assert {n for k, n in keys.items() if k.rpartition(".")[0] == table} == set(
            CONTENT_CLASSES
        ), table
    unread = [
        key
        for key, name in keys.items()
        if name not in POLICY_READ
        and key.rpartition(".")[0] not in by_class
        and key != "extends"  # rules/loader.py reads it from the raw YAML, before validation
    ]
    assert unread == [], "remove these policy keys or make the code use them"
