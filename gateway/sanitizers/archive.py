"""ZIP archives: inspected recursively within limits and rebuilt from sanitized members.

Order of work, so that a bomb is never expanded:

1. The central directory alone is read (``zipfile``). Before any member is decompressed it
   must pass every limit: member count (``archive_max_members``), total declared size
   against the remaining budget (``archive_max_total_size``, shared by all nesting levels),
   the compression ratio of each large member and of the whole (``archive_max_ratio``), and
   no two entries may share bytes (the overlapping-entry bomb of Fifield 2019). Encrypted
   members (ZipCrypto or WinZip AES: PPAP) cannot be inspected: ``ARCHIVE_ENCRYPTED``.
   Names that leave the archive (``../``, ``/etc``, ``C:\\``) reject the archive
   (``ARCHIVE_PATH_TRAVERSAL``), symbolic links are dropped.
2. Each member is read with a hard bound (declared size + 1 byte, and never past the
   budget), so a lying header cannot make it expand further; zipfile checks its CRC.
3. Each member goes through ``gateway.detect.detect`` and then the action the policy gives
   its class (``options.member_action(class)``): ``rebuild``/``rasterize``/``both`` run that
   class's sanitizer in-process (we already are in an isolated worker), ``keep`` keeps the
   bytes, ``strip`` drops the member with a finding, ``quarantine`` withholds the whole
   archive. Nested ZIPs recurse, one level deeper, until ``archive_max_depth``.
4. A new ZIP is written from the surviving members, names kept as they came: a CP932 name
   without the UTF-8 flag (Japanese Windows Explorer) is written back as the same CP932
   bytes, so the recipient sees the same 日本語 name.

Any bomb, limit, traversal, encryption or quarantine finding at any depth means no output at
all: the findings go to the policy, which quarantines (default) or strips.

What this module does not do: 7z, RAR, tar, gzip, CAB and disk images are not opened
(content class ``other_archive``: the policy strips or quarantines them), and no password
is ever guessed.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import posixpath
import re
import struct
import zipfile
from dataclasses import dataclass, field

from gateway import antivirus
from gateway.detect import detect, sanitize_filename
from gateway.errors import CannotSanitize
from gateway.report import Finding
from gateway.sanitizers.base import (
    CHECK_FAILED_CODES,
    POLICY_HOLD_CODES,
    OutputFile,
    SanitizeOptions,
    SanitizeResult,
)

FINDING_CODES: tuple[str, ...] = (
    "ARCHIVE_ENCRYPTED",  # encrypted members (ZipCrypto, AES): cannot inspect
    "ARCHIVE_BOMB",  # ratio, size or overlapping entries beyond the limits
    "ARCHIVE_TOO_DEEP",  # nesting beyond archive_max_depth
    "ARCHIVE_TOO_MANY_MEMBERS",  # more members than archive_max_members
    "ARCHIVE_PATH_TRAVERSAL",  # a member name that leaves the extraction directory
    "ARCHIVE_SYMLINK",  # a symbolic link member (dropped)
    "ARCHIVE_DUPLICATE_NAME",  # the same name twice (later ones dropped)
    "ARCHIVE_MALFORMED",  # central directory or member data unreadable
    "ARCHIVE_MEMBER_STRIPPED",  # a member removed per policy or because it failed
    "ARCHIVE_MEMBER_QUARANTINE",  # a member whose class the policy quarantines
    "ARCHIVE_EMPTY",  # nothing left to deliver after sanitizing
)

# Findings that withhold the whole archive.
_BLOCKING = frozenset(
    {
        "ARCHIVE_ENCRYPTED",
        "ARCHIVE_BOMB",
        "ARCHIVE_TOO_DEEP",
        "ARCHIVE_TOO_MANY_MEMBERS",
        "ARCHIVE_PATH_TRAVERSAL",
        "ARCHIVE_MALFORMED",
        "ARCHIVE_MEMBER_QUARANTINE",
        "VIRUS_FOUND",  # gateway.antivirus: a member is known malware
        "VIRUS_SCAN_UNAVAILABLE",  # a member could not be scanned: nothing proves it clean
    }
)
_RATIO_FLOOR = 1024 * 1024  # members smaller than this may compress as well as they like
_UTF8_FLAG = 0x800


class _RawNameInfo(zipfile.ZipInfo):
    """A ZipInfo that writes its name as given bytes (CP932) without the UTF-8 flag."""

    __slots__ = ("raw_name",)

    def __init__(self, filename: str, date_time: tuple[int, ...], raw_name: bytes | None):
        super().__init__(filename, date_time)  # type: ignore[arg-type]
        self.raw_name = raw_name

    def _encodeFilenameFlags(self) -> tuple[bytes, int]:  # noqa: N802 (zipfile's name)
        if self.raw_name is not None:
            return self.raw_name, self.flag_bits & ~_UTF8_FLAG
        return super()._encodeFilenameFlags()  # type: ignore[misc]


@dataclass
class _Budget:
    """Expanded bytes still allowed, over all nesting levels of one attachment."""

    remaining: int


@dataclass
class _Member:
    name: str  # decoded, "/"-separated
    raw_name: bytes | None  # the original bytes when they were not UTF-8-flagged
    data: bytes
    date_time: tuple[int, int, int, int, int, int]


@dataclass
class _Outcome:
    members: list[_Member] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def blocked(self) -> bool:
        return any(f.code in _BLOCKING for f in self.findings)


def decode_member_name(info: zipfile.ZipInfo) -> tuple[str, bytes | None]:
    """(name, original bytes or None). Names without the UTF-8 flag are tried as UTF-8,
    then CP932 (Japanese Windows), then CP437 (the ZIP specification's default)."""
    if info.flag_bits & _UTF8_FLAG:
        return info.filename, None
    try:
        raw = info.filename.encode("cp437")
    except UnicodeEncodeError:  # zipfile was given another metadata_encoding
        return info.filename, None
    for codec in ("utf-8", "cp932"):
        try:
            return raw.decode(codec), raw
        except UnicodeDecodeError:
            continue
    return info.filename, raw


_NAME_CONTROLS = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co"})


def clean_member_path(name: str) -> str:
    """``name`` with control and bidi characters (and Windows-forbidden ones) removed from
    each path component; unchanged when there are none, so ordinary names keep their bytes."""
    import unicodedata

    parts = name.split("/")
    cleaned = []
    for part in parts:
        if any(unicodedata.category(c) in _NAME_CONTROLS for c in part) or re.search(
            r'[:*?"<>|]', part
        ):
            part = sanitize_filename(part, default="file")
        cleaned.append(part)
    return "/".join(cleaned)


def _unsafe_path(name: str) -> bool:
    normalized = name.replace("\\", "/")
    if normalized.startswith("/") or re.match(r"^[A-Za-z]:", normalized):
        return True
    return any(part == ".." for part in normalized.split("/"))


def _local_extent(data: bytes, info: zipfile.ZipInfo) -> tuple[int, int] | None:
    start = info.header_offset
    header = data[start : start + 30]
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        return None
    name_len, extra_len = struct.unpack_from("<HH", header, 26)
    return start, start + 30 + name_len + extra_len + info.compress_size


def _preflight(
    data: bytes,
    infos: list[zipfile.ZipInfo],
    options: SanitizeOptions,
    budget: _Budget,
    part_id: str,
) -> list[Finding]:
    """Limits checked from the central directory, before anything is decompressed."""
    findings: list[Finding] = []
    if len(infos) > options.archive_max_members:
        findings.append(
            Finding(
                "ARCHIVE_TOO_MANY_MEMBERS",
                part_id,
                f"{len(infos)} members > {options.archive_max_members}",
            )
        )
        return findings
    encrypted = [i for i in infos if i.flag_bits & 0x1]
    if encrypted:
        methods = sorted({"AES" if i.compress_type == 99 else "ZipCrypto" for i in encrypted})
        findings.append(
            Finding(
                "ARCHIVE_ENCRYPTED",
                part_id,
                f"{len(encrypted)} of {len(infos)} members encrypted ({', '.join(methods)})",
            )
        )
    declared = sum(i.file_size for i in infos)
    compressed = sum(i.compress_size for i in infos)
    if declared > budget.remaining:
        findings.append(
            Finding(
                "ARCHIVE_BOMB",
                part_id,
                f"expands to {declared} bytes, over the {budget.remaining} left",
            )
        )
    if declared > _RATIO_FLOOR and declared > options.archive_max_ratio * max(compressed, 1):
        findings.append(
            Finding(
                "ARCHIVE_BOMB",
                part_id,
                f"ratio {declared // max(compressed, 1)}:1 > {options.archive_max_ratio}:1",
            )
        )
    for info in infos:
        if info.file_size > _RATIO_FLOOR and info.file_size > options.archive_max_ratio * max(
            info.compress_size, 1
        ):
            findings.append(
                Finding(
                    "ARCHIVE_BOMB",
                    part_id,
                    f"member ratio {info.file_size // max(info.compress_size, 1)}:1",
                )
            )
            break
    extents = []
    for info in infos:
        extent = _local_extent(data, info)
        if extent is None:
            findings.append(
                Finding("ARCHIVE_MALFORMED", part_id, f"no local header at {info.header_offset}")
            )
            return findings
        extents.append(extent)
    extents.sort()
    for (_, end), (start, _) in itertools.pairwise(extents):
        if start < end:
            findings.append(Finding("ARCHIVE_BOMB", part_id, "overlapping entries share data"))
            break
    for info in infos:
        name, _ = decode_member_name(info)
        if _unsafe_path(name):
            findings.append(Finding("ARCHIVE_PATH_TRAVERSAL", part_id, _shown(name)))
    return findings


def _shown(untrusted: str) -> str:
    from gateway.logs import replace_control_chars

    return replace_control_chars(untrusted)[:200]


def _reencode(name: str) -> bytes | None:
    try:
        return name.encode("cp932")
    except UnicodeEncodeError:
        return None  # not representable in CP932: written as UTF-8 with the flag


def _read_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget, part_id: str
) -> bytes:
    limit = min(info.file_size, budget.remaining)
    with archive.open(info) as member:
        content = member.read(limit + 1)
    if len(content) > info.file_size or len(content) > budget.remaining:
        raise CannotSanitize("ARCHIVE_BOMB", f"{info.filename!r} expands past its declared size")
    budget.remaining -= len(content)
    return content


