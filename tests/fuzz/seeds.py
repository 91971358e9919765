"""Seed inputs for the MIME fuzzers: real mail from the shared corpus and the ambiguous set.

    .venv/bin/python tests/fuzz/seeds.py DIRECTORY

writes every corpus mail of at most ``MAX_SEED`` bytes (line ends made CRLF, as they arrive
over SMTP; 1,000-odd files), the generated ambiguous messages of
``tests/differential/ambiguous.py`` and the saved regressions into DIRECTORY.
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.differential import ambiguous
from tests.helpers.corpus import corpus_root

MAX_SEED = 16 * 1024
REGRESSIONS = Path(__file__).resolve().parent / "regressions"


def seeds() -> list[bytes]:
    out: list[bytes] = []
    root = corpus_root()
    if root is not None:
        for row in (root / "MANIFEST.tsv").read_text(encoding="utf-8").splitlines()[1:]:
            path, kind = row.split("\t")[0], row.split("\t")[4]
            if kind == "eml" and (root / path).stat().st_size <= MAX_SEED:
                out.append(re.sub(rb"\r\n|\r|\n", b"\r\n", (root / path).read_bytes()))
    out += [ambiguous.build(name) for name in ambiguous.CASES]
    out += [p.read_bytes() for p in sorted(REGRESSIONS.glob("*.eml"))]
    return out


def write_seeds(directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    found = seeds()
    for data in found:
        (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)
    return len(found)


if __name__ == "__main__":
    print(write_seeds(Path(sys.argv[1])), "seeds")
