"""Coverage-guided fuzzing (atheris, libFuzzer) of the framing reader and the MIME walker.

    .venv/bin/python tests/fuzz/fuzz_mime.py TARGET [libFuzzer options] [CORPUS_DIR...]

TARGET is ``framing`` or ``walker`` (``tests/fuzz/mime_properties.py`` says what each
checks). ``gateway.framing`` and ``gateway.mime`` are instrumented, so libFuzzer learns which
inputs reach new branches of our readers. A property that fails, or any exception but
``MimeLimitExceeded``, stops the run and leaves the input as ``crash-*`` (save it under
``tests/fuzz/regressions/TARGET-NAME.eml``: ``test_fuzz_mime.py`` replays every file there).

CI runs each target for a few seconds from seeds made of the shared corpus
(``tests/fuzz/test_fuzz_mime.py``); a longer run, for instance an hour each::

    mkdir -p /tmp/fuzz-framing && .venv/bin/python tests/fuzz/seeds.py /tmp/fuzz-framing
    .venv/bin/python tests/fuzz/fuzz_mime.py framing -max_total_time=3600 \\
        -max_len=65536 -artifact_prefix=/tmp/fuzz-framing/ /tmp/fuzz-framing
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports(include=["gateway.framing", "gateway.mime"]):
    from tests.fuzz import mime_properties


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in mime_properties.TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(mime_properties.TARGETS)}}} [libFuzzer args]")
    target = mime_properties.TARGETS[sys.argv[1]]

    def one_input(data: bytes) -> None:
        target(data)

    atheris.Setup([sys.argv[0], *sys.argv[2:]], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
