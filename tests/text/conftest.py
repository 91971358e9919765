"""Fixtures for the text, HTML, URL and charset tests: where the shared corpus is."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.corpus import corpus_root


def find_corpus() -> Path | None:
    """See ``tests.helpers.corpus.corpus_root``."""
    return corpus_root()


@pytest.fixture(scope="session")
def text_corpus() -> Path:
    found = find_corpus()
    if found is None:
        pytest.skip("the shared corpus (../shared/corpus) is not present")
    return found
