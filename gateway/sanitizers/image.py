"""Images: decoded and re-encoded with Pillow, so that only pixels cross; SVG is rasterized.

Raster images (JPEG, PNG, GIF, BMP, TIFF, WebP, and the rarer formats Pillow decodes, which
come out as PNG) are decoded to pixels and encoded again in their own format. HEIC/HEIF
photos (iPhones' default, RT-14) are decoded by pillow-heif (libheif with libde265) and written
as JPEG: Windows shows HEIC only with a paid codec, and a photo as PNG is several times larger;
the HEVC encoder is not needed, so no HEIC is ever written. Thumbnails, depth maps and other
auxiliary images inside a HEIF file are not even read. What does not
survive: EXIF/XMP/IPTC metadata, comments and text chunks, embedded thumbnails, ICC profiles
(the pixels are converted to sRGB first, so colours stay right), and anything after the
image's end marker (the "polyglot" trick of appending a ZIP or a script to a JPEG). EXIF
orientation is applied to the pixels before the tag is dropped. Animated GIF/WebP/PNG keep
their frames and timing.

Decompression bombs are refused before decoding, from the header's dimensions
(``options.max_image_pixels`` per frame, twice that over all frames), and Pillow's own
``DecompressionBombError`` is turned into the same finding. Truncated or corrupt images are
refused (fail closed): ``LOAD_TRUNCATED_IMAGES`` stays off.

SVG is active content (script, event handlers, external references, CVE-2023-4863-class
parsers behind it). It is never delivered as SVG: it is parsed with lxml (no entities, no
network), stripped of everything but shapes and embedded raster images, and rendered by
resvg (a memory-safe renderer that runs no script and fetches nothing) into a PNG.

What this module does not do: it keeps no image in its original bytes, does not upscale or
downscale ordinary images, and does not OCR or inspect what the pixels show.
"""

from __future__ import annotations

import io
import re
import struct
import warnings
from typing import Any

import pillow_heif
from PIL import Image, ImageCms, ImageOps, ImageSequence, UnidentifiedImageError

from gateway.detect import extension_of, sanitize_filename
from gateway.errors import CannotSanitize
from gateway.report import Finding
from gateway.sanitizers.base import OutputFile, SanitizeOptions, SanitizeResult

FINDING_CODES: tuple[str, ...] = (
    "IMAGE_TRAILING_DATA",  # bytes after the end marker (JPEG EOI, PNG IEND, GIF trailer)
    "IMAGE_METADATA",  # EXIF/XMP/IPTC/comments/ICC removed (detail lists which)
    "IMAGE_BOMB",  # dimensions or frame count beyond the limits: not decoded
    "IMAGE_DECODE_ERROR",  # corrupt, truncated or unsupported: no output
    "IMAGE_FORMAT_CHANGED",  # a rare format re-encoded as PNG, or SVG rendered as PNG
    "IMAGE_HEIC_TO_JPEG",  # a HEIC/HEIF photo delivered as JPEG
    "SVG_ACTIVE_CONTENT",  # script, handlers, foreignObject, external references removed
    "SVG_RASTERIZED",  # the SVG was delivered as a PNG rendering
)

# Formats we write back as themselves; anything else Pillow reads becomes PNG.
_NATIVE = {
    "JPEG": ("jpg", "image/jpeg"),
    "PNG": ("png", "image/png"),
    "GIF": ("gif", "image/gif"),
    "BMP": ("bmp", "image/bmp"),
    "TIFF": ("tif", "image/tiff"),
    "WEBP": ("webp", "image/webp"),
}
_EXTENSIONS_OF = {
    "JPEG": {"jpg", "jpeg", "jpe", "jfif"},
    "PNG": {"png"},
    "GIF": {"gif"},
    "BMP": {"bmp", "dib"},
    "TIFF": {"tif", "tiff"},
    "WEBP": {"webp"},
}
# Formats we decode but write as another: HEIF as JPEG (see the module docstring).
_WRITTEN_AS = {"HEIF": "JPEG"}
_MAX_FRAMES = 1000

