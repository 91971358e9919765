"""Every string of the admin UI has Japanese and English words (issue 16).

- both message files have the same keys, none empty;
- templates contain no literal text of their own (only ``t(...)`` keys, values, symbols),
  neither between tags nor in attributes people read (``placeholder``, ``aria-label``,
  ``title``, ``alt``);
- every error the release path can raise carries a key with words in both languages;
- every reason the gateway's source can record for a held message has words
  (``quarantine/words.py``), and those words are not the English sentence itself.
"""

from __future__ import annotations

import ast
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from quarantine import words
from quarantine.schema import KINDS, STATUSES
from quarantine.users import ROLES
from quarantine.web import i18n

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "quarantine" / "web" / "templates"
# What may stand in a template without a key: punctuation, arrows, separators.
SYMBOLS = re.compile(r"^[\s#·→←—–:()\[\]/|,.✓…-]*$")
READ_ATTRIBUTES = {"placeholder", "aria-label", "title", "alt"}


def test_both_files_have_the_same_keys_and_no_empty_words() -> None:
    ja, en = i18n.messages("ja"), i18n.messages("en")
    assert sorted(set(ja) ^ set(en)) == []
    assert [k for k in ja if not ja[k].strip() or not en[k].strip()] == []


def test_keys_built_from_values_exist_for_every_value() -> None:
    ja = i18n.messages("ja")
    needed = [f"status.{s}" for s in STATUSES] + [f"kind.{k}" for k in KINDS]
    needed += [f"role.{r}" for r in ROLES] + [f"target.{t}" for t in ("sanitized", "original")]
    needed += [f"request.{s}" for s in ("pending", "approved", "refused", "done", "failed")]
    needed += [f"error.code.{c}" for c in _error_codes()]
    assert [k for k in needed if k not in ja] == []


def _error_codes() -> list[str]:
    import quarantine.errors as errors

    return sorted(
        {
            cls.code
            for cls in vars(errors).values()
            if isinstance(cls, type) and issubclass(cls, errors.QuarantineError)
        }
    )


class _Literals(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in READ_ATTRIBUTES and value and not SYMBOLS.match(value):
                self.found.append(f"<{tag} {name}={value!r}>")

    def handle_data(self, data: str) -> None:
        if not SYMBOLS.match(data):
            self.found.append(data.strip())


@pytest.mark.parametrize("template", sorted(p.name for p in TEMPLATES.glob("*.html")))
def test_templates_have_no_untranslated_literal_text(template: str) -> None:
    text = (TEMPLATES / template).read_text(encoding="utf-8")
    # Jinja comments, statements and expressions are not text a person reads.
    text = re.sub(r"\{#.*?#\}", "", text, flags=re.S)
    text = re.sub(r"\{%.*?%\}", "", text, flags=re.S)
    text = re.sub(r"\{\{.*?\}\}", "", text, flags=re.S)
    text = re.sub(r"<style.*?</style>", "", text, flags=re.S)
    parser = _Literals()
    parser.feed(text)
    assert parser.found == []


def test_templates_use_only_known_keys() -> None:
    ja = i18n.messages("ja")
    used: set[str] = set()
    for template in TEMPLATES.glob("*.html"):
        used |= set(re.findall(r'(?<![\w.])t\(["\']([a-z_.0-9-]+)["\']', template.read_text()))
    assert sorted(k for k in used if not k.endswith(".") and k not in ja) == []


def _raised_errors(path: Path) -> list[tuple[int, str, str | None]]:
    """(line, class, key) of every ``raise SomeQuarantineError(...)`` in ``path``."""
    import quarantine.errors as errors

    classes = {
        name
        for name, cls in vars(errors).items()
        if isinstance(cls, type) and issubclass(cls, errors.QuarantineError)
    }
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        call = node.exc if isinstance(node, ast.Raise) else None
        if isinstance(node, ast.Return) and isinstance(node.value, ast.Call):
            call = node.value  # _refusal() returns the error it builds
        if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
            continue
        if call.func.id not in classes:
            continue
        key = next(
            (kw.value.value for kw in call.keywords if kw.arg == "key"),
            None,
        )
        found.append((node.lineno, call.func.id, key))  # type: ignore[arg-type]
    return found


@pytest.mark.parametrize(
    "module", ["quarantine/release.py", "quarantine/sql.py", "quarantine/web/app.py"]
)
def test_every_error_the_ui_can_show_has_words_in_both_languages(module: str) -> None:
    ja, en = i18n.messages("ja"), i18n.messages("en")
    raised = _raised_errors(ROOT / module)
    assert raised, "the scan found no raise at all: the test would prove nothing"
    for line, cls, key in raised:
        if cls in ("ItemNotFound", "BlobCorrupt"):
            continue  # shown with their code's words (404 looks the same for every cause)
        assert key, f"{module}:{line}: {cls} without key="
        assert f"error.{key}" in ja, f"{module}:{line}: error.{key}"
        assert f"error.{key}" in en, f"{module}:{line}: error.{key}"


def _pipeline_reasons() -> list[str]:
    """Every reason the gateway's source records with ``raise_verdict``, as a sample string
    (f-string fields filled with a plausible value)."""
    samples = {
        "content_class": "executable",
        "code": "WORKER_TIMEOUT",
        "exc.code": "LIMIT_PARTS",
        "exc.detail": "more than 500 parts",
        "exc": "boom",
        "type(exc).__name__": "ValueError",
    }
    reasons = []
    for path in sorted((ROOT / "gateway").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "raise_verdict"
                and len(node.args) == 2
            ):
                continue
            argument = node.args[1]
            if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                reasons.append(argument.value)
            elif isinstance(argument, ast.JoinedStr):
                text = ""
                for value in argument.values:
                    if isinstance(value, ast.Constant):
                        text += str(value.value)
                    else:
                        expression = ast.unparse(value.value)  # type: ignore[attr-defined]
                        text += samples.get(expression, "X")
                reasons.append(text)
            elif isinstance(argument, ast.Attribute) and argument.attr == "code":
                reasons.append("WORKER_CRASHED")
    return reasons


def test_every_reason_the_pipeline_records_has_words() -> None:
    reasons = _pipeline_reasons()
    assert "attachment policy: executable is quarantined" in reasons
    for reason in reasons:
        if reason.startswith(("DOWNSTREAM_", "NOTHING_TO_DELIVER", "INTERNAL_ERROR")):
            continue  # tempfail and reject verdicts: never a held item's reason
        ja = words.reason_words(reason, "ja")
        en = words.reason_words(reason, "en")
        assert ja != reason, f"no Japanese words for {reason!r}"
        assert not re.fullmatch(r"[\x00-\x7f]*", ja), f"{reason!r} → {ja!r}"
        assert en, reason


def test_reason_words_in_japanese_and_english() -> None:
    reason = "attachment policy: executable is quarantined"
    assert words.reason_words(reason, "ja") == "添付ファイルの方針により保留（実行ファイル）"
    assert words.reason_words(reason, "en") == "held by the attachment policy (executable)"
    assert words.reason_words("OOXML_VBA_MACRO", "ja") == "マクロを除去"
    # A policy rule's own reason is the operator's text: shown as written.
    assert words.reason_words("内部ドメインを騙る外部からのメール", "en") == (
        "内部ドメインを騙る外部からのメール"
    )
