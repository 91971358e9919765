"""A floor under how often each sanitizer produces output on the corpus documents.

``test_documents_corpus.test_document`` accepts a refusal (``CannotSanitize``) or an empty
result for any one file: a damaged or encrypted document must be refused. But a sanitizer that
refused *everything* would pass all 870 cases. So each case records its outcome, and once
every case of the module has run, the share with output per content class must stay above the
floor measured on the corpus (issue 12, item 9), with a margin for honest changes:

=========  ==============  =======
class      measured        floor
=========  ==============  =======
pdf        395/464 (85%)   80%
ooxml      104/108 (96%)   90%
image      18/20 (90%)     80%
archive    74/139 (53%)    45%
ole        4/47 (9%)       5%
text       16/16 (100%)    90%
=========  ==============  =======

(measured with ``pytest tests/corpus/test_documents_corpus.py`` on the shared corpus of
2026-12; refusals are encrypted and damaged files, OLE files with macros are held, archives
whose every member is stripped are empty.)

The cases run in several xdist workers, so the outcomes are gathered where the reports
arrive (the controller, or the only process) by the hooks below, which ``tests/conftest.py``
registers; a floor not met is reported as a failed test of its own,
``tests/corpus/test_documents_corpus.py::output_rate[CLASS]``, and fails the run.
"""

from __future__ import annotations

from collections import Counter

import pytest
from _pytest.reports import TestReport

FLOORS = {"pdf": 0.80, "ooxml": 0.90, "image": 0.80, "archive": 0.45, "ole": 0.05, "text": 0.90}
PROPERTY = "document_outcome"  # "<content class>:<output|empty|refused|none>"
_MODULE = "tests/corpus/test_documents_corpus.py"
_outcomes: dict[str, str] = {}


def shortfalls(outcomes: dict[str, str]) -> list[tuple[str, str]]:
    """(class, message) for each class whose output rate is under its floor."""
    total: Counter[str] = Counter()
    produced: Counter[str] = Counter()
    for value in outcomes.values():
        content_class, _, outcome = value.partition(":")
        total[content_class] += 1
        produced[content_class] += outcome == "output"
    out = []
    for content_class, floor in sorted(FLOORS.items()):
        if not total[content_class]:
            out.append((content_class, "no corpus document of this class ran"))
            continue
        rate = produced[content_class] / total[content_class]
        if rate < floor:
            out.append(
                (
                    content_class,
                    f"{produced[content_class]} of {total[content_class]} documents came out "
                    f"({rate:.0%}), under the floor of {floor:.0%}: a sanitizer refuses what "
                    "it used to make harmless",
                )
            )
    return out


def pytest_runtest_logreport(report: TestReport) -> None:
    if report.when != "call" or not report.nodeid.startswith(f"{_MODULE}::test_document["):
        return
    for name, value in report.user_properties:
        if name == PROPERTY:
            _outcomes[report.nodeid] = str(value)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput"):
        return  # an xdist worker: the controller sees every report
    from tests.corpus.test_documents_corpus import CASES

    if not CASES or len(_outcomes) < len(CASES):
        return  # the corpus is absent, or only some cases ran (-k, a subset): no rate
    for content_class, message in shortfalls(_outcomes):
        report = TestReport(
            nodeid=f"{_MODULE}::output_rate[{content_class}]",
            location=(_MODULE, 0, f"output_rate[{content_class}]"),
            keywords={},
            outcome="failed",
            longrepr=f"output rate of {content_class}: {message}",
            when="call",
        )
        session.config.hook.pytest_runtest_logreport(report=report)
        session.testsfailed += 1
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