# Only the primary images of a HEIF file are decoded: the rest is parsing surface we do not
# need. pillow-heif's own security limits (image size, number of items) stay on.
pillow_heif.options.THUMBNAILS = False
pillow_heif.options.DEPTH_IMAGES = False
pillow_heif.options.AUX_IMAGES = False
pillow_heif.register_heif_opener()
# TIFF structure tags (TIFF 6.0 baseline and the compression/predictor/sample ones Pillow
# writes); anything else in a TIFF's IFD is metadata.
_TIFF_BASELINE_TAGS = frozenset(
    {254, 255, 256, 257, 258, 259, 262, 266, 273, 274, 277, 278, 279, 280, 281, 282, 283, 284}
    | {290, 291, 296, 317, 320, 322, 323, 324, 325, 338, 339, 340, 341, 347, 530, 531, 532}
)
_SVG_MAX_SIDE = 4096  # rendered size bound, in pixels, whatever the SVG claims
_SVG_MAX_BYTES = 10 * 1024 * 1024


class ImageSanitizer:
    """See Sanitizer."""

    name = "image-reencode"
    description = "Re-encode raster images with Pillow; render SVG to PNG with resvg"
    handles = frozenset({"image", "svg"})

    def sanitize(
        self, data: bytes, filename: str, part_id: str, options: SanitizeOptions
    ) -> SanitizeResult:
        """See Sanitizer."""
        if _looks_like_svg(data):
            return _sanitize_svg(data, filename, part_id, options)
        return _sanitize_raster(data, filename, part_id, options)


# --- raster ----------------------------------------------------------------------------------


def image_end(data: bytes) -> int | None:
    """Offset just past the image's own end marker, or None where the format has none we
    can find (TIFF, unknown). Walks the structure; never searches for a marker blindly."""
    try:
        if data.startswith(b"\xff\xd8"):
            return _jpeg_end(data)
        if data.startswith(b"\x89PNG\r\n\x1a\n"):
            return _png_end(data)
        if data[:6] in (b"GIF87a", b"GIF89a"):
            return _gif_end(data)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            (size,) = struct.unpack_from("<I", data, 4)
            return min(len(data), 8 + size + (size & 1))
        if data[:2] == b"BM" and len(data) >= 6:
            (size,) = struct.unpack_from("<I", data, 2)
            return size if 26 <= size <= len(data) else None
    except (struct.error, IndexError):
        return None
    return None


def _jpeg_end(data: bytes) -> int | None:
    pos = 2
    n = len(data)
    while pos + 2 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:
            return pos + 2
        if marker in (0x01, *range(0xD0, 0xD8)):
            pos += 2
            continue
        if pos + 4 > n:
            return None
        (length,) = struct.unpack_from(">H", data, pos + 2)
        pos += 2 + length
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next real marker
            pos = _scan_end(data, pos)
    return None


def _scan_end(data: bytes, pos: int) -> int:
    """Where the entropy-coded data from ``pos`` ends: the first 0xFF that is neither a
    stuffed byte (FF 00), a restart marker (FF D0-D7) nor a fill byte before a marker, or
    ``len(data)``. ``bytes.find`` looks for the 0xFF bytes: stepping through a photo's
    megabyte a byte at a time in Python took 60 ms, most of an image's sanitizing time."""
    n = len(data)
    while True:
        pos = data.find(b"\xff", pos, n - 1)  # a marker needs the byte after it
        if pos < 0:
            return n
        following = data[pos + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
            pos += 1
            continue
        return pos


def _png_end(data: bytes) -> int | None:
    pos = 8
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4 : pos + 8]
        pos += 12 + length
        if kind == b"IEND":
            return pos
    return None