def _sanitize_zip(
    data: bytes,
    part_id: str,
    options: SanitizeOptions,
    depth: int,
    budget: _Budget,
) -> _Outcome:
    outcome = _Outcome()
    if depth > options.archive_max_depth:
        outcome.findings.append(
            Finding("ARCHIVE_TOO_DEEP", part_id, f"nested {depth} > {options.archive_max_depth}")
        )
        return outcome
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        outcome.findings.append(Finding("ARCHIVE_MALFORMED", part_id, str(exc)[:200]))
        return outcome
    with archive:
        infos = archive.infolist()
        outcome.findings.extend(_preflight(data, infos, options, budget, part_id))
        if outcome.blocked():
            return outcome
        seen: set[str] = set()
        for index, info in enumerate(infos, start=1):
            name, raw_name = decode_member_name(info)
            name = name.replace("\\", "/")
            member_id = f"{part_id}/{index}"
            if not name or name.endswith("/"):  # directories (zipfile's is_dir fails on "")
                if not name:
                    outcome.findings.append(Finding("ARCHIVE_MALFORMED", member_id, "empty name"))
                    return outcome
                continue
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                outcome.findings.append(Finding("ARCHIVE_SYMLINK", member_id, _shown(name)))
                continue
            if name.lower() in seen:
                outcome.findings.append(Finding("ARCHIVE_DUPLICATE_NAME", member_id, _shown(name)))
                continue
            seen.add(name.lower())
            try:
                content = _read_member(archive, info, budget, member_id)
            except CannotSanitize as exc:
                outcome.findings.append(Finding(exc.code, member_id, str(exc)[:200]))
                return outcome
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, ValueError) as exc:
                outcome.findings.append(
                    Finding("ARCHIVE_MALFORMED", member_id, f"{_shown(name)}: {exc}"[:200])
                )
                return outcome
            date_time = info.date_time if info.date_time[0] >= 1980 else (1980, 1, 1, 0, 0, 0)
            shown_name = clean_member_path(name)
            if shown_name != name:  # an RLO or control character: the written name loses it
                outcome.findings.append(
                    Finding(
                        "FILENAME_BIDI_CONTROL",
                        member_id,
                        f"{_shown(name)} written as {shown_name}",
                    )
                )
                name = shown_name
                raw_name = _reencode(shown_name) if raw_name is not None else None
            _handle_member(
                _Member(name, raw_name, content, date_time),
                member_id,
                options,
                depth,
                budget,
                outcome,
            )
            if outcome.blocked():
                return outcome
    return outcome


