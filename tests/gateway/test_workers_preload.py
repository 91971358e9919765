"""A per-document child starts with every library its sanitizer needs already imported.

``run_isolated`` forks the worker for each document; whatever a child imports dies with it,
so a library imported lazily inside a sanitizer was imported again for every PDF and every
Office file (oletools with pyparsing: over 100 ms each). The worker's ``Pipeline`` preloads
them once. Each check runs in a fresh interpreter: the test process has imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from tests.helpers.corpus import corpus_file
    from tests.helpers.hostile import benign_docx, benign_pdf
    from tests.helpers.pipeline import default_pipeline
    from gateway.sanitizers.base import SanitizeOptions
    from gateway.sanitizers.ole import OleSanitizer
    from gateway.sanitizers.ooxml import OoxmlSanitizer
    from gateway.sanitizers.pdf import PdfSanitizer
    from gateway.sanitizers import urls

    pdf, docx = benign_pdf(url=True), benign_docx(link=True)
    doc = corpus_file("msoffcrypto-tool/inputs/plain.doc")
    default_pipeline()  # what a worker builds once, before its first job
    before = set(sys.modules)
    fold_table_ready = urls._fold_table.cache_info().currsize == 1
    options = SanitizeOptions()
    PdfSanitizer().sanitize(pdf, "a.pdf", "1", options)
    OoxmlSanitizer().sanitize(docx, "a.docx", "2", options)
    OleSanitizer().sanitize(doc, "a.doc", "3", options)
    print(json.dumps({
        "imported": sorted(set(sys.modules) - before),
        "fold_table_ready": fold_table_ready,
    }))
    """
)


def test_sanitizing_documents_imports_nothing_the_worker_has_not_preloaded():
    completed = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(completed.stdout.splitlines()[-1])
    # Codec modules are looked up by name on first use; they are small and from the
    # standard library. Anything else would be imported again in every child.
    imported = [name for name in result["imported"] if not name.startswith("encodings.")]
    assert imported == []
    assert result["fold_table_ready"]
