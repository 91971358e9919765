"""Image sanitizer: pixels kept, metadata and appended payloads gone, bombs refused, SVG
rendered to PNG without its script."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageChops

from gateway.errors import CannotSanitize
from gateway.sanitizers.base import SanitizeOptions
from gateway.sanitizers.image import ImageSanitizer, image_end
from tests.helpers import hostile, oracle

SANITIZER = ImageSanitizer()


def _sanitize(data: bytes, name: str = "photo.jpg", **options: object):  # type: ignore[no-untyped-def]
    return SANITIZER.sanitize(data, name, "1.4", SanitizeOptions(**options))  # type: ignore[arg-type]


@pytest.mark.parametrize("payload", ["zip", "script"])
def test_polyglot_payload_is_cut(payload: str) -> None:
    data = hostile.polyglot_jpeg(payload)
    result = _sanitize(data)
    trailing = next(f for f in result.findings if f.code == "IMAGE_TRAILING_DATA")
    assert "bytes after the image end" in trailing.detail
    if payload == "zip":
        assert "Zip archive" in trailing.detail
    out = result.outputs[0].data
    assert oracle.magic_mime(out) == "image/jpeg"
    assert image_end(out) == len(out)
    assert b"PK\x03\x04" not in out
    assert b"<script" not in out


def test_exif_and_comment_dropped_orientation_applied() -> None:
    data = hostile.jpeg(64, 48, exif=True)
    result = _sanitize(data)
    metadata = next(f for f in result.findings if f.code == "IMAGE_METADATA")
    assert "EXIF" in metadata.detail
    assert "comment" in metadata.detail
    out = Image.open(io.BytesIO(result.outputs[0].data))
    assert not out.getexif()
    assert "comment" not in out.info
    assert out.size == (48, 64)  # orientation 6 applied to the pixels
    assert b"EvilCam" not in result.outputs[0].data


def test_png_text_chunks_dropped_pixels_equal() -> None:
    data = hostile.png(text=True)
    result = _sanitize(data, "a.png")
    assert [f.code for f in result.findings] == ["IMAGE_METADATA"]
    before = Image.open(io.BytesIO(data)).convert("RGBA")
    after = Image.open(io.BytesIO(result.outputs[0].data)).convert("RGBA")
    assert ImageChops.difference(before, after).getbbox() is None
    assert b"<script>" not in result.outputs[0].data


def test_decompression_bomb_refused_before_decoding() -> None:
    with pytest.raises(CannotSanitize, match="900000000 pixels") as caught:
        _sanitize(hostile.image_bomb_png(30000), "bomb.png")
    assert caught.value.code == "IMAGE_BOMB"


def test_wrong_extension_gets_the_real_one() -> None:
    result = _sanitize(hostile.png(), "picture.jpg")
    assert result.outputs[0].filename == "picture.png"
    assert result.outputs[0].content_type == "image/png"


def test_truncated_jpeg_fails_closed() -> None:
    data = hostile.jpeg(200, 200)
    with pytest.raises(CannotSanitize) as caught:
        _sanitize(data[: len(data) // 2])
    assert caught.value.code == "IMAGE_DECODE_ERROR"


def test_svg_is_rendered_without_script() -> None:
    result = _sanitize(hostile.svg_with_script(), "logo.svg")
    (output,) = result.outputs
    assert output.filename == "logo.png"
    assert oracle.magic_mime(output.data) == "image/png"
    active = next(f for f in result.findings if f.code == "SVG_ACTIVE_CONTENT")
    for removed in ("<script>", "onload=", "href=file:///etc/passwd", "href=javascript:"):
        assert removed in active.detail
    image = Image.open(io.BytesIO(output.data)).convert("RGB")
    assert image.size == (120, 60)
    assert image.getpixel((100, 50)) == (0, 0, 128)  # navy: the drawing is there


def test_svg_with_entities_refused() -> None:
    svg = b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]><svg xmlns="http://www.w3.org/2000/svg"><text>&x;</text></svg>'
    try:
        result = _sanitize(svg, "x.svg")
    except CannotSanitize:
        return
    assert b"root:" not in result.outputs[0].data


# --- RT-14: HEIC photos (iPhone) are rebuilt as JPEG, not held -------------------------------


def test_heic_photo_is_rebuilt_as_jpeg() -> None:
    from tests.helpers.redteam import HEIC_PHOTO

    result = _sanitize(HEIC_PHOTO, "IMG_0412.HEIC")
    (output,) = result.outputs
    assert oracle.magic_mime(output.data) == "image/jpeg"
    assert output.content_type == "image/jpeg"
    assert output.filename == "IMG_0412.jpg"
    assert [f.detail for f in result.findings if f.code == "IMAGE_HEIC_TO_JPEG"] == ["HEIF -> JPEG"]
    assert "IMAGE_FORMAT_CHANGED" not in {f.code for f in result.findings}
    rebuilt = Image.open(io.BytesIO(output.data))
    assert rebuilt.size == (64, 48)
    assert not rebuilt.info.get("exif")
    # The same picture: libheif's own decoding, compared pixel by pixel (JPEG's loss allowed).
    import pillow_heif

    heif = pillow_heif.open_heif(HEIC_PHOTO)
    original = Image.frombytes(heif.mode, heif.size, heif.data, "raw", heif.mode, heif.stride)
    difference = ImageChops.difference(original.convert("RGB"), rebuilt.convert("RGB"))
    assert max(channel_max for _, channel_max in difference.getextrema()) < 40


def test_truncated_heic_fails_closed() -> None:
    from tests.helpers.redteam import HEIC_PHOTO

    with pytest.raises(CannotSanitize) as caught:
        _sanitize(HEIC_PHOTO[: len(HEIC_PHOTO) // 2], "IMG_0412.HEIC")
    assert caught.value.code == "IMAGE_DECODE_ERROR"


def _jpeg_end_byte_by_byte(data: bytes) -> int | None:
    """The JPEG walk as first written (one byte at a time): the reference for the fast one."""
    pos, n = 2, len(data)
    while pos + 2 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker == 0xD9:
            return pos + 2
        if marker in (0x01, *range(0xD0, 0xD8)):
            pos += 2
            continue
        if pos + 4 > n:
            return None
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xDA:
            while pos + 1 < n:
                if data[pos] == 0xFF and data[pos + 1] not in (0x00, *range(0xD0, 0xD8)):
                    if data[pos + 1] == 0xFF:
                        pos += 1
                        continue
                    break
                pos += 1
    return None


def test_jpeg_end_is_where_the_byte_by_byte_walk_finds_it() -> None:
    import random

    noise = random.Random(13)  # reproducible test data
    image = Image.frombytes("RGB", (96, 64), noise.randbytes(96 * 64 * 3))
    buffer = io.BytesIO()
    # Restart markers (FF D0-D7) inside the scan, and many stuffed FF 00 bytes from noise.
    image.save(buffer, format="JPEG", quality=95, restart_marker_blocks=4)
    clean = buffer.getvalue()
    assert b"\xff\xd0" in clean
    cases = [
        clean,
        clean + b"PK\x03\x04 a payload",
        clean[:-2] + b"\xff\xff\xff\xd9",  # fill bytes before the end marker
        clean[:-2] + b"\xff",  # truncated inside a marker
        clean[:-2],  # no end marker at all
        clean[:-2] + b"\xff\x00\xff\xd3\xff\xd9trailer",
    ]
    for _ in range(200):  # corrupted scans: any byte may become FF or follow one
        mutated = bytearray(clean)
        for _ in range(noise.randint(1, 8)):
            at = noise.randrange(len(clean) // 2, len(clean))
            mutated[at] = noise.choice([0xFF, 0x00, 0xD0, 0xD7, 0xD8, 0xD9, 0xDA, 0xFE])
        cases.append(bytes(mutated[: noise.randrange(len(clean) // 2, len(clean) + 1)]))
    for data in cases:
        assert image_end(data) == _jpeg_end_byte_by_byte(data)
    assert image_end(clean) == len(clean)
    assert image_end(clean + b"PK\x03\x04 a payload") == len(clean)


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.95])
def test_the_check_of_our_own_jpeg_reads_every_block(cut: float) -> None:
    """The output check decodes at 1/8 scale for speed: a stream that ends early (an encoder
    fault) must still fail it, wherever it ends."""
    from gateway.sanitizers.image import _verify_raster

    image = Image.frombytes("RGB", (640, 480), bytes(range(256)) * (640 * 480 * 3 // 256))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    whole = buffer.getvalue()
    _verify_raster(whole, "JPEG", (640, 480))
    short = whole[: int(len(whole) * cut)]
    with pytest.raises((CannotSanitize, OSError)):
        _verify_raster(short, "JPEG", (640, 480))