def _gif_end(data: bytes) -> int | None:
    pos = 13
    flags = data[10]
    if flags & 0x80:
        pos += 3 * (2 ** ((flags & 7) + 1))
    n = len(data)
    while pos < n:
        block = data[pos]
        if block == 0x3B:
            return pos + 1
        if block == 0x21:  # extension: label, then sub-blocks
            pos += 2
        elif block == 0x2C:  # image descriptor (+ local colour table), LZW size, sub-blocks
            local = data[pos + 9]
            pos += 10
            if local & 0x80:
                pos += 3 * (2 ** ((local & 7) + 1))
            pos += 1
        else:
            return None
        while pos < n:
            size = data[pos]
            pos += 1 + size
            if size == 0:
                break
    return None


def _trailing_finding(data: bytes, part_id: str) -> Finding | None:
    end = image_end(data)
    if end is None or end >= len(data):
        return None
    trailer = data[end:]
    if not trailer.strip(b"\x00\r\n \t"):
        return None  # padding some cameras and editors leave: not a payload
    try:
        import magic

        kind = magic.from_buffer(trailer[: 1024 * 1024])
    except Exception:
        kind = "data"
    return Finding(
        "IMAGE_TRAILING_DATA", part_id, f"{len(trailer)} bytes after the image end: {kind[:80]}"
    )


def _metadata_present(image: Image.Image) -> list[str]:
    info = image.info
    found = []
    for key, label in (
        ("exif", "EXIF"),
        ("xmp", "XMP"),
        ("XML:com.adobe.xmp", "XMP"),
        ("icc_profile", "ICC profile"),
        ("comment", "comment"),
        ("photoshop", "Photoshop/IPTC"),
        ("adobe", "Adobe APP14"),
    ):
        if info.get(key) and label not in found:
            found.append(label)
    try:
        exif = image.getexif()
        extra = set(exif) - _TIFF_BASELINE_TAGS if image.format == "TIFF" else set(exif)
        if extra and "EXIF" not in found:
            found.append("EXIF")
    except Exception:  # a broken EXIF block is dropped with the rest
        found.append("EXIF (damaged)")
    if image.format == "PNG" and getattr(image, "text", None):
        found.append("text chunks")
    app = getattr(image, "applist", None)
    if app and any(name not in ("APP0", "APP14") for name, _ in app):
        found.append("APPn segments")
    return found


def _to_srgb(frame: Image.Image, icc: bytes | None) -> Image.Image:
    if not icc or frame.mode not in ("RGB", "RGBA", "CMYK", "L"):
        return frame
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        target = ImageCms.createProfile("sRGB")
        out_mode = "RGBA" if frame.mode == "RGBA" else "RGB"
        if frame.mode == "L":
            return frame  # grey stays grey; the profile is dropped
        converted = ImageCms.profileToProfile(frame, source, target, outputMode=out_mode)
        return converted if converted is not None else frame
    except (ImageCms.PyCMSError, OSError, ValueError):
        return frame  # a broken profile is dropped; pixels are kept as decoded


def _sanitize_raster(
    data: bytes, filename: str, part_id: str, options: SanitizeOptions
) -> SanitizeResult:
    findings: list[Finding] = []
    trailing = _trailing_finding(data, part_id)
    if trailing:
        findings.append(trailing)
    previous_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = options.max_image_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return _reencode(data, filename, part_id, options, findings)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise CannotSanitize("IMAGE_BOMB", str(exc)[:200]) from None
    except CannotSanitize:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, struct.error) as exc:
        raise CannotSanitize("IMAGE_DECODE_ERROR", f"{type(exc).__name__}: {exc}"[:200]) from None
    except (EOFError, IndexError, KeyError, TypeError, ZeroDivisionError) as exc:
        raise CannotSanitize("IMAGE_DECODE_ERROR", f"{type(exc).__name__}: {exc}"[:200]) from None
    finally:
        Image.MAX_IMAGE_PIXELS = previous_limit


