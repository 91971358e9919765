"""Shared fixtures: a real gateway in-process, a real SMTP sink, the corpus location."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# Test doubles (tests/helpers/worker_targets.py) refuse to run without this.
os.environ["MUGAIKA_TESTING"] = "1"

# Property tests: CI runs a fixed, reproducible set of examples (a red CI must mean a bug, not
# a lucky draw); HYPOTHESIS_PROFILE=explore searches anew each run, for development.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO_ROOT = Path(__file__).resolve().parent.parent

# After MUGAIKA_TESTING is set. The output_rates hooks gather the corpus document outcomes
# where every report arrives (a floor of output per content class).
from tests.corpus.output_rates import (  # noqa: E402, F401
    pytest_runtest_logreport,
    pytest_sessionfinish,
)
from tests.helpers.corpus import corpus_root  # noqa: E402


@pytest.fixture(scope="session")
def corpus() -> Path:
    found = corpus_root()
    if found is None:
        pytest.skip("the shared corpus (../shared/corpus) is not present")
    return found


@pytest.fixture
def sink() -> Iterator[object]:
    from tests.helpers.smtp_sink import SmtpSink

    with SmtpSink() as running:
        yield running


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip component tests whose component is missing, saying which and why."""
    missing = {
        "postfix": not Path("/usr/sbin/postfix").exists(),
        "chromium": not Path("/usr/bin/chromium").exists(),
    }
    for item in items:
        for marker, absent in missing.items():
            if absent and item.get_closest_marker(marker):
                item.add_marker(pytest.mark.skip(reason=f"{marker} is not installed here"))
