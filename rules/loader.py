"""Loading policy files: shipped ones, a configured directory, ``extends``, precise errors.

``load_policies(directory)`` reads ``rules/policies/*.yaml`` (shipped) and then
``directory/*.yaml`` (a file there replaces the shipped policy of the same name; it may
``extends:`` its own name to build on the shipped one). The policy name is the file name
without ``.yaml``. Every file is validated, all errors are collected, and a ``ConfigError``
lists them one per line in the form::

    /etc/mugaika/policies/city-a.yaml:14: rules[2].action: 'quarantin': Input should be ...

Inheritance: a policy with ``extends: NAME`` starts from NAME (after NAME's own ``extends``).
Mappings merge key by key (``attachments: {pdf: strip}`` changes only pdf); lists and scalars
replace. ``rules`` merge by ``name``: a rule with a parent rule's name replaces that rule's
keys in place (``{name: x, mode: monitor}`` turns the parent's rule x to monitor,
``{name: x, enabled: false}`` disables it); new names are appended in order. Each merged key
remembers the file and line it came from, so errors point at the file that wrote the value.

Reload safety: nothing here changes state. ``reload_policies(config)`` returns a new
``PolicySet`` or raises ``ConfigError``; the caller (SIGHUP, admin UI) keeps the old set on
error. A broken file is never skipped and never replaced by defaults.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway.config import Config
from gateway.errors import ConfigError
from gateway.yamlfile import Loc, YamlDocument, clean_loc, dotted, load_yaml
from gateway.yamlfile import _describe as describe_error  # the configuration's wording
from rules import schema
from rules.engine import CompiledPolicy, CompiledRule, PolicySet, PolicySettings

SHIPPED_DIR = Path(__file__).resolve().parent / "policies"
DEFAULT_POLICY = "lgwan-base"
_NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
MAX_EXTENDS_DEPTH = 16

Where = tuple[str, int | None, Loc]  # (file, line, the key path in that file)
Provenance = dict[Loc, Where]


@dataclass(frozen=True)
class PolicySource:
    name: str
    doc: YamlDocument
    shipped: bool


def _provenance(doc: YamlDocument) -> Provenance:
    prov: Provenance = {(): (doc.source, doc.lines.get(()), ())}
    for loc, line in doc.lines.items():
        prov[loc] = (doc.source, line, loc)
    return prov


def _copy(src: Provenance, src_loc: Loc, dst: Provenance, dst_loc: Loc) -> None:
    n = len(src_loc)
    for loc, where in list(src.items()):
        if loc[:n] == src_loc:
            dst[dst_loc + loc[n:]] = where


def _merge(
    parent: Any,
    p_loc: Loc,
    p_prov: Provenance,
    child: Any,
    c_loc: Loc,
    c_prov: Provenance,
    out_loc: Loc,
    out: Provenance,
) -> Any:
    """Deep-merge ``child`` over ``parent`` (mappings by key; anything else replaced)."""
    if not (isinstance(parent, dict) and isinstance(child, dict)):
        _copy(c_prov, c_loc, out, out_loc)
        return child
    out[out_loc] = c_prov.get(c_loc) or p_prov.get(p_loc) or ("", None, ())
    merged: dict[Any, Any] = {}
    for key, value in parent.items():
        if key in child:
            merged[key] = _merge(
                value,
                (*p_loc, key),
                p_prov,
                child[key],
                (*c_loc, key),
                c_prov,
                (*out_loc, key),
                out,
            )
        else:
            merged[key] = value
            _copy(p_prov, (*p_loc, key), out, (*out_loc, key))
    for key, value in child.items():
        if key not in parent:
            merged[key] = value
            _copy(c_prov, (*c_loc, key), out, (*out_loc, key))
    return merged


def _merge_rules(
    parent: list[Any], p_prov: Provenance, child: list[Any], c_prov: Provenance, out: Provenance
) -> list[Any]:
    merged: list[Any] = []
    by_name: dict[str, int] = {}
    for index, rule in enumerate(parent):
        _copy(p_prov, ("rules", index), out, ("rules", len(merged)))
        if isinstance(rule, dict) and isinstance(rule.get("name"), str):
            by_name[rule["name"]] = len(merged)
        merged.append(rule)
    for index, rule in enumerate(child):
        name = rule.get("name") if isinstance(rule, dict) else None
        if isinstance(name, str) and name in by_name and isinstance(merged[by_name[name]], dict):
            # Shallow: a child's ``when`` replaces the parent's whole condition.
            target = by_name[name]
            combined = dict(merged[target])
            combined.update(rule)
            for key in rule:
                _copy(c_prov, ("rules", index, key), out, ("rules", target, key))
            merged[target] = combined
        else:
            _copy(c_prov, ("rules", index), out, ("rules", len(merged)))
            if isinstance(name, str):
                by_name[name] = len(merged)
            merged.append(rule)
    return merged


def _merge_policy(
    parent: dict[str, Any], p_prov: Provenance, child: dict[str, Any], c_prov: Provenance
) -> tuple[dict[str, Any], Provenance]:
    out: Provenance = {(): c_prov.get((), ("", None, ()))}
    p_rest = {k: v for k, v in parent.items() if k not in ("rules", "extends", "description")}
    c_rest = {k: v for k, v in child.items() if k != "rules"}
    data = _merge(p_rest, (), p_prov, c_rest, (), c_prov, (), out)
    p_rules = parent.get("rules") or []
    c_rules = child.get("rules") or []
    if isinstance(p_rules, list) and isinstance(c_rules, list):
        data["rules"] = _merge_rules(p_rules, p_prov, c_rules, c_prov, out)
        if "rules" in child:
            out[("rules",)] = c_prov.get(("rules",), ("", None, ()))
        elif "rules" in parent:
            out[("rules",)] = p_prov.get(("rules",), ("", None, ()))
    else:  # one of them is not a list: let validation report the child's value
        data["rules"] = child.get("rules", parent.get("rules"))
        _copy(c_prov if "rules" in child else p_prov, ("rules",), out, ("rules",))
    return data, out


def _drop_disabled(data: dict[str, Any], prov: Provenance) -> tuple[dict[str, Any], Provenance]:
    rules = data.get("rules")
    if not isinstance(rules, list):
        return data, prov
    kept: list[Any] = []
    out: Provenance = {k: v for k, v in prov.items() if not (k[:1] == ("rules",) and len(k) > 1)}
    for index, rule in enumerate(rules):
        if isinstance(rule, dict) and rule.get("enabled") is False:
            continue
        _copy(prov, ("rules", index), out, ("rules", len(kept)))
        kept.append(rule)
    return {**data, "rules": kept}, out


def _messages(exc: ValidationError, prov: Provenance, fallback: str) -> list[str]:
    out = []
    for error in exc.errors():
        loc = clean_loc(error["loc"])
        where: Where | None = None
        path = loc
        while True:
            where = prov.get(path)
            if where is not None or not path:
                break
            path = path[:-1]
        if where is None:
            where = (fallback, None, path)
        source, line, file_loc = where
        # Name the key as it is written in that file (rules[0] there, not rules[9] merged).
        shown = (*file_loc, *loc[len(path) :])
        prefix = f"{source}:{line}" if line else source
        out.append(f"{prefix}: {dotted(shown)}: {describe_error(error)}")
    return out


def _read_sources(
    directory: Path | None,
) -> tuple[dict[str, PolicySource], dict[str, PolicySource], list[str]]:
    """Shipped policies, then the directory's; returns (in force by name, shipped, errors)."""
    errors: list[str] = []
    sources: dict[str, PolicySource] = {}
    shipped: dict[str, PolicySource] = {}
    for path in sorted(SHIPPED_DIR.glob("*.yaml")):
        doc = load_yaml(path)
        shipped[path.stem] = PolicySource(path.stem, doc, shipped=True)
    sources.update(shipped)
    if directory is not None:
        if not directory.is_dir():
            raise ConfigError(f"{directory}: policy directory not found")
        paths = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
        for path in paths:
            if not _NAME.match(path.stem):
                errors.append(f"{path}: the file name must be a kebab-case policy name + .yaml")
                continue
            try:
                doc = load_yaml(path)
            except ConfigError as exc:
                errors.extend(exc.messages)
                continue
            sources[path.stem] = PolicySource(path.stem, doc, shipped=False)
    return sources, shipped, errors