def _handle_member(
    member: _Member,
    member_id: str,
    options: SanitizeOptions,
    depth: int,
    budget: _Budget,
    outcome: _Outcome,
) -> None:
    from gateway.sanitizers import sanitizer_for

    directory, basename = posixpath.split(member.name)
    outcome.findings.extend(antivirus.findings(options.antivirus, member.data, member_id))
    if outcome.blocked():
        return
    detection = detect(member.data, basename, "", member_id)
    outcome.findings.extend(detection.findings)
    content_class = detection.content_class
    action = options.member_action(content_class)
    shown = _shown(member.name)

    if content_class == "archive" and action in ("rebuild", "rasterize", "both"):
        inner = _sanitize_zip(member.data, member_id, options, depth + 1, budget)
        outcome.findings.extend(inner.findings)
        if inner.blocked():
            return
        if not inner.members:
            outcome.findings.append(
                Finding("ARCHIVE_MEMBER_STRIPPED", member_id, f"{shown}: nothing left inside")
            )
            return
        rebuilt = _write_zip(inner.members)
        outcome.members.append(dataclasses.replace(member, data=rebuilt))
        return
    if action == "keep":
        # As for a top-level part (gateway.inspect): "keep" is for text only, and text still
        # goes through its sanitizer (URLs defanged, spreadsheet formulas neutralized).
        action = "rebuild"
    if action == "quarantine":
        outcome.findings.append(
            Finding("ARCHIVE_MEMBER_QUARANTINE", member_id, f"{shown} ({content_class})")
        )
        return
    sanitizer = sanitizer_for(content_class) if action in ("rebuild", "rasterize", "both") else None
    if sanitizer is None:
        outcome.findings.append(
            Finding("ARCHIVE_MEMBER_STRIPPED", member_id, f"{shown} ({content_class}: {action})")
        )
        return
    try:
        result = sanitizer.sanitize(
            member.data, basename, member_id, dataclasses.replace(options, mode=action)
        )
    except CannotSanitize as exc:
        outcome.findings.append(
            Finding("ARCHIVE_MEMBER_STRIPPED", member_id, f"{shown}: {exc.code}")
        )
        return
    except MemoryError:
        raise  # the whole worker is in trouble: let run_isolated report it
    except Exception as exc:  # a sanitizer bug on one member strips that member, nothing more
        outcome.findings.append(
            Finding(
                "ARCHIVE_MEMBER_STRIPPED",
                member_id,
                f"{shown}: SANITIZER_ERROR {type(exc).__name__}",
            )
        )
        return
    outcome.findings.extend(result.findings)
    # A member the policy holds (its finding makes gateway.inspect hold the whole archive) or
    # whose checks did not finish is never written, whatever the sanitizer returned.
    refused = sorted({f.code for f in result.findings} & (CHECK_FAILED_CODES | POLICY_HOLD_CODES))
    if refused or not result.outputs:
        why = ",".join(refused) or "nothing harmless to keep"
        outcome.findings.append(Finding("ARCHIVE_MEMBER_STRIPPED", member_id, f"{shown}: {why}"))
        return
    for output in result.outputs:
        new_name = posixpath.join(directory, output.filename) if directory else output.filename
        raw = None
        if member.raw_name is not None and output.filename == basename:
            raw = member.raw_name
        elif member.raw_name is not None:
            try:
                raw = new_name.encode("cp932")
            except UnicodeEncodeError:
                raw = None
        outcome.members.append(_Member(new_name, raw, output.data, member.date_time))


