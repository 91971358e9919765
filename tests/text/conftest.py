"""Fixtures for the text, HTML, URL and charset tests: where the shared corpus is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def find_corpus() -> Path | None:
    """$MUGAIKA_CORPUS, else <repo>/../shared/corpus, else /work/shared/corpus."""
    for candidate in (
        os.environ.get("MUGAIKA_CORPUS"),
        REPO_ROOT.parent / "shared" / "corpus",
        "/work/shared/corpus",
    ):
        if candidate and Path(candidate, "MANIFEST.tsv").is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def text_corpus() -> Path:
    found = find_corpus()
    if found is None:
        pytest.skip("the shared corpus (../shared/corpus) is not present")
    return found
