"""Where the shared real-world corpus is: $MUGAIKA_CORPUS, ../shared/corpus, /work/shared/corpus."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def corpus_root() -> Path | None:
    for candidate in (
        os.environ.get("MUGAIKA_CORPUS"),
        REPO_ROOT.parent / "shared" / "corpus",
        Path("/work/shared/corpus"),
    ):
        if candidate and Path(candidate, "MANIFEST.tsv").is_file():
            return Path(candidate)
    return None


def corpus_file(relative: str) -> bytes:
    """A corpus file's bytes; skips the test (with the reason) when the corpus is absent."""
    root = corpus_root()
    if root is None:
        pytest.skip("the shared corpus (../shared/corpus) is not present")
    path = root / relative
    if not path.is_file():
        pytest.skip(f"corpus file {relative} is not present")
    return path.read_bytes()


def manifest() -> list[tuple[str, str]]:
    """(path, kind) of every corpus file, or [] without a corpus."""
    root = corpus_root()
    if root is None:
        return []
    rows = []
    for line in (root / "MANIFEST.tsv").read_text().splitlines()[1:]:
        fields = line.split("\t")
        if len(fields) >= 5:
            rows.append((fields[0], fields[4]))
    return rows


def flags() -> dict[str, set[str]]:
    root = corpus_root()
    if root is None:
        return {}
    out: dict[str, set[str]] = {}
    for line in (root / "FLAGS.tsv").read_text().splitlines()[1:]:
        path, _, flag_text = line.partition("\t")
        out[path] = {f.split("=")[0].split(":")[0].split("(")[0] for f in flag_text.split(",")}
    return out