def _resolve(
    source: PolicySource,
    sources: dict[str, PolicySource],
    shipped: dict[str, PolicySource],
    chain: tuple[str, ...] = (),
) -> tuple[dict[str, Any], Provenance, tuple[str, ...]]:
    """The merged data of ``source`` with its ancestors, its provenance, and the files used."""
    doc = source.doc
    if not isinstance(doc.data, dict):
        raise ConfigError(f"{doc.source}:1: the top level must be a mapping of keys")
    prov = _provenance(doc)
    parent_name = doc.data.get("extends")
    if parent_name is None:
        return doc.data, prov, (doc.source,)
    line = doc.lines.get(("extends",))
    where = f"{doc.source}:{line}" if line else doc.source
    if not isinstance(parent_name, str):
        raise ConfigError(f"{where}: extends: expected a policy name")
    if parent_name == source.name and not source.shipped and parent_name in shipped:
        parent = shipped[parent_name]  # a local file refining the shipped policy of its name
    elif parent_name in sources:
        parent = sources[parent_name]
    else:
        known = ", ".join(sorted(sources))
        raise ConfigError(f"{where}: extends: {parent_name!r}: no such policy (known: {known})")
    key = f"{parent.name}{'' if not parent.shipped else '@shipped'}"
    if key in chain or len(chain) > MAX_EXTENDS_DEPTH:
        raise ConfigError(f"{where}: extends: {parent_name!r}: inheritance loop")
    p_data, p_prov, p_files = _resolve(parent, sources, shipped, (*chain, key))
    data, merged_prov = _merge_policy(p_data, p_prov, doc.data, prov)
    return data, merged_prov, (*p_files, doc.source)