def _reencode(
    data: bytes,
    filename: str,
    part_id: str,
    options: SanitizeOptions,
    findings: list[Finding],
) -> SanitizeResult:
    image = Image.open(io.BytesIO(data))
    source_format = image.format or ""
    width, height = image.size
    pixels = width * height
    if width <= 0 or height <= 0:
        raise CannotSanitize("IMAGE_DECODE_ERROR", f"dimensions {width}x{height}")
    if pixels > options.max_image_pixels:
        raise CannotSanitize(
            "IMAGE_BOMB", f"{width}x{height} = {pixels} pixels > {options.max_image_pixels}"
        )
    n_frames = int(getattr(image, "n_frames", 1) or 1)
    if n_frames > _MAX_FRAMES or n_frames * pixels > 2 * options.max_image_pixels:
        raise CannotSanitize(
            "IMAGE_BOMB", f"{n_frames} frames of {width}x{height} pixels exceed the limits"
        )
    metadata = _metadata_present(image)
    icc = image.info.get("icc_profile")
    out_format = (
        source_format if source_format in _NATIVE else _WRITTEN_AS.get(source_format, "PNG")
    )
    if source_format == "HEIF":
        findings.append(Finding("IMAGE_HEIC_TO_JPEG", part_id, "HEIF -> JPEG"))
    elif out_format != source_format:
        findings.append(
            Finding("IMAGE_FORMAT_CHANGED", part_id, f"{source_format or 'unknown'} -> PNG")
        )

    frames: list[Image.Image] = []
    durations: list[int] = []
    for frame in ImageSequence.Iterator(image):
        frame.load()
        durations.append(int(frame.info.get("duration", 0) or 0))
        copy = frame.copy()
        if len(frames) == 0 and n_frames == 1:
            # In place: the copy is already ours (a second copy of the pixels cost 6 ms a photo).
            ImageOps.exif_transpose(copy, in_place=True)
        copy = _to_srgb(copy, icc)
        # Encoders fall back to ``info`` for ICC/EXIF/XMP/text: start from nothing but pixels.
        copy.info = {}
        frames.append(copy)
        if len(frames) >= n_frames:
            break
    if not frames:
        raise CannotSanitize("IMAGE_DECODE_ERROR", "no frame decoded")

    out = io.BytesIO()
    params: dict[str, Any] = {}
    first = _mode_for(frames[0], out_format)
    rest = [_mode_for(f, out_format) for f in frames[1:]]
    if out_format == "JPEG":
        params.update(quality=92, optimize=False)
    elif out_format == "PNG":
        if "transparency" in image.info and first.mode in ("P", "L", "RGB"):
            params["transparency"] = image.info["transparency"]
    elif out_format == "GIF":
        if "transparency" in image.info:
            params["transparency"] = image.info["transparency"]
        params["loop"] = int(image.info.get("loop", 0) or 0)
    elif out_format == "TIFF":
        params["compression"] = "group4" if first.mode == "1" else "tiff_deflate"
    elif out_format == "WEBP":
        params.update(quality=90, method=4)
    if rest and out_format in ("GIF", "PNG", "WEBP", "TIFF"):
        params.update(save_all=True, append_images=rest)
        if out_format in ("GIF", "PNG", "WEBP"):
            params["duration"] = durations[: len(frames)] or 100
    elif rest:
        findings.append(Finding("IMAGE_FORMAT_CHANGED", part_id, "only the first frame kept"))
    first.save(out, format=out_format, **params)
    encoded = out.getvalue()

    if metadata:
        findings.append(Finding("IMAGE_METADATA", part_id, ", ".join(dict.fromkeys(metadata))))
    _verify_raster(encoded, out_format, first.size)
    ext, content_type = _NATIVE[out_format]
    current = extension_of(filename)
    keep_ext = current in _EXTENSIONS_OF[out_format]
    name = sanitize_filename(filename or "image", new_extension=None if keep_ext else ext)
    return SanitizeResult(
        outputs=(OutputFile(encoded, name, content_type),),
        findings=tuple(findings),
    )


