"""The partner's own password mail (PPAP, issue 17): the worker's half.

Japanese partners send a password-protected ZIP and, minutes later, a second mail with the
password. The gateway holds the ZIP (it cannot be inspected); with ``password_mail.pair`` the
relay (``gateway.relay``) pairs a later mail from the same envelope sender to the same
recipients with it, and a worker runs this module:

- ``password_candidates``: the passwords a mail's text offers, from lines such as
  「パスワード：Xk3#9pQa」, 「【パスワード】Xk3#9pQa」, ``PW: Xk3#9pQa``, ``Password = …``,
  full-width and half-width forms alike (the label is read after NFKC), or the line after
  a label that ends its line. The text is the decoded body (ISO-2022-JP, Shift_JIS, UTF-8:
  ``gateway.charsets``), read before URLs are defanged (``a.b`` would become ``a[.]b``).
- ``mask_passwords``: the same lines with the password replaced by ``********``.
- ``unlock``: the held message with every encrypted ZIP that one candidate opens (ZipCrypto
  or WinZip AES, with pyzipper; every member read to its end, so the CRC or the AES
  authentication code proves the password) replaced by its members as plain attachments.
  The result is then run through the whole pipeline as a message of its own
  (``gateway.pipeline``): each member gets the same detection, CDR and policy as any
  attachment, and what the policy holds is held.

It deliberately does not: keep, return or log a password (only the number of candidates
tried leaves this module), open other encrypted formats (7z, RAR, PDF, Office), or decide
anything: the policy does. Reading is bounded by the policy's archive limits (members, total
size, ratio): an archive that exceeds them is not opened (``UnlockRefused``).
"""

from __future__ import annotations

import contextlib
import email
import email.generator
import email.policy
import io
import re
import unicodedata
import zipfile
from dataclasses import dataclass
from email.message import Message
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from pathlib import PurePosixPath

import pyzipper

from gateway.detect import detect

MASK = "********"
MAX_CANDIDATES = 20
MAX_PASSWORD_LENGTH = 128

# A password line, read after NFKC (so ＰＷ：, ﾊﾟｽﾜｰﾄﾞ and パスワード　： all match): optional
# decoration, the label, then ":" / "=" or a closing bracket, then the value (maybe empty:
# the password is on the next line).
_LABEL = re.compile(
    r"^[\s>|*・●■◆□◇※\-]*[【\[<(「『]?\s*"
    r"(?:解凍|ZIP|zip|添付ファイルの|添付の)?\s*"
    r"(?:パスワード|暗証番号|password|passwd|pass\s?word|pwd|pw|pass)\s*"
    r"(?:[】\]>)」』]\s*[:=]?|[:=])\s*(?P<value>.*)$",
    re.IGNORECASE,
)
_SEPARATORS = ":：=＝】]>）)」』"
_QUOTES = "「」『』\"'“”‘’()（）<>＜＞[]［］【】"
_TRAILERS = ("です。", "です", "。", "、")


@dataclass(frozen=True, slots=True)
class PasswordLine:
    """One password line: where its value is (line index, start column) and the values to
    try, most literal first."""

    line: int
    start: int
    candidates: tuple[str, ...]


def _variants(value: str) -> list[str]:
    value = value.strip()
    out = [value]
    stripped = value
    for trailer in _TRAILERS:
        if stripped.endswith(trailer):
            stripped = stripped[: -len(trailer)].rstrip()
    out.append(stripped)
    unquoted = stripped.strip(_QUOTES).strip()
    out.append(unquoted)
    if unquoted.split():
        out.append(unquoted.split()[0])
    nfkc = [unicodedata.normalize("NFKC", v) for v in out]
    return [v for v in dict.fromkeys(out + nfkc) if 0 < len(v) <= MAX_PASSWORD_LENGTH]


def password_lines(text: str) -> list[PasswordLine]:
    """The password lines of ``text`` (see module docstring), at most ``MAX_CANDIDATES``
    values in all."""
    lines = text.split("\n")
    found: list[PasswordLine] = []
    total = 0
    for index, raw_line in enumerate(lines):
        match = _LABEL.match(unicodedata.normalize("NFKC", raw_line))
        if match is None:
            continue
        if match.group("value").strip():
            start = _value_start(raw_line)
            if start is None:
                continue
            line = index
        else:
            # 「パスワード：」 alone: the password is the next line that is not blank.
            following = next(
                (i for i in range(index + 1, min(index + 3, len(lines))) if lines[i].strip()),
                None,
            )
            if following is None:
                continue
            line = following
            start = len(lines[following]) - len(lines[following].lstrip())
        candidates = tuple(_variants(lines[line][start:]))[: MAX_CANDIDATES - total]
        if candidates:
            found.append(PasswordLine(line, start, candidates))
            total += len(candidates)
        if total >= MAX_CANDIDATES:
            break
    return found


def _value_start(raw_line: str) -> int | None:
    """Column where the value starts: after the first separator of the raw line."""
    positions = [raw_line.find(sep) for sep in _SEPARATORS if sep in raw_line]
    if not positions:
        return None
    start = min(positions) + 1
    while start < len(raw_line) and raw_line[start] in " \t\u3000" + _SEPARATORS:
        start += 1
    return start


def password_candidates(texts: list[str]) -> list[str]:
    """Every value to try, in order, without repeats, at most ``MAX_CANDIDATES``."""
    out: dict[str, None] = {}
    for text in texts:
        for line in password_lines(text):
            out.update(dict.fromkeys(line.candidates))
    return list(out)[:MAX_CANDIDATES]


