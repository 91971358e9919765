"""Plain data across a process boundary: one JSON object plus length-prefixed byte strings.

What a process that parsed hostile input sends back (a pool worker to the main process, a
sanitizer child to its worker, the signer to the main process) is read with this module and
nothing else: never ``pickle``, whose loader can be made to call any function (issue 11: a
dotted name inside an allowed module ran ``os.system`` in the reading process). JSON can
only make dicts, lists, strings, numbers, booleans and None; bytes travel beside it, each
behind its length, so nothing is base64-inflated or scanned for delimiters.

A frame, all integers big-endian::

    b"MGW1"  u32 header length  header (UTF-8 JSON object)
             u32 blob count     (u64 length, bytes) × count

``decode`` checks every length against the data actually present and against the caller's
limits before it allocates or parses anything; trailing bytes are an error. What the header
*means* is checked by the receiving type's ``from_frame`` (types, sizes, bounded numbers),
with ``pydantic`` strict models: the ``Wire*`` models below and those beside each type.

What this module deliberately does not do: carry anything but the one JSON object and bytes
(no classes, no references), or trust a number it did not check.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

MAGIC = b"MGW1"
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
# Defaults; a receiver passes tighter ones where it knows better (e.g. the message size).
MAX_HEADER_BYTES = 64 * 1024 * 1024
MAX_BLOBS = 64
MAX_TOTAL_BYTES = 1024 * 1024 * 1024


class WireError(ValueError):
    """The bytes are not a well-formed frame, or its content is not what the receiver
    accepts. ``str()`` says what, without echoing the (untrusted) content at length."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One message: a JSON object and the byte strings it refers to by position."""

    header: dict[str, Any]
    blobs: tuple[bytes, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class WireLimits:
    max_header_bytes: int = MAX_HEADER_BYTES
    max_blobs: int = MAX_BLOBS
    max_total_bytes: int = MAX_TOTAL_BYTES


def encode(frame: Frame) -> bytes:
    """The frame as bytes. Raises ``WireError`` when the header is not plain JSON data.
    Strings are sent as UTF-8; lone surrogates become ``?``."""
    try:
        text = json.dumps(frame.header, ensure_ascii=False, allow_nan=False)
        # A lone surrogate (Python's surrogateescape of a byte that did not decode, e.g. in a
        # file name) is not UTF-8: it becomes "?" rather than failing the message.
        header = text.encode("utf-8", "replace")
    except (TypeError, ValueError) as exc:
        raise WireError(f"header is not plain JSON data: {exc}") from None
    parts = [MAGIC, _U32.pack(len(header)), header, _U32.pack(len(frame.blobs))]
    for blob in frame.blobs:
        parts.append(_U64.pack(len(blob)))
        parts.append(bytes(blob))
    return b"".join(parts)


def decode(data: bytes, limits: WireLimits | None = None) -> Frame:
    """Parse a frame. Raises ``WireError`` for anything but exactly one well-formed frame
    within ``limits``."""
    limits = limits or WireLimits()
    view = memoryview(data)
    if len(data) > limits.max_total_bytes:
        raise WireError(f"frame of {len(data)} bytes exceeds {limits.max_total_bytes}")
    if bytes(view[:4]) != MAGIC:
        raise WireError("not a frame (bad magic)")
    offset = 4
    header_length, offset = _read(view, offset, _U32)
    if header_length > limits.max_header_bytes:
        raise WireError(f"header of {header_length} bytes exceeds {limits.max_header_bytes}")
    if offset + header_length > len(data):
        raise WireError("header runs past the end of the frame")
    header_bytes = bytes(view[offset : offset + header_length])
    offset += header_length
    count, offset = _read(view, offset, _U32)
    if count > limits.max_blobs:
        raise WireError(f"{count} byte strings exceed {limits.max_blobs}")
    blobs: list[bytes] = []
    for _ in range(count):
        length, offset = _read(view, offset, _U64)
        if offset + length > len(data):
            raise WireError("a byte string runs past the end of the frame")
        blobs.append(bytes(view[offset : offset + length]))
        offset += length
    if offset != len(data):
        raise WireError(f"{len(data) - offset} bytes after the frame")
    try:
        header = json.loads(header_bytes.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise WireError(f"header is not JSON: {type(exc).__name__}") from None
    if not isinstance(header, dict):
        raise WireError("header is not a JSON object")
    return Frame(header, tuple(blobs))


def _read(view: memoryview, offset: int, unit: struct.Struct) -> tuple[int, int]:
    end = offset + unit.size
    if end > len(view):
        raise WireError("frame truncated")
    return unit.unpack(view[offset:end])[0], end


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")  # NaN, Infinity: not numbers we can check


# --- validation of what a frame's header says ---------------------------------------------

Model = TypeVar("Model", bound=BaseModel)


class WireModel(BaseModel):
    """Base of the models that check a header: strict types (no "1" for 1, no 1 for True),
    unknown keys refused, every string and list bounded by its field."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


# Bounded field types for the models. Generous for honest data, tight enough that nothing a
# compromised process sends can make the reader allocate or count without limit.
Name = Annotated[str, StringConstraints(max_length=256)]  # codes, ids, kinds, types
Line = Annotated[str, StringConstraints(max_length=2_000)]  # one line for people
Detail = Annotated[str, StringConstraints(max_length=20_000)]  # evidence, a file name
Size = Annotated[int, Field(ge=0, le=1 << 40)]  # bytes
Count = Annotated[int, Field(ge=0, le=1_000_000_000)]  # how many times


def check(model: type[Model], data: object, what: str) -> Model:
    """``data`` validated as ``model``; ``WireError`` naming the first problem otherwise."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top)"
        raise WireError(f"{what}: {where}: {first['msg']}") from None


def blob_sizes_match(blobs: Sequence[bytes], sizes: Sequence[int], what: str) -> None:
    """The header's declared sizes are those of the byte strings that came with it."""
    if len(blobs) != len(sizes):
        raise WireError(f"{what}: {len(sizes)} sizes declared for {len(blobs)} byte strings")
    for index, (blob, size) in enumerate(zip(blobs, sizes, strict=True)):
        if len(blob) != size:
            raise WireError(f"{what}: byte string {index} is {len(blob)} bytes, not {size}")


class PlainValue(WireModel):
    """A plain JSON value (for pools and children whose results are not one of our types)."""

    value: Any = None


def plain_frame(value: object) -> Frame:
    return Frame({"value": value})


def plain_value(frame: Frame) -> Any:
    """The decoder for ``plain_frame``: JSON data only, no byte strings."""
    if frame.blobs:
        raise WireError("a plain value carries no byte strings")
    return check(PlainValue, frame.header, "plain value").value


Decoder = Callable[[Frame], Any]
