"""``mugaika quarantine|user|db`` through the real argument parser and a real store."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gateway.cli import main
from quarantine.cli import open_for
from quarantine.users import UserStore
from tests.helpers.smtp_sink import SmtpSink
from tests.quarantine.conftest import hold_request, make_config, message


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def store(data_dir: Path):  # type: ignore[no-untyped-def]
    store = open_for(make_config(data_dir))
    yield store
    store.engine.dispose()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_json_has_the_documented_fields(store, data_dir, capsys) -> None:  # type: ignore[no-untyped-def]
    request = hold_request(raw=message(subject="見積書"))
    store.hold(request)
    code, out, _ = run(capsys, "quarantine", "list", "--json", "--data-dir", str(data_dir))
    assert code == 0
    [item] = json.loads(out)
    for key in (
        "id",
        "message_id",
        "envelope_from",
        "recipients",
        "subject",
        "reasons",
        "status",
        "received_at",
        "tenant",
    ):
        assert key in item
    assert item["id"] == request.reference_id
    assert item["subject"] == "見積書"
    assert item["recipients"] == ["user@city.example.lg.jp"]
    code, out, _ = run(
        capsys,
        "quarantine",
        "list",
        "--json",
        "--search",
        "nothing-like-this",
        "--data-dir",
        str(data_dir),
    )
    assert json.loads(out) == []
    code, out, _ = run(
        capsys,
        "quarantine",
        "list",
        "--status",
        "held",
        "--since",
        "1d",
        "--tenant",
        "city.example.lg.jp",
        "--data-dir",
        str(data_dir),
    )
    assert request.reference_id in out


def test_show_export_release_delete_purge(store, data_dir, capsys) -> None:  # type: ignore[no-untyped-def]
    raw = message(subject="export me")
    request = hold_request(raw=raw)
    store.hold(request)
    ref = request.reference_id
    code, out, _ = run(capsys, "quarantine", "show", ref, "--data-dir", str(data_dir))
    assert code == 0
    assert "OOXML_VBA_MACRO" in out
    assert "export me" in out
    exported = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "quarantine",
            "export",
            ref,
            "--data-dir",
            str(data_dir),
        ],
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert exported.stdout == raw
    with SmtpSink() as sink:
        downstream = f"{sink.host}:{sink.port}"
        code, out, err = run(
            capsys,
            "quarantine",
            "release",
            ref,
            "--target",
            "original",
            "--reason",
            "checked",
            "--downstream",
            downstream,
            "--data-dir",
            str(data_dir),
        )
        assert code == 0, err
        assert sink.wait_for(1)[0].data.endswith(raw)
        code, _, err = run(
            capsys,
            "quarantine",
            "release",
            ref,
            "--target",
            "original",
            "--reason",
            "again",
            "--downstream",
            downstream,
            "--data-dir",
            str(data_dir),
        )
        assert code == 1
        assert "already released" in err
        assert len(sink.messages) == 1
    actions = [e.action for e in store.audit_entries(item_id=ref)[0]]
    assert actions[0] == "released"
    assert "exported" in actions
    code, out, _ = run(
        capsys, "quarantine", "delete", ref, "--reason", "done", "--data-dir", str(data_dir)
    )
    assert code == 0
    assert store.get(ref).summary.status == "deleted"
    code, out, _ = run(capsys, "quarantine", "purge", "--data-dir", str(data_dir))
    assert code == 0
    assert out.startswith("expired 0 items")


def test_release_without_reason_is_a_usage_error(store, data_dir, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    request = hold_request()
    store.hold(request)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code, _, err = run(
        capsys,
        "quarantine",
        "release",
        request.reference_id,
        "--target",
        "original",
        "--data-dir",
        str(data_dir),
    )
    assert code == 2
    assert "--reason TEXT is required" in err
    assert store.get(request.reference_id).summary.status == "held"


def test_unknown_item_is_one_line_and_exit_1(store, data_dir, capsys) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run(capsys, "quarantine", "show", "NOPE", "--data-dir", str(data_dir))
    assert code == 1
    assert err.strip() == "mugaika quarantine show: no item NOPE"


def test_recipient_request_then_approval(store, data_dir, capsys) -> None:  # type: ignore[no-untyped-def]
    request = hold_request(kind="retained")
    store.hold(request)
    code, out, _ = run(
        capsys,
        "quarantine",
        "request",
        request.reference_id,
        "--reason",
        "原本が必要",
        "--by",
        "user@city.example.lg.jp",
        "--data-dir",
        str(data_dir),
    )
    assert code == 0
    code, out, _ = run(capsys, "quarantine", "requests", "--json", "--data-dir", str(data_dir))
    [pending] = json.loads(out)
    assert pending["requested_by"] == "recipient:user@city.example.lg.jp"
    with SmtpSink() as sink:
        code, out, err = run(
            capsys,
            "quarantine",
            "approve",
            str(pending["id"]),
            "--reason",
            "ok",
            "--downstream",
            f"{sink.host}:{sink.port}",
            "--data-dir",
            str(data_dir),
        )
        assert code == 0, err
        assert sink.wait_for(1)[0].rcpt_tos == ["user@city.example.lg.jp"]


def test_users_and_tokens(data_dir, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    code, out, err = run(
        capsys,
        "user",
        "add",
        "tanaka",
        "--role",
        "tenant-admin",
        "--domain",
        "City.Example.LG.JP",
        "--password-stdin",
        "--data-dir",
        str(data_dir),
    )
    assert code == 0, err
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    code, _, err = run(
        capsys,
        "user",
        "add",
        "x",
        "--role",
        "superadmin",
        "--password-stdin",
        "--data-dir",
        str(data_dir),
    )
    assert code == 1
    assert "too short" in err
    code, _, err = run(
        capsys, "user", "add", "y", "--role", "tenant-admin", "--sso", "--data-dir", str(data_dir)
    )
    assert code == 1
    assert "needs at least one --domain" in err
    code, out, _ = run(capsys, "user", "list", "--json", "--data-dir", str(data_dir))
    [user] = json.loads(out)
    assert user["domains"] == ["city.example.lg.jp"]
    code, token, _ = run(capsys, "user", "token", "create", "tanaka", "--data-dir", str(data_dir))
    assert code == 0
    users = UserStore(open_for(make_config(data_dir)).engine)
    assert users.user_for_token(token.strip()).username == "tanaka"  # type: ignore[union-attr]
    assert users.authenticate("tanaka", "a long enough password") is not None
    code, _, _ = run(capsys, "user", "disable", "tanaka", "--data-dir", str(data_dir))
    assert users.authenticate("tanaka", "a long enough password") is None
    assert users.user_for_token(token.strip()) is None


def test_db_upgrade_and_status_for_a_configured_url(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "mugaika.yaml"
    url = f"sqlite:///{tmp_path / 'explicit.db'}"
    config.write_text(yaml.safe_dump({"quarantine": {"url": url}}))
    code, _, err = run(capsys, "quarantine", "list", "--config", str(config))
    assert code == 2
    assert "run `mugaika db upgrade`" in err
    code, out, _ = run(capsys, "db", "status", "--config", str(config))
    assert code == 1
    code, out, _ = run(capsys, "db", "upgrade", "--config", str(config))
    assert code == 0
    assert "upgraded (empty) →" in out
    code, out, _ = run(capsys, "db", "status", "--config", str(config))
    assert code == 0


def test_release_target_is_required_and_named_like_the_api(store, data_dir, capsys) -> None:  # type: ignore[no-untyped-def]
    """``--target sanitized|original`` (``--sanitized`` is its short form); no default: a
    script that once relied on the original being the default now stops with exit 2."""
    items = []
    for _ in range(3):
        request = hold_request(
            raw=message(body="ORIGINAL-BODY"), sanitized=b"Subject: s\r\n\r\nSANITIZED-BODY\r\n"
        )
        store.hold(request)
        items.append(request.reference_id)
    with SmtpSink() as sink:
        common = ["--reason", "checked", "--downstream", f"{sink.host}:{sink.port}"]
        common += ["--data-dir", str(data_dir)]
        code, _, err = run(capsys, "quarantine", "release", items[0], *common)
        assert code == 2
        assert "--target sanitized or --target original" in err
        with pytest.raises(SystemExit) as exited:
            main(["quarantine", "release", items[0], "--target", "copy", *common])
        assert exited.value.code == 2
        assert "invalid choice: 'copy'" in capsys.readouterr().err
        assert store.get(items[0]).summary.status == "held"
        assert sink.messages == []
        code, out, err = run(
            capsys, "quarantine", "release", items[0], "--target", "sanitized", *common
        )
        assert code == 0, err
        assert "(sanitized)" in out
        code, out, err = run(capsys, "quarantine", "release", items[1], "--sanitized", *common)
        assert code == 0, err
        code, out, err = run(
            capsys, "quarantine", "release", items[2], "--target", "original", *common
        )
        assert code == 0, err
        assert "(original)" in out
        delivered = [m.data for m in sink.wait_for(3)]
    assert b"SANITIZED-BODY" in delivered[0]
    assert b"ORIGINAL-BODY" not in delivered[0]
    assert b"SANITIZED-BODY" in delivered[1]
    assert b"ORIGINAL-BODY" not in delivered[1]
    assert b"ORIGINAL-BODY" in delivered[2]