def compile_policy(
    name: str, model: schema.PolicyFile, files: Iterable[str] = ()
) -> CompiledPolicy:
    return CompiledPolicy(
        name=name,
        settings=PolicySettings.from_model(name, model),
        rules=tuple(CompiledRule.from_model(r, name) for r in model.rules if r.enabled),
        description=model.description,
        protected_domains=tuple(model.protected_domains),
        sources=tuple(files),
    )


def load_policies(directory: Path | None = None, default: str = DEFAULT_POLICY) -> PolicySet:
    """Every policy (shipped, then ``directory``), validated and compiled.

    Raises ConfigError listing every problem (``.messages``: one ``file:line: key: problem``
    line each) when any file is invalid or ``default`` is not a policy. Never returns a
    partial set."""
    sources, shipped, errors = _read_sources(directory)
    compiled: dict[str, CompiledPolicy] = {}
    seen: set[str] = set()
    for name, source in sorted(sources.items()):
        try:
            data, prov, files = _resolve(source, sources, shipped)
        except ConfigError as exc:
            errors.extend(exc.messages)
            continue
        data, prov = _drop_disabled(data, prov)
        try:
            model = schema.PolicyFile.model_validate(data)
        except ValidationError as exc:
            for message in _messages(exc, prov, source.doc.source):
                if message not in seen:  # an error in a parent shows once, not per child
                    seen.add(message)
                    errors.append(message)
            continue
        compiled[name] = compile_policy(name, model, files)
    if not errors and default not in compiled:
        known = ", ".join(sorted(compiled))
        errors.append(f"policy.name: {default!r}: no such policy (known: {known})")
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigError(errors[0] + more, errors)
    return PolicySet(
        policies=compiled, default=default, directory=str(directory) if directory else ""
    )


def reload_policies(config: Config) -> PolicySet:
    """What SIGHUP and the admin UI call: the new set, or ConfigError (keep the old one).

    Also checks that every policy the configuration names exists (``policy.name``,
    ``tenants.<domain>.policy``)."""
    policy_set = load_policies(config.policy.dir, default=config.policy.name)
    missing = [
        f"tenants.{domain}.policy: {tenant.policy!r}: no such policy"
        for domain, tenant in sorted(config.tenants.items())
        if tenant.policy is not None and tenant.policy not in policy_set.policies
    ]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ConfigError(missing[0] + more, missing)
    return policy_set


def policy_documents(directory: Path | None) -> dict[str, str]:
    """Name -> file of every policy that would be loaded (for ``mugaika rules check``)."""
    sources, _, _ = _read_sources(directory)
    return {name: s.doc.source for name, s in sorted(sources.items())}