def _write_zip(members: list[_Member]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        written: set[str] = set()
        for member in members:
            name = member.name
            if name in written:  # two outputs named alike (rare): keep both, renamed
                stem, dot, ext = name.rpartition(".")
                name = f"{stem}_{len(written)}{dot}{ext}" if dot else f"{name}_{len(written)}"
            written.add(name)
            raw = member.raw_name if name == member.name else None
            info = _RawNameInfo(name, member.date_time, raw)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.data)
    return out.getvalue()


class ArchiveSanitizer:
    """See Sanitizer."""

    name = "zip-rebuild"
    description = "Inspect ZIP archives within limits; rebuild them from sanitized members"
    handles = frozenset({"archive"})

    def sanitize(
        self, data: bytes, filename: str, part_id: str, options: SanitizeOptions
    ) -> SanitizeResult:
        """See Sanitizer."""
        budget = _Budget(options.archive_max_total_size)
        outcome = _sanitize_zip(data, part_id, options, depth=0, budget=budget)
        findings = tuple(outcome.findings)
        if outcome.blocked():
            return SanitizeResult(findings=findings)
        if not outcome.members:
            return SanitizeResult(
                findings=(*findings, Finding("ARCHIVE_EMPTY", part_id, "no member was kept"))
            )
        rebuilt = _write_zip(outcome.members)
        with zipfile.ZipFile(io.BytesIO(rebuilt)) as check:  # our own output must reopen
            if check.testzip() is not None or len(check.infolist()) != len(outcome.members):
                raise CannotSanitize("ARCHIVE_MALFORMED", "rebuilt archive does not verify")
        name = sanitize_filename(filename or "archive.zip")
        return SanitizeResult(
            outputs=(OutputFile(rebuilt, name, "application/zip"),), findings=findings
        )
