"""Independent MIME readers, and what each of them shows a person.

Five readings of one message, from four ecosystems:

- ``python-compat32`` and ``python-default``: Python's ``email`` with both policies (the
  gateway itself parses with compat32);
- ``rust-mailparse``: the Rust ``mailparse`` crate through the ``fast-mail-parser`` wheel
  (in process);
- ``node-mailparser``: Node ``mailparser`` (``tests/differential/node``, installed by
  ``npm ci`` from ``./run-tests``), one long-lived process;
- ``perl-mime-tools``: Perl ``MIME::Parser`` (Debian ``libmime-tools-perl``), one long-lived
  process, with uuencoded files in text extracted as Thunderbird and Outlook show them.

Each reading is reduced to what a recipient would see, decided by one rule for every tree
reader (mailparser's own: a leaf is a file unless it is text/plain or text/html without an
``attachment`` disposition): the files (name and SHA-256 of the decoded bytes), whether any
HTML is shown, and the text. ``Reading.summary()`` is what the differential tests compare.

The external processes read a file path per line on stdin and answer one JSON line each;
``read_all`` streams a whole batch through both at once (two cores), bounded in time.
"""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import json
import re
import shutil
import subprocess
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
NODE_DIR = HERE / "node"
PERL_READER = HERE / "perl" / "reader.pl"
TEXT_TYPES = ("text/plain", "text/html", "message/delivery-status")
HEAD = 512  # bytes of each file kept for libmagic


@dataclass(frozen=True, slots=True)
class File:
    """A part a reader shows as a file."""

    filename: str
    content_type: str
    sha256: str
    size: int
    head: bytes = b""  # the first bytes, for libmagic


@dataclass(slots=True)
class Reading:
    reader: str
    files: list[File] = field(default_factory=list)
    html: bool = False
    texts: list[str] = field(default_factory=list)  # each inline text/plain part, decoded
    error: str | None = None

    @property
    def text(self) -> str:
        return "\n".join(self.texts)

    def summary(self) -> dict[str, Any]:
        """What must be equal across readers: the files (by content and name), whether HTML
        is shown, and the texts with whitespace and Unicode form normalised (in any order:
        readers list the parts of an attached message before or after the others)."""
        texts = (_normal_text(t) for t in self.texts)
        return {
            "files": sorted((f.sha256, _name(f.filename)) for f in self.files),
            "html": self.html,
            "texts": sorted(t for t in texts if t),
        }


def _name(filename: str) -> str:
    return unicodedata.normalize("NFC", filename).strip()


def _normal_text(text: str) -> str:
    # Readers differ in line ends and flowed-text unwrapping: compare the characters, not the
    # layout. U+FEFF and U+FFFD are decoder choices, not content.
    text = unicodedata.normalize("NFC", text).replace("\ufeff", "").replace("\ufffd", "")
    return re.sub(r"\s+", "", text)


def _is_file(content_type: str, disposition: str) -> bool:
    """mailparser's rule (``createNode``), applied to every tree reader alike."""
    disposition = (disposition or "").strip().lower()
    if disposition and disposition not in ("attachment", "inline"):
        disposition = "attachment"
    if not disposition:
        disposition = "inline" if content_type in TEXT_TYPES else "attachment"
    return content_type not in TEXT_TYPES or disposition != "inline"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- Python -----------------------------------------------------------------------------------


def read_python(raw: bytes, policy_name: str) -> Reading:
    policy = email.policy.compat32 if policy_name == "compat32" else email.policy.default
    reading = Reading(f"python-{policy_name}")
    try:
        message = email.message_from_bytes(raw, policy=policy)
        for part in message.walk():
            if part.is_multipart() or part.get_content_type() == "message/rfc822":
                continue
            _python_leaf(part, reading, reading.texts)
    except Exception as exc:  # a reader that fails is a finding of the test, not a crash
        reading.error = f"{type(exc).__name__}: {exc}"
    return reading


