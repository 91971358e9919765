"""Every code any module can emit is in ``gateway.findings.REGISTRY``, with words for people.

The source is read, not imported: an AST scan of ``gateway/``, ``rules/`` and ``quarantine/``
collects

- string constants passed where a code goes: ``Finding(code, ...)``, ``add_finding(code)``,
  ``CannotSanitize(code)``, and every call of a function or class with a parameter named
  ``code`` (``_hit``, ``note``, ``_failed``, ``MimeLimitExceeded``...), found automatically;
- module constants used there (``CHARSET_MISLABELED``), through ``x if c else y`` and ``or``;
- the reason recorded for an attachment (``record.reason = "POLICY"``);
- every ``FINDING_CODES`` tuple and every ``code = "..."`` of an error class;
- codes built dynamically, at the sites listed in ``DYNAMIC_SITES`` with where their values
  come from. A code expression the scan cannot follow and that is not listed there fails the
  test: a new dynamic site must say where its codes come from.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway import findings
from gateway.sanitizers.base import CONTENT_CLASSES

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("gateway", "rules", "quarantine")
CODE = re.compile(r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*$")
# Callables whose first argument is a code although no parameter is named so.
FIRST_ARGUMENT_IS_CODE = frozenset({"Finding", "add_finding", "_finding", "_Failure"})


def _literals_in(path: str, pattern: str) -> set[str]:
    """Every string constant of ``path`` matching ``pattern``: the vocabulary a module builds
    codes from (tables, flags lists, return values)."""
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    regex = re.compile(pattern)
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and regex.fullmatch(node.value)
    }


def _content_classes() -> set[str]:
    return {c.upper() for c in CONTENT_CLASSES}


# (file, expression as written) -> where the codes at that site come from.
DYNAMIC_SITES: dict[tuple[str, str], Callable[[], set[str]]] = {
    # Flags of the URL analysis: returned by _scheme_flag, appended to flag lists, in tuples.
    ("gateway/sanitizers/text.py", "flag"): lambda: _literals_in(
        "gateway/sanitizers/urls.py", r"URL_[A-Z_]+"
    ),
    ("gateway/sanitizers/html.py", "flag"): lambda: _literals_in(
        "gateway/sanitizers/urls.py", r"URL_[A-Z_]+"
    ),
    # The HTML scanner counts codes from _hit() literals and the _ELEMENT_CODES table.
    ("gateway/sanitizers/html.py", "code"): lambda: _literals_in(
        "gateway/sanitizers/html.py", r"HTML_[A-Z_]+"
    ),
    # PDF hazards merged per code; codes from the action and annotation tables.
    ("gateway/sanitizers/pdf.py", "code"): lambda: _literals_in(
        "gateway/sanitizers/pdf.py", r"PDF_[A-Z0-9_]+"
    ),
    # OOXML findings merged per code (package.note(...) literals) or re-coded failures.
    ("gateway/sanitizers/ooxml.py", "code"): lambda: _literals_in(
        "gateway/sanitizers/ooxml.py", r"(OOXML|DDE)_[A-Z_]+"
    ),
    # Part rules (pattern, code) of _DROP_RULES, and codes remembered for removed parts.
    # _name_class(extension) returns one of these with the class a name forces.
    ("gateway/detect.py", "forced_code"): lambda: {"EXECUTABLE", "SCRIPT", "DANGEROUS_CONTAINER"},
    # A whole content class held by policy: the class is the reason.
    ("gateway/inspect.py", "content_class.upper()"): _content_classes,
    # Codes of findings already made (detection, the sanitizer), joined: scanned at their
    # sources. A _failed() without any falls back to the literal SANITIZE_FAILED.
    ("gateway/inspect.py", "','.join(sorted(found.codes()))"): set,
    ("gateway/inspect.py", "','.join(found)"): set,
    ("gateway/inspect.py", "','.join(held)"): set,
    ("gateway/inspect.py", "','.join(failed_checks)"): set,
    ("gateway/inspect.py", "','.join(sorted(codes_found))"): set,
    # What renders a text-like part (_markup_class): active HTML or active XML.
    ("gateway/detect.py", "code"): lambda: {"SCRIPT", "XML_ACTIVE_CONTENT"},
    # The admin UI's words for codes a stored report carries (emitted where they were made).
    ("quarantine/web/app.py", "code"): set,
    ("quarantine/words.py", "match.group('code')"): set,
    ("quarantine/words.py", "c.strip()"): set,
    # `mugaika rules test --finding CODE`: what the user typed (checked against the registry).
    ("rules/cli.py", "code"): set,
    # RTF cuts: codes from the _DROP table and the literals of the rewriter.
    ("gateway/sanitizers/rtf.py", "group.drop"): lambda: _literals_in(
        "gateway/sanitizers/rtf.py", r"RTF_[A-Z_]+"
    ),
    ("gateway/sanitizers/rtf.py", "code"): lambda: _literals_in(
        "gateway/sanitizers/rtf.py", r"RTF_[A-Z_]+"
    ),
    # ODF: the finding of a package folder that is code or an object (_CODE_FOLDERS).
    (
        "gateway/sanitizers/odf.py",
        "next((c for prefix, c in _CODE_FOLDERS.items() if lowered.startswith(prefix)), '')",
    ): lambda: _literals_in("gateway/sanitizers/odf.py", r"ODF_[A-Z_]+"),
    # Calendar findings returned as (code, detail) by gateway.sanitizers.calendar.
    ("gateway/sanitizers/text.py", "code"): lambda: _literals_in(
        "gateway/sanitizers/calendar.py", r"CALENDAR_[A-Z_]+"
    ),
}


@dataclass
class Scan:
    codes: dict[str, str]  # code -> first place seen
    unexplained: list[str]
    dynamic_sites_used: set[tuple[str, str]]


def _python_files() -> Iterator[Path]:
    for top in SOURCES:
        for path in sorted((ROOT / top).rglob("*.py")):
            if "migrations" not in path.parts and path.name != "findings.py":
                yield path


# Names of builtin container and string methods: ``seen.add(x)`` is not a code site even
# though ``_Hazards.add(code, ...)`` is (its codes are collected where its findings are made).
_GENERIC = frozenset(dir(set) + dir(list) + dir(dict) + dir(str))


def _takes_a_code(arguments: ast.arguments, skip_first: bool) -> int | None:
    """Position of a parameter ``code: str`` (``self`` not counted), or None."""
    params = arguments.args[1:] if skip_first else arguments.args
    for index, param in enumerate(params):
        annotation = param.annotation
        if param.arg == "code" and isinstance(annotation, ast.Name) and annotation.id == "str":
            return index
    return None


def _code_parameters(trees: dict[Path, ast.Module]) -> dict[str, set[int]]:
    """Callable name -> positions of its ``code: str`` parameter, for names defined once."""
    found: dict[str, list[int | None]] = {}
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                init = next(
                    (
                        f
                        for f in node.body
                        if isinstance(f, ast.FunctionDef) and f.name == "__init__"
                    ),
                    None,
                )
                if init is not None:
                    position = _takes_a_code(init.args, skip_first=True)
                else:  # a dataclass: its fields, in order, are the constructor's parameters
                    fields = [
                        (f.target.id, ast.unparse(f.annotation))
                        for f in node.body
                        if isinstance(f, ast.AnnAssign) and isinstance(f.target, ast.Name)
                    ]
                    position = fields.index(("code", "str")) if ("code", "str") in fields else None
                found.setdefault(node.name, []).append(position)
            elif isinstance(node, ast.FunctionDef) and not node.name.startswith("__"):
                is_method = bool(node.args.args) and node.args.args[0].arg in ("self", "cls")
                found.setdefault(node.name, []).append(_takes_a_code(node.args, is_method))
    out = {name: {0} for name in FIRST_ARGUMENT_IS_CODE}
    for name, positions in found.items():
        if len(positions) == 1 and positions[0] is not None and name not in _GENERIC:
            out[name] = {positions[0]}
    return out


def _module_constants(tree: ast.Module) -> dict[str, str]:
    constants = {}
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            constants[node.targets[0].id] = node.value.value
    return constants


def _imported_constants(trees: dict[Path, ast.Module]) -> dict[str, str]:
    """Module constants by name across the scanned source (``from gateway.charsets import
    CHARSET_FALLBACK_UTF8`` resolves to the string)."""
    out: dict[str, str] = {}
    for tree in trees.values():
        for name, value in _module_constants(tree).items():
            if CODE.match(name) and CODE.match(value):
                out[name] = value
    return out


def _module_tables(tree: ast.Module) -> dict[str, ast.Dict]:
    """Module-level dict literals by name (code tables such as ``_ELEMENT_CODES``)."""
    return {
        node.targets[0].id: node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and len(node.targets) == 1
        and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.Dict)
    }


def _table_lookup(expr: ast.expr, tables: dict[str, ast.Dict]) -> ast.Dict | None:
    """The table ``expr`` reads a value from: ``TABLE[key]`` or ``TABLE.get(key)``."""
    if isinstance(expr, ast.Subscript) and isinstance(expr.value, ast.Name):
        return tables.get(expr.value.id)
    if (
        isinstance(expr, ast.Call)
        and isinstance(expr.func, ast.Attribute)
        and expr.func.attr == "get"
        and isinstance(expr.func.value, ast.Name)
        and len(expr.args) == 1
    ):
        return tables.get(expr.func.value.id)
    return None


def _callee(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


@dataclass
class Scope:
    """What a name means inside one function: its parameters and plain local assignments."""

    parameters: set[str]
    assigned: dict[str, list[ast.expr]]


def _scopes(tree: ast.Module) -> dict[ast.AST, Scope]:
    """Each node -> the scope of the innermost function it is in."""
    out: dict[ast.AST, Scope] = {}
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
    for function in functions:  # outer functions first: inner ones overwrite
        scope = Scope({a.arg for a in function.args.args}, {})
        for child in ast.walk(function):
            if isinstance(child, ast.Assign) and len(child.targets) == 1:
                for name, value in _unpacked(child.targets[0], child.value):
                    scope.assigned.setdefault(name, []).append(value)
            out[child] = scope
    return out


def _unpacked(target: ast.expr, value: ast.expr) -> list[tuple[str, ast.expr]]:
    """``x = v`` -> [(x, v)]; ``a, b = (1, 2)`` -> [(a, 1), (b, 2)]; through ``p if c else q``
    of such tuples, each name gets both branches. Anything else binds nothing we can follow."""
    if isinstance(target, ast.Name):
        return [(target.id, value)]
    if not isinstance(target, ast.Tuple):
        return []
    branches = [value.body, value.orelse] if isinstance(value, ast.IfExp) else [value]
    out: list[tuple[str, ast.expr]] = []
    for branch in branches:
        if isinstance(branch, ast.Tuple) and len(branch.elts) == len(target.elts):
            for element, part in zip(target.elts, branch.elts, strict=True):
                out.extend(_unpacked(element, part))
    return out


class _ModuleScan:
    """Follows code expressions through one module."""

    def __init__(self, scan: Scan, relative: str, tree: ast.Module, constants: dict[str, str]):
        self.scan = scan
        self.relative = relative
        self.tree = tree
        self.constants = {**constants, **_module_constants(tree)}
        self.scopes = _scopes(tree)
        self.tables = _module_tables(tree)
        self.following: set[str] = set()  # locals being followed (assignment cycles)

    def add(self, code: str, node: ast.AST) -> None:
        self.scan.codes.setdefault(code, f"{self.relative}:{getattr(node, 'lineno', 0)}")

    def follow(self, expr: ast.expr) -> None:
        """Record the codes ``expr`` can be, or note it as a site to explain."""
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            if CODE.match(expr.value):
                self.add(expr.value, expr)
            return
        if isinstance(expr, ast.IfExp):
            self.follow(expr.body)
            self.follow(expr.orelse)
            return
        if isinstance(expr, ast.BoolOp):
            for value in expr.values:
                self.follow(value)
            return
        if isinstance(expr, ast.Name) and CODE.match(self.constants.get(expr.id, "")):
            self.add(self.constants[expr.id], expr)
            return
        table = _table_lookup(expr, self.tables)
        if table is not None:  # _ELEMENT_CODES.get(tag), _DROP_REL_TYPES[rel_type]
            for value in table.values:
                if value is not None:
                    self.follow(value)
            return
        if isinstance(expr, ast.Attribute) and expr.attr == "code":
            return  # exc.code, finding.code: passed on from where it was emitted (scanned)
        if isinstance(expr, ast.Name) and self._follow_local(expr):
            return
        key = (self.relative, ast.unparse(expr).replace('"', "'"))
        source = DYNAMIC_SITES.get(key)
        if source is None:
            self.scan.unexplained.append(f"{self.relative}:{expr.lineno}: {key[1]}")
            return
        self.scan.dynamic_sites_used.add(key)
        for code in source():
            self.add(code, expr)

    def _follow_local(self, name: ast.Name) -> bool:
        scope = self.scopes.get(name)
        if scope is None:
            return False
        if name.id == "code" and name.id in scope.parameters:
            return True  # a `code` parameter: its callers are scanned
        values = scope.assigned.get(name.id, [])
        if not values or name.id in self.following:
            return False
        self.following.add(name.id)
        for value in values:
            self.scopes.setdefault(value, scope)
            self.follow(value)
        self.following.discard(name.id)
        return True

    def run(self, positions: dict[str, set[int]]) -> None:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Call):
                self._call(node, positions)
            elif isinstance(node, ast.Assign):
                self._assignment(node)
            elif (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and node.target.id == "FINDING_CODES"
                and node.value is not None
            ):
                self._finding_codes(node.value)
            elif isinstance(node, ast.ClassDef) and self.relative == "gateway/errors.py":
                self._error_class(node)
            elif (
                isinstance(node, ast.Tuple)
                and len(node.elts) == 3
                and isinstance(node.elts[0], ast.Constant)
                and node.elts[0].value == "error"
            ):
                self.follow(node.elts[1])  # ("error", CODE, detail): a child process failed

    def _call(self, node: ast.Call, positions: dict[str, set[int]]) -> None:
        name = _callee(node)
        for index in positions.get(name, ()):
            if index < len(node.args) and not isinstance(node.args[index], ast.Starred):
                self.follow(node.args[index])
        for keyword in node.keywords:
            if keyword.arg == "code" and name in positions:
                self.follow(keyword.value)

    def _assignment(self, node: ast.Assign) -> None:
        for target in node.targets:
            # FINDING_CODES = ("A", "B", ...) (or built from other modules' tuples)
            if isinstance(target, ast.Name) and target.id == "FINDING_CODES":
                self._finding_codes(node.value)
            # record.reason = X; record.action, record.reason = "held", X
            pairs: list[tuple[ast.expr, ast.expr]] = []
            if isinstance(target, ast.Attribute):
                pairs.append((target, node.value))
            elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                pairs.extend(zip(target.elts, node.value.elts, strict=False))
            for left, right in pairs:
                if isinstance(left, ast.Attribute) and left.attr == "reason":
                    self.follow(right)

    def _finding_codes(self, value: ast.expr) -> None:
        """``FINDING_CODES = ("A", B, ...)``: literals, and module constants by name."""
        for element in ast.walk(value):
            if isinstance(element, ast.Constant) and isinstance(element.value, str):
                self.add(element.value, element)
            elif isinstance(element, ast.Name) and CODE.match(self.constants.get(element.id, "")):
                self.add(self.constants[element.id], element)

    def _error_class(self, node: ast.ClassDef) -> None:
        """``code = "WORKER_CRASHED"``: an error's code becomes an attachment's reason when a
        sanitizer raises it (``gateway.workers.run_isolated`` keeps a MugaikaError's code)."""
        for statement in node.body:
            if isinstance(statement, ast.Assign):
                targets = statement.targets
            elif isinstance(statement, ast.AnnAssign):
                targets = [statement.target]
            else:
                continue
            named_code = any(isinstance(t, ast.Name) and t.id == "code" for t in targets)
            if named_code and statement.value is not None:
                self.follow(statement.value)


def scan() -> Scan:
    trees = {path: ast.parse(path.read_text(encoding="utf-8")) for path in _python_files()}
    positions = _code_parameters(trees)
    constants = _imported_constants(trees)
    result = Scan({}, [], set())
    for path, tree in trees.items():
        _ModuleScan(result, str(path.relative_to(ROOT)), tree, constants).run(positions)
    return result


SCAN = scan()


def test_the_scan_finds_the_codes_it_must() -> None:
    """The scan itself can fail: codes from each kind of site are found."""
    for code in (
        "PDF_JAVASCRIPT",  # Finding literal and FINDING_CODES
        "CHARSET_MISLABELED",  # module constant through `x if c else y`
        "HTML_REMOTE_IMAGE",  # _hit(code, ...) literal
        "MIME_HIDDEN_TEXT",  # report.add_finding literal
        "SMIME_OPAQUE",  # _opaque_crypto(part, code) literal
        "LIMIT_PARTS",  # MimeLimitExceeded(code, ...)
        "TEXT_BINARY",  # CannotSanitize(code, ...)
        "WORKER_EXCEPTION",  # _Failure(code, ...)
        "SANITIZER_ERROR",  # ("error", code, detail)
        "TRUSTED_SENDER",  # record.reason = ...
        "URL_UNC_PATH",  # a URL flag (dynamic site)
        "OTHER_ARCHIVE",  # a content class held by policy (dynamic site)
        "MIME_BARE_CR",  # module constant in an annotated FINDING_CODES tuple
    ):
        assert code in SCAN.codes, code


def test_every_code_site_is_understood() -> None:
    assert SCAN.unexplained == [], (
        "a code is built here in a way the scan cannot follow: add the site to DYNAMIC_SITES "
        "with where its values come from"
    )


def test_every_dynamic_site_still_exists() -> None:
    assert set(DYNAMIC_SITES) - SCAN.dynamic_sites_used == set()


def test_every_emitted_code_is_registered() -> None:
    missing = {code: where for code, where in SCAN.codes.items() if code not in findings.REGISTRY}
    assert missing == {}, "add a row to gateway/findings.py for each"


def test_every_sanitizer_vocabulary_is_registered() -> None:
    """The per-module FINDING_CODES tuples (kept by the sanitizers' owners) agree."""
    from gateway.sanitizers import FINDING_CODES

    assert set(FINDING_CODES) - set(findings.REGISTRY) == set()


def test_every_registered_code_is_emitted_somewhere() -> None:
    """No dead rows: a code nothing emits would be a promise (a metric, a rule) never kept."""
    dead = sorted(set(findings.REGISTRY) - set(SCAN.codes))
    assert dead == []


@pytest.mark.parametrize("code", findings.CODES)
def test_words_are_plain(code: str) -> None:
    row = findings.REGISTRY[code]
    for text in (row.ja, row.en):
        assert "_" not in text  # no internal identifiers (a plain word such as PDF is fine)
        assert len(text) <= 80
    assert any(ord(c) > 0x3000 for c in row.ja)  # Japanese, not a copy of the English
    assert row.en.isascii()


def test_metrics_count_every_registered_code_by_name() -> None:
    """One series per registered code from the start; none of them is counted as "other"."""
    from gateway.metrics import Metrics
    from gateway.report import Report

    metrics = Metrics()
    value = metrics.registry.get_sample_value
    unset = [c for c in findings.CODES if value("mugaika_findings_total", {"code": c}) != 0]
    assert unset == []
    report = Report(queue_id="Q")
    for code in findings.CODES:
        report.add_finding(code, "1")
    metrics.record_report(report)
    assert value("mugaika_findings_total", {"code": "other"}) in (None, 0)
    miscounted = [c for c in findings.CODES if value("mugaika_findings_total", {"code": c}) != 1]
    assert miscounted == []