def _mode_for(frame: Image.Image, out_format: str) -> Image.Image:
    mode = frame.mode
    if out_format == "JPEG":
        if mode in ("L", "RGB", "CMYK"):
            return frame
        if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in frame.info):
            rgba = frame.convert("RGBA")
            background = Image.new("RGB", rgba.size, (255, 255, 255))
            background.paste(rgba, mask=rgba.getchannel("A"))
            return background
        return frame.convert("RGB")
    if out_format == "GIF":
        return (
            frame if mode in ("P", "L", "1") else frame.convert("P", palette=Image.Palette.ADAPTIVE)
        )
    if out_format == "BMP":
        return frame if mode in ("1", "L", "P", "RGB", "RGBA") else frame.convert("RGBA")
    if out_format == "WEBP":
        return frame if mode in ("RGB", "RGBA") else frame.convert("RGBA")
    if out_format == "PNG":
        if mode in ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"):
            return frame
        return frame.convert("RGBA")
    if out_format == "TIFF":
        if mode in ("1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"):
            return frame
        return frame.convert("RGBA")
    return frame


def _verify_raster(encoded: bytes, out_format: str, size: tuple[int, int]) -> None:
    """Our own output must reopen as what we meant to write, with nothing after its end."""
    check = Image.open(io.BytesIO(encoded))
    if check.format != out_format or check.size != size:
        raise CannotSanitize(
            "IMAGE_DECODE_ERROR", f"re-encoded image reads as {check.format} {check.size}"
        )
    if out_format == "JPEG":
        # libjpeg still reads every marker and entropy-decodes every block at 1/8 scale (what
        # can be malformed); only the inverse DCT is smaller: half the time of a photo's check.
        check.draft(check.mode, (max(1, size[0] // 8), max(1, size[1] // 8)))
    check.load()
    if check.info.get("exif") or check.info.get("xmp") or check.info.get("comment"):
        raise CannotSanitize("IMAGE_DECODE_ERROR", "metadata survived re-encoding")
    end = image_end(encoded)
    if end is not None and end < len(encoded):
        raise CannotSanitize("IMAGE_DECODE_ERROR", "re-encoded image has trailing data")


# --- SVG -------------------------------------------------------------------------------------

_SVG_SNIFF = re.compile(
    rb"^\s*(\xef\xbb\xbf)?\s*(<\?xml[^>]*\?>\s*)?(<!--.*?-->\s*|<!DOCTYPE[^>]*(\[.*?\])?\s*>\s*)*"
    rb"<(\w+:)?svg\b",
    re.IGNORECASE | re.DOTALL,
)
_SVG_NS = "http://www.w3.org/2000/svg"
_XLINK_NS = "http://www.w3.org/1999/xlink"
_DROP_ELEMENTS = {"script", "foreignobject", "handler", "listener", "iframe", "embed", "object"}
_SAFE_DATA_URI = re.compile(r"^\s*data:image/(png|jpeg|jpg|gif|webp);base64,", re.IGNORECASE)


def _looks_like_svg(data: bytes) -> bool:
    return bool(_SVG_SNIFF.match(data[:65536]))


def _local_name(tag: Any) -> str:
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1].lower()


def _clean_svg(data: bytes, part_id: str) -> tuple[bytes, list[Finding]]:
    from lxml import etree

    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False, recover=False
    )
    try:
        root = etree.fromstring(data, parser=parser)
    except etree.XMLSyntaxError as exc:
        raise CannotSanitize("IMAGE_DECODE_ERROR", f"SVG is not well-formed XML: {exc}") from None
    if root is None or _local_name(root.tag) != "svg":
        raise CannotSanitize("IMAGE_DECODE_ERROR", "root element is not <svg>")
    removed: list[str] = []
    for element in list(root.iter()):
        if not isinstance(element.tag, str):  # comments, processing instructions, entities
            if element.getparent() is not None:
                element.getparent().remove(element)
            continue
        name = _local_name(element.tag)
        if name in _DROP_ELEMENTS:
            removed.append(f"<{name}>")
            parent = element.getparent()
            if parent is not None:
                parent.remove(element)
            continue
        for attribute in list(element.attrib):
            local = _local_name(attribute)
            value = element.attrib[attribute]
            if local.startswith("on"):
                removed.append(f"{local}=")
                del element.attrib[attribute]
            elif local == "href" and not (value.startswith("#") or _SAFE_DATA_URI.match(value)):
                removed.append(f"href={value[:60]}")
                del element.attrib[attribute]
            elif local == "style" and re.search(r"url\s*\(\s*['\"]?\s*(?!#)", value):
                removed.append("style url()")
                del element.attrib[attribute]
        if name == "style" and element.text and re.search(r"@import|url\s*\(", element.text):
            removed.append("<style> with external reference")
            element.text = ""
    findings = []
    if removed:
        detail = ", ".join(dict.fromkeys(removed))[:300]
        findings.append(Finding("SVG_ACTIVE_CONTENT", part_id, detail))
    return etree.tostring(root), findings


def _svg_size(svg: bytes) -> tuple[float, float]:
    from lxml import etree

    root = etree.fromstring(svg, etree.XMLParser(resolve_entities=False, no_network=True))

    def number(value: str | None) -> float:
        match = re.match(r"\s*([0-9.]+(?:e[+-]?[0-9]+)?)", value or "", re.IGNORECASE)
        try:
            return float(match.group(1)) if match else 0.0
        except ValueError:
            return 0.0

    width, height = number(root.get("width")), number(root.get("height"))
    if (width <= 0 or height <= 0) and root.get("viewBox"):
        parts = re.split(r"[\s,]+", root.get("viewBox", "").strip())
        if len(parts) == 4:
            width, height = number(parts[2]), number(parts[3])
    return width or 300.0, height or 150.0


def _sanitize_svg(
    data: bytes, filename: str, part_id: str, options: SanitizeOptions
) -> SanitizeResult:
    if len(data) > _SVG_MAX_BYTES:
        raise CannotSanitize("IMAGE_BOMB", f"SVG of {len(data)} bytes")
    try:
        import resvg_py
    except ImportError:
        raise CannotSanitize("SVG_RASTERIZE_UNAVAILABLE", "resvg is not installed") from None
    cleaned, findings = _clean_svg(data, part_id)
    width, height = _svg_size(cleaned)
    scale = min(1.0, _SVG_MAX_SIDE / max(width, height))
    target_w = max(1, int(width * scale))
    target_h = max(1, int(height * scale))
    if target_w * target_h > options.max_image_pixels:
        raise CannotSanitize("IMAGE_BOMB", f"SVG renders at {target_w}x{target_h}")
    try:
        png = resvg_py.svg_to_bytes(
            svg_string=cleaned.decode("utf-8"),
            width=target_w,
            height=target_h,
            skip_system_fonts=False,
            background="white",
        )
    except Exception as exc:  # resvg reports parse errors as plain exceptions
        raise CannotSanitize("IMAGE_DECODE_ERROR", f"SVG did not render: {exc}"[:200]) from None
    png = bytes(png)
    check = Image.open(io.BytesIO(png))
    if check.format != "PNG":
        raise CannotSanitize("IMAGE_DECODE_ERROR", "SVG renderer returned no PNG")
    check.load()
    findings.append(Finding("SVG_RASTERIZED", part_id, f"{check.size[0]}x{check.size[1]} PNG"))
    name = sanitize_filename(filename or "image", new_extension="png")
    return SanitizeResult(outputs=(OutputFile(png, name, "image/png"),), findings=tuple(findings))