def mask_passwords(text: str) -> tuple[str, int]:
    """``text`` with every password value replaced by ``MASK``; how many were masked."""
    found = password_lines(text)
    if not found:
        return text, 0
    lines = text.split("\n")
    for entry in found:
        line = lines[entry.line]
        kept = line[: entry.start]
        trailing = line[len(line.rstrip("\r")) :]
        lines[entry.line] = kept + MASK + trailing
    return "\n".join(lines), len(found)


# ---------------------------------------------------------------------------------------------
# Opening


class UnlockRefused(Exception):
    """The archive opened but exceeds the policy's archive limits: not extracted."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    max_members: int = 1000
    max_total_size: int = 256 * 1024 * 1024
    max_ratio: int = 200


@dataclass(frozen=True, slots=True)
class Unlocked:
    """``message``: the held message with each opened archive replaced by its members (None
    when no candidate opened any); ``archives``: the names of the archives opened;
    ``encrypted``: how many encrypted archives the message holds; ``tried``: candidates."""

    message: bytes | None
    archives: tuple[str, ...]
    encrypted: int
    tried: int


def _encrypted_zip(data: bytes) -> bool:
    """Whether detection classes ``data`` as an encrypted archive: the judgement that held the
    message, so exactly the parts it held are opened."""
    return detect(data, "", "application/octet-stream", "0").content_class == "encrypted_archive"


def _member_name(info: zipfile.ZipInfo) -> str:
    """The member's file name: CP932 unless the UTF-8 flag says otherwise (Japanese Windows
    writes CP932 without saying so; zipfile then reads it as CP437)."""
    name = info.filename
    if not info.flag_bits & 0x800:
        with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
            name = name.encode("cp437").decode("cp932")
    return PurePosixPath(name.replace("\\", "/")).name


def _passwords(candidate: str) -> list[bytes]:
    forms = [candidate.encode("utf-8")]
    with contextlib.suppress(UnicodeEncodeError):
        forms.append(candidate.encode("cp932"))  # Japanese Windows archivers
    return list(dict.fromkeys(forms))


def open_archive(
    data: bytes, candidates: list[str], limits: ArchiveLimits
) -> list[tuple[str, bytes]] | None:
    """The members (name, bytes) of an encrypted ZIP if one candidate opens every member;
    None otherwise. Raises ``UnlockRefused`` when an opened archive exceeds ``limits``."""
    with pyzipper.AESZipFile(io.BytesIO(data)) as archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
        if len(infos) > limits.max_members:
            raise UnlockRefused("ARCHIVE_TOO_MANY_MEMBERS", f"{len(infos)} members")
        declared = sum(i.file_size for i in infos)
        if declared > limits.max_total_size:
            raise UnlockRefused("ARCHIVE_BOMB", f"{declared} bytes uncompressed")
        for candidate in candidates:
            for password in _passwords(candidate):
                members = _read_all(archive, infos, password, limits)
                if members is not None:
                    return members
    return None


def _read_all(
    archive: pyzipper.AESZipFile,
    infos: list[zipfile.ZipInfo],
    password: bytes,
    limits: ArchiveLimits,
) -> list[tuple[str, bytes]] | None:
    members: list[tuple[str, bytes]] = []
    total = 0
    for info in infos:
        try:
            with archive.open(info, pwd=password) as stream:
                chunks: list[bytes] = []
                size = 0
                bound = min(
                    limits.max_total_size - total + 1,
                    max(info.compress_size, 1) * limits.max_ratio + 1,
                )
                while chunk := stream.read(min(1 << 20, bound - size)):
                    size += len(chunk)
                    chunks.append(chunk)
                    if size >= bound:
                        raise UnlockRefused("ARCHIVE_BOMB", f"{info.filename!r} expands too far")
        except UnlockRefused:
            raise
        except (RuntimeError, zipfile.BadZipFile, ValueError, OSError, EOFError):
            return None  # wrong password: bad check byte, bad CRC or AES authentication
        except NotImplementedError as exc:
            raise UnlockRefused("ARCHIVE_MALFORMED", str(exc)[:200]) from None
        total += size
        members.append((_member_name(info), b"".join(chunks)))
    return members


def _members_part(members: list[tuple[str, bytes]]) -> MIMEMultipart:
    container = MIMEMultipart("mixed")
    for name, data in members:
        part = MIMEApplication(data, "octet-stream")
        part.add_header("Content-Disposition", "attachment", filename=("utf-8", "", name))
        container.attach(part)
    return container


def unlock(raw: bytes, candidates: list[str], limits: ArchiveLimits) -> Unlocked:
    """See module docstring. Bounded by ``limits``; raises ``UnlockRefused``."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    opened: list[str] = []
    encrypted = 0

    def replacement(part: Message) -> MIMEMultipart | None:
        nonlocal encrypted
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes) or not _encrypted_zip(payload):
            return None
        encrypted += 1
        members = open_archive(payload, candidates, limits)
        if members is None:
            return None
        opened.append(str(part.get_filename() or "archive.zip"))
        return _members_part(members)

    def walk(part: Message) -> None:
        children = part.get_payload()
        if not isinstance(children, list):
            return
        for index, child in enumerate(children):
            if child.is_multipart():
                walk(child)
                continue
            new = replacement(child)
            if new is not None:
                children[index] = new

    if message.is_multipart():
        walk(message)
    else:
        new = replacement(message)
        if new is not None:
            for name, value in message.items():
                if not name.lower().startswith("content-") and name.lower() != "mime-version":
                    new[name] = value
            message = new
    if not opened:
        return Unlocked(None, (), encrypted, len(candidates))
    out = io.BytesIO()
    generator = email.generator.BytesGenerator(
        out, mangle_from_=False, policy=email.policy.compat32.clone(linesep="\r\n")
    )
    generator.flatten(message)
    return Unlocked(out.getvalue(), tuple(opened), encrypted, len(candidates))
