"""YAML files whose validation errors name the file, line and key.

Used for the gateway configuration and for policy files. PyYAML's node marks are kept for every
key and list item, so a pydantic error ``loc`` such as ``("rules", 2, "action")`` maps back to
``policy.yaml:14``. Error lines take starlette's shape::

    policy.yaml:14: rules[2].action: 'quarantin' is not one of deliver, quarantine, reject, tag

This module never falls back to defaults: a broken file is an error, and the caller decides to
keep what it had (SIGHUP) or exit with status 2 (start-up).

Aliases are bounded (issue 11). PyYAML shares an aliased node instead of copying it, but
everything that walks the document afterwards (the line marks below, the policy merge,
pydantic) walks it expanded: a 9x9 "billion laughs" of a few hundred bytes expands to 387
million nodes and took ``mugaika config check`` to 6.5 GB, and an alias inside its own anchor
(``a: &a [*a]``) recursed until a RecursionError traceback. ``_BoundedLoader`` counts the
expanded size of the document while composing it, each node once plus the whole expanded size
of every alias's target, and stops at ``MAX_YAML_NODES`` with the line of the alias that
passed the bound; an alias to a node that is still being composed is refused as recursive.
Anchors and merge keys (``<<: *defaults``) within the bound work as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from gateway.errors import ConfigError

Loc = tuple[str | int, ...]
# Expanded nodes (aliases counted as what they expand to) in one YAML document. The shipped
# lgwan-base policy has about 700, a configuration with 1,000 tenants about 4,000.
MAX_YAML_NODES = 100_000


class ExpansionError(yaml.MarkedYAMLError):
    """Raised while composing: the document is too large once expanded, or recursive."""


class _BoundedLoader(yaml.SafeLoader):
    """``SafeLoader`` that bounds alias expansion (see module docstring). O(document size)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._expanded = 0
        # Expanded size of every node composed so far, by id(); a node is added when it is
        # complete, so an alias whose target is missing here points into its own ancestor.
        self._sizes: dict[int, int] = {}

    def _count(self, size: int, mark: yaml.Mark, alias: str | None) -> None:
        self._expanded += size
        if self._expanded <= MAX_YAML_NODES:
            return
        if alias is None:
            problem = f"the document has more than {MAX_YAML_NODES:,} nodes"
        else:
            problem = (
                f"alias *{alias} makes the document expand to more than {MAX_YAML_NODES:,} "
                "nodes (alias expansion is bounded: write the values out or use fewer aliases)"
            )
        raise ExpansionError(problem=problem, problem_mark=mark)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None:  # else PyYAML raises "found undefined alias"
                size = self._sizes.get(id(target))
                if size is None:
                    raise ExpansionError(
                        problem=f"alias *{event.anchor} refers to a node that contains it "
                        "(a recursive structure)",
                        problem_mark=event.start_mark,
                    )
                self._count(size, event.start_mark, event.anchor)
            return super().compose_node(parent, index)
        node: yaml.Node = super().compose_node(parent, index)
        if isinstance(node, yaml.MappingNode):
            size = 1 + sum(self._sizes[id(k)] + self._sizes[id(v)] for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            size = 1 + sum(self._sizes[id(child)] for child in node.value)
        else:
            size = 1
        self._sizes[id(node)] = size
        self._count(1, node.start_mark, None)
        return node


def compose_bounded(text: str) -> tuple[yaml.Node | None, Any]:
    """The node graph and the plain data of a single YAML document, with bounded aliases.

    Raises ``yaml.YAMLError`` (a ``MarkedYAMLError`` with the line for a bound or a recursive
    alias)."""
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    return node, data


@dataclass
class YamlDocument:
    """A loaded YAML document: the plain ``data`` and the line (1-based) of each key path."""

    source: str
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        """The line of ``loc`` or of its nearest ancestor that is in the file."""
        path = tuple(loc)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())


def _collect_lines(node: yaml.Node, path: Loc, lines: dict[Loc, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key_path = (*path, key_node.value)
                lines[key_path] = key_node.start_mark.line + 1
                _collect_lines(value_node, key_path, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _collect_lines(item, (*path, index), lines)


def _yaml_problem(exc: yaml.YAMLError, source: str) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = exc.problem or exc.context or "invalid YAML"
        return f"{where}: invalid YAML: {problem}"
    return f"{source}: invalid YAML: {exc}"


def parse_yaml(text: str, source: str) -> YamlDocument:
    """Parse ``text``; raise ConfigError (one line, with the line number) on a syntax error."""
    try:
        node, data = compose_bounded(text)
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_problem(exc, source)) from None
    lines: dict[Loc, int] = {}
    if node is not None:
        _collect_lines(node, (), lines)
    return YamlDocument(source=source, data=data if data is not None else {}, lines=lines)


def load_yaml(path: Path) -> YamlDocument:
    """Read and parse a YAML file; a missing or unreadable file is a ConfigError too."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    return parse_yaml(text, str(path))


def dotted(loc: Iterable[str | int]) -> str:
    """``("rules", 2, "action")`` → ``rules[2].action``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _describe(error: ErrorDetails) -> str:
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    message = str(error.get("msg", "invalid value"))
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if "input" in error and kind not in {"model_type", "dict_type"}:
        value = error["input"]
        if isinstance(value, str | int | float | bool) or value is None:
            return f"{value!r}: {message}"
    return message


def clean_loc(loc: Sequence[str | int]) -> Loc:
    # pydantic adds tags for unions ("function-after[...]", "list[...]"): not keys of the file.
    return tuple(p for p in loc if isinstance(p, int) or ("[" not in p and "-" not in p[:1]))


def validation_messages(exc: ValidationError, doc: YamlDocument, prefix: Loc = ()) -> list[str]:
    """One ``file:line: key: problem`` line per pydantic error."""
    out = []
    for error in exc.errors():
        loc = (*prefix, *clean_loc(error["loc"]))
        line = doc.line_of(loc)
        where = f"{doc.source}:{line}" if line else doc.source
        out.append(f"{where}: {dotted(loc)}: {_describe(error)}")
    return out


def raise_validation_error(exc: ValidationError, doc: YamlDocument) -> None:
    """Turn a pydantic error into a ConfigError whose text is the first error, plus a count."""
    messages = validation_messages(exc, doc)
    more = f" (and {len(messages) - 1} more)" if len(messages) > 1 else ""
    raise ConfigError(messages[0] + more, messages) from None
