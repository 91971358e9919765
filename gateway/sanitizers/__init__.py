"""Content sanitizers, one per content class. See ``gateway.sanitizers.base``.

``REGISTRY`` is the explicit list of sanitizer instances, checked at import for duplicate
names and for two sanitizers claiming one content class (Mailman's ``add_components`` does
the same for rules). ``sanitizer_for(content_class)`` is how the pipeline and the archive
sanitizer find the one to run; ``None`` means "no sanitizer: strip or quarantine".
``FINDING_CODES`` is the vocabulary of every sanitizer plus ``gateway.detect``, for metrics
and the UI.
"""

from __future__ import annotations

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
