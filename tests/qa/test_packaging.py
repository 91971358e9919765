"""Packaging checks, in the spirit of aiosmtpd's ``qa/test_0packaging.py``.

PyPI's django-rules is also imported as ``rules``: make sure the ``rules`` this checkout runs
is its own, and that a built wheel carries the shipped policy files (package data)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_rules_is_this_checkouts_package() -> None:
    import rules

    location = Path(rules.__file__).resolve()
    assert location.is_relative_to(REPO), f"'rules' imported from {location}, not {REPO}"
    assert callable(rules.load_policies)  # django-rules has no such function
    assert (location.parent / "policies" / "lgwan-base.yaml").is_file()


def test_console_script_subcommand_is_registered() -> None:
    from gateway import cli

    assert "rules.cli" in cli.COMMAND_MODULES
    parser = cli.build_parser()
    args = parser.parse_args(["rules", "check", "some-dir"])
    assert args.func.__module__ == "rules.cli"


@pytest.mark.slow
def test_wheel_contains_the_shipped_policies(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for package in ("gateway", "rules", "quarantine"):
        shutil.copytree(
            REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    out = tmp_path / "dist"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = out.glob("mugaika-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = sorted(p.name for p in (REPO / "rules" / "policies").glob("*.yaml"))
    assert shipped == ["internet-light.yaml", "lgwan-base.yaml", "strip-all.yaml"]
    for name in shipped:
        assert f"rules/policies/{name}" in names
    assert "rules/engine.py" in names
    assert "gateway/auth.py" in names