def _python_leaf(part: Message, reading: Reading, texts: list[str]) -> None:
    content_type = part.get_content_type()
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    if not isinstance(data, bytes):
        payload = part.get_payload()
        data = payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""
    disposition = part.get_content_disposition() or ""
    if _is_file(content_type, disposition):
        try:
            filename = str(part.get_filename() or "")
        except Exception:
            filename = ""
        reading.files.append(File(filename, content_type, _digest(data), len(data), data[:HEAD]))
        return
    if content_type == "text/html":
        reading.html = True
    if content_type == "text/plain":
        charset = part.get_content_charset() or "utf-8"
        try:
            texts.append(data.decode(charset, "replace"))
        except LookupError:
            texts.append(data.decode("utf-8", "replace"))


# -- Rust (mailparse crate) ---------------------------------------------------------------


def rust_available() -> bool:
    try:
        import fast_mail_parser  # noqa: F401
    except ImportError:
        return False
    return True


def read_rust(raw: bytes) -> Reading:
    import fast_mail_parser

    reading = Reading("rust-mailparse")
    try:
        tree = fast_mail_parser.parse_email_tree(raw)
    except Exception as exc:
        reading.error = f"{type(exc).__name__}: {exc}"
        return reading
    for node in fast_mail_parser.walk(tree):
        content_type = (node.content_type or "text/plain").lower()
        if node.children or node.is_message or content_type.startswith("multipart/"):
            continue
        data = bytes(node.content or b"")
        disposition = (node.disposition or "").lower()
        if _is_file(content_type, disposition):
            reading.files.append(
                File(node.filename or "", content_type, _digest(data), len(data), data[:HEAD])
            )
        elif content_type == "text/html":
            reading.html = True
        elif content_type == "text/plain":
            reading.texts.append(_decode_rust_text(node, data))
    return reading


def _decode_rust_text(node: Any, data: bytes) -> str:
    header = " ".join(node.headers.get("content-type", node.headers.get("Content-Type", [])))
    match = re.search(r'charset\s*=\s*"?([^";\s]+)', header, re.I)
    charset = match.group(1) if match else "utf-8"
    try:
        return data.decode(charset, "replace")
    except LookupError:
        return data.decode("utf-8", "replace")


# -- external processes -------------------------------------------------------------------


class LineReader:
    """One long-lived reader process: a file path per line in, one JSON line out."""

    def __init__(self, name: str, argv: Sequence[str], cwd: Path) -> None:
        self.name = name
        self.process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            bufsize=1,
        )

    def read_many(self, paths: Sequence[Path], timeout: float) -> list[dict[str, Any]]:
        """Stream ``paths`` through the process; a writer thread keeps both pipes moving."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        stdin, stdout = self.process.stdin, self.process.stdout

        def write() -> None:
            for path in paths:
                stdin.write(f"{path}\n")
            stdin.flush()

        results: list[dict[str, Any]] = []

        def read() -> None:
            for _ in paths:
                line = stdout.readline()
                if not line:
                    raise RuntimeError(f"{self.name} ended early")
                results.append(json.loads(line))

        writer = threading.Thread(target=write, daemon=True)
        reader = threading.Thread(target=read, daemon=True)
        writer.start()
        reader.start()
        reader.join(timeout)
        if reader.is_alive() or len(results) != len(paths):
            self.close()
            raise TimeoutError(f"{self.name} answered {len(results)} of {len(paths)} in {timeout}s")
        return results

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


def node_available() -> str | None:
    """None when Node mailparser can run, else why not."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (NODE_DIR / "node_modules" / "mailparser").is_dir():
        return "mailparser is not installed (npm ci in tests/differential/node; ./run-tests does)"
    return None


def perl_available() -> str | None:
    if shutil.which("perl") is None:
        return "perl is not installed"
    probe = subprocess.run(["perl", "-MMIME::Parser", "-e", "1"], capture_output=True)
    if probe.returncode != 0:
        return "MIME::Parser is not installed (Debian libmime-tools-perl; ./run-tests installs it)"
    return None


