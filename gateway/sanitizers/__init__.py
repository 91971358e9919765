"""Content sanitizers, one per content class. See ``gateway.sanitizers.base``.

``REGISTRY`` is the explicit list of sanitizer instances, checked at import for duplicate
names and for two sanitizers claiming one content class (Mailman's ``add_components`` does
the same for rules). ``sanitizer_for(content_class)`` is how the pipeline and the archive
sanitizer find the one to run; ``None`` means "no sanitizer: strip or quarantine".
``FINDING_CODES`` is the vocabulary of every sanitizer plus ``gateway.detect``, for metrics
and the UI.
"""

from __future__ import annotations

import contextlib
import importlib

from gateway import detect
from gateway.sanitizers import archive, htmlfile, image, odf, ole, ooxml, pdf, rtf, text
from gateway.sanitizers.base import CONTENT_CLASSES, Sanitizer

REGISTRY: tuple[Sanitizer, ...] = (
    pdf.PdfSanitizer(),
    ooxml.OoxmlSanitizer(),
    ole.OleSanitizer(),
    image.ImageSanitizer(),
    archive.ArchiveSanitizer(),
    text.TextSanitizer(),
    htmlfile.HtmlFileSanitizer(),
    rtf.RtfSanitizer(),
    odf.OdfSanitizer(),
)

FINDING_CODES: tuple[str, ...] = tuple(
    dict.fromkeys(
        detect.FINDING_CODES
        + pdf.FINDING_CODES
        + ooxml.FINDING_CODES
        + ole.FINDING_CODES
        + image.FINDING_CODES
        + archive.FINDING_CODES
        + text.FINDING_CODES
        + htmlfile.FINDING_CODES
        + rtf.FINDING_CODES
        + odf.FINDING_CODES
    )
)


def _index(registry: tuple[Sanitizer, ...]) -> dict[str, Sanitizer]:
    names: set[str] = set()
    by_class: dict[str, Sanitizer] = {}
    for sanitizer in registry:
        if sanitizer.name in names:
            raise RuntimeError(f"duplicate sanitizer name {sanitizer.name!r} in REGISTRY")
        names.add(sanitizer.name)
        for content_class in sanitizer.handles:
            if content_class not in CONTENT_CLASSES:
                raise RuntimeError(f"{sanitizer.name} handles unknown class {content_class!r}")
            if content_class in by_class:
                raise RuntimeError(
                    f"{sanitizer.name} and {by_class[content_class].name} both handle "
                    f"{content_class!r}"
                )
            by_class[content_class] = sanitizer
    return by_class


_BY_CLASS = _index(REGISTRY)


def sanitizer_for(content_class: str) -> Sanitizer | None:
    """The sanitizer for ``content_class``, or None (the policy strips or quarantines)."""
    return _BY_CLASS.get(content_class)


# What the sanitizers import only where they use it (so that a process that merely names
# them, like the main process for FINDING_CODES, stays small). A pool worker must import them
# before it forks its per-document children: a child's imports die with it, so every child
# would pay them again (oletools with pyparsing alone is over 100 ms per document).
LAZY_LIBRARIES = (
    "olefile",
    "oletools.olevba",
    "oletools.oleid",
    "oletools.msodde",
    "oletools.crypto",
    "msoffcrypto",
    # msoffcrypto imports the reader of each format (and cryptography) when it meets one.
    "msoffcrypto.format.doc97",
    "msoffcrypto.format.xls97",
    "msoffcrypto.format.ppt97",
    "msoffcrypto.format.ooxml",
    "pypdfium2",
    "pypdfium2.raw",
    "magic",
    "resvg_py",
    "tnefparse",
)


def preload_libraries() -> None:
    """Import ``LAZY_LIBRARIES`` and fill the caches the sanitizers build on first use, in
    the process that forks the sanitizer children (``gateway.pipeline.Pipeline``)."""
    from gateway.sanitizers import urls

    for name in LAZY_LIBRARIES:
        # An optional library that is missing fails where it is used, as before.
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    urls.preload()
    # The first message would otherwise pay for these (about 0.2 s): the public suffix list
    # of DMARC alignment and the confusable-character table of the lookalike rule.
    from gateway import auth
    from rules import lookalike

    auth.organizational_domain("example.jp")
    lookalike.preload()
