"""Write a ZIP whose unchanged members keep their compressed bytes.

A rebuilt Office package changes a few XML parts; its pictures and most parts are byte for
byte what came in. ``zipfile`` can only write a member by compressing it again, which was a
third of a docx's sanitizing time (pictures do not even shrink). ``ZipCopier`` writes the
members we give it, compressing new content and copying a member's compressed stream as it
was only after proving that the stream decompresses to exactly the content we inspected: a
complete raw-deflate stream, nothing before or after it within the member (no hidden bytes a
different reader might see), the same bytes. Anything else is compressed again, as before.
The proof costs a decompression; ``inflate_exactly`` makes it while reading the member, so
that a member is decompressed once, not once to read it and again to copy it.

Every header is ours (a copied member keeps none of the sender's local header, extra fields
or data descriptor); the output is a plain ZIP with no ZIP64, no comment, no extra fields.
Whoever uses this verifies the output with ``zipfile`` like any rebuilt package.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from dataclasses import dataclass

_LOCAL = struct.Struct("<4s5H3I2H")
_CENTRAL = struct.Struct("<4s6H3I5H2I")
_END = struct.Struct("<4s4H2IH")
_LOCAL_MAGIC = b"PK\x03\x04"
_VERSION = 20  # deflate (APPNOTE 4.4.3), what zipfile writes
_MADE_BY = (3 << 8) | _VERSION  # UNIX, as zipfile on POSIX
_UTF8_NAME = 0x800
_LIMIT = 0xFFFFFFFF  # beyond this a ZIP needs ZIP64: not written here


@dataclass(frozen=True, slots=True)
class RawMember:
    """A member's compressed stream as stored in its archive, with how it was compressed,
    and, from ``inflate_exactly``, the content it was proven to hold and nothing else."""

    method: int
    data: memoryview
    content: bytes | None = None


def raw_member(archive_bytes: bytes, info: zipfile.ZipInfo) -> RawMember | None:
    """The compressed bytes of ``info`` in ``archive_bytes`` (read by ``zipfile`` from these
    bytes), or None when its local header is not where and what the directory says."""
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        return None
    start = info.header_offset
    if start < 0 or start + _LOCAL.size > len(archive_bytes):
        return None
    fields = _LOCAL.unpack_from(archive_bytes, start)
    if fields[0] != _LOCAL_MAGIC:
        return None
    name_length, extra_length = fields[-2], fields[-1]
    begin = start + _LOCAL.size + name_length + extra_length
    end = begin + info.compress_size
    if end > len(archive_bytes):
        return None
    return RawMember(info.compress_type, memoryview(archive_bytes)[begin:end])


def inflate_exactly(raw: RawMember, size: int, crc: int) -> RawMember | None:
    """``raw`` with its ``content``: exactly one complete stream of ``size`` bytes whose CRC-32
    is ``crc``, nothing after it. None when it is anything else (the caller reads the member
    the ordinary way, which reports the damage, and does not copy it)."""
    if raw.method == zipfile.ZIP_STORED:
        content = bytes(raw.data)
    else:
        decompressor = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            # One byte more than declared: a longer stream shows as a difference, not a bomb.
            content = decompressor.decompress(raw.data, size + 1)
        except zlib.error:
            return None
        if not decompressor.eof or decompressor.unused_data or decompressor.unconsumed_tail:
            return None
    if len(content) != size or zlib.crc32(content) != crc:
        return None
    return RawMember(raw.method, raw.data, content)


def _stream_is_exactly(raw: RawMember, content: bytes) -> bool:
    """True when ``raw`` decompresses to ``content`` and holds nothing else."""
    if raw.method == zipfile.ZIP_STORED:
        return raw.data == content
    decompressor = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        # One byte more than expected: a longer stream shows as a difference, not a bomb.
        out = decompressor.decompress(raw.data, len(content) + 1)
    except zlib.error:
        return False
    return (
        decompressor.eof
        and not decompressor.unused_data
        and not decompressor.unconsumed_tail
        and out == content
    )


class ZipCopier:
    """Collects members, then ``getvalue()`` the archive. Members are written in order."""

    def __init__(self, date_time: tuple[int, int, int, int, int, int]) -> None:
        year, month, day, hour, minute, second = date_time
        self._dos_time = (hour << 11) | (minute << 5) | (second // 2)
        self._dos_date = ((year - 1980) << 9) | (month << 5) | day
        self._chunks: list[bytes | memoryview] = []
        self._central: list[bytes] = []
        self._offset = 0
        self.copied = 0  # members whose compressed bytes were kept (for tests and benchmarks)

    def add(self, name: str, content: bytes, raw: RawMember | None = None) -> None:
        """Add ``content`` as ``name``; keep ``raw`` (its original compressed stream) when it
        is exactly ``content`` (already proven when ``content`` is the very object
        ``inflate_exactly`` made from it), else deflate it."""
        stored: bytes | memoryview
        if raw is not None and (raw.content is content or _stream_is_exactly(raw, content)):
            method, stored = raw.method, raw.data
            self.copied += 1
        else:
            compressor = zlib.compressobj(
                zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -zlib.MAX_WBITS
            )
            method, stored = zipfile.ZIP_DEFLATED, compressor.compress(content) + compressor.flush()
        encoded = name.encode("ascii") if name.isascii() else name.encode("utf-8")
        flags = 0 if name.isascii() else _UTF8_NAME
        crc = zlib.crc32(content)
        if max(len(content), len(stored), self._offset) >= _LIMIT or len(self._central) >= 0xFFFF:
            raise ValueError("archive too large for a ZIP without ZIP64")
        common = (method, self._dos_time, self._dos_date, crc, len(stored), len(content))
        header = _LOCAL.pack(_LOCAL_MAGIC, _VERSION, flags, *common, len(encoded), 0)
        self._central.append(
            _CENTRAL.pack(
                b"PK\x01\x02",
                _MADE_BY,
                _VERSION,
                flags,
                *common,
                len(encoded),
                0,
                0,
                0,
                0,
                0,
                self._offset,
            )
            + encoded
        )
        self._chunks += [header, encoded, stored]
        self._offset += len(header) + len(encoded) + len(stored)

    def getvalue(self) -> bytes:
        directory = b"".join(self._central)
        count = len(self._central)
        end = _END.pack(b"PK\x05\x06", 0, 0, count, count, len(directory), self._offset, 0)
        return b"".join([*self._chunks, directory, end])