def node_reading(result: dict[str, Any]) -> Reading:
    reading = Reading("node-mailparser", error=result.get("error"))
    for item in result.get("attachments", []):
        head = base64.b64decode(item.get("head", ""))
        reading.files.append(
            File(item["filename"], item["type"], item["sha256"], item["size"], head)
        )
    reading.html = bool(result.get("html"))
    reading.texts = list(result.get("texts", []))
    return reading


def perl_reading(result: dict[str, Any]) -> Reading:
    reading = Reading("perl-mime-tools", error=result.get("error"))
    for leaf in result.get("leaves", []):
        content_type = leaf["type"]
        if _is_file(content_type, leaf["disposition"]):
            head = base64.b64decode(leaf.get("head", ""))
            reading.files.append(
                File(leaf["filename"], content_type, leaf["sha256"], leaf["size"], head)
            )
        elif content_type == "text/html":
            reading.html = True
        elif content_type == "text/plain":
            reading.texts.append(leaf.get("text") or "")
    return reading


class Readers:
    """Every reader available here. ``external`` are started once and reused."""

    def __init__(self) -> None:
        self.skipped: dict[str, str] = {}
        self.node: LineReader | None = None
        self.perl: LineReader | None = None
        why = node_available()
        if why is None:
            self.node = LineReader("node-mailparser", ["node", "reader.js"], NODE_DIR)
        else:
            self.skipped["node-mailparser"] = why
        why = perl_available()
        if why is None:
            self.perl = LineReader("perl-mime-tools", ["perl", str(PERL_READER)], HERE)
        else:
            self.skipped["perl-mime-tools"] = why
        self.rust = rust_available()
        if not self.rust:
            self.skipped["rust-mailparse"] = "fast-mail-parser is not installed"

    @property
    def names(self) -> list[str]:
        names = ["python-compat32", "python-default"]
        if self.rust:
            names.append("rust-mailparse")
        if self.node is not None:
            names.append("node-mailparser")
        if self.perl is not None:
            names.append("perl-mime-tools")
        return names

    def read_all(self, paths: Sequence[Path], timeout: float = 120) -> list[list[Reading]]:
        """Every reader's reading of every file, in order: ``result[i]`` for ``paths[i]``."""
        external: dict[str, list[dict[str, Any]]] = {}
        errors: list[BaseException] = []

        def run(reader: LineReader) -> None:
            try:
                external[reader.name] = reader.read_many(paths, timeout)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(r,)) for r in (self.node, self.perl) if r]
        for thread in threads:
            thread.start()
        out: list[list[Reading]] = []
        for path in paths:
            raw = path.read_bytes()
            row = [read_python(raw, "compat32"), read_python(raw, "default")]
            if self.rust:
                row.append(read_rust(raw))
            out.append(row)
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        for index, row in enumerate(out):
            if "node-mailparser" in external:
                row.append(node_reading(external["node-mailparser"][index]))
            if "perl-mime-tools" in external:
                row.append(perl_reading(external["perl-mime-tools"][index]))
        return out

    def close(self) -> None:
        for reader in (self.node, self.perl):
            if reader is not None:
                reader.close()


def disagreements(readings: Iterable[Reading]) -> list[str]:
    """How the readings of one message differ (empty: every reader saw the same)."""
    readings = list(readings)
    problems = [f"{r.reader}: error {r.error}" for r in readings if r.error]
    reference = readings[0]
    for other in readings[1:]:
        mine, theirs = reference.summary(), other.summary()
        for key in ("files", "html", "texts"):
            if mine[key] != theirs[key]:
                problems.append(
                    f"{key}: {reference.reader}={_short(mine[key])} "
                    f"{other.reader}={_short(theirs[key])}"
                )
    return problems


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) < 160 else text[:157] + "..."
