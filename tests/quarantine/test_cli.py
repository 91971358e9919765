"""``mugaika quarantine|user|db`` through the real argument parser and a real store."""

from __future__ import annotations

import base64
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


# -- issue 16: columns, fields, flag errors, `read` -------------------------------------------


def _column_of(line: str, text: str) -> int:
    from quarantine.cli import display_width

    return display_width(line[: line.index(text)])


def test_list_columns_line_up_by_display_width(store, data_dir, capsys) -> None:  # type: ignore[no-untyped-def]
    store.hold(
        hold_request(raw=message(subject="見積書の送付について（総務課）"), mail_from="root@vm")
    )
    store.hold(
        hold_request(
            raw=message(subject="Invoice"),
            mail_from="keiri.yamada-taro@very-long-department.example.co.jp",
            kind="retained",
        )
    )
    code, out, _ = run(capsys, "quarantine", "list", "--data-dir", str(data_dir))
    assert code == 0
    header, first, second = out.splitlines()[:3]
    for column, values in (("FROM", ("root@vm", "keiri.")), ("SUBJECT", ("Invoice", "見積書"))):
        starts = {_column_of(header, column)}
        for line in (first, second):
            value = next(v for v in values if v in line)
            starts.add(_column_of(line, value))
        assert len(starts) == 1, (column, out)
    # Columns never run together: at least two spaces before each one.
    assert "quarantined root@vm" not in out
    assert "  root@vm" in out
    assert "JST" in first
    assert "times in Asia/Tokyo" in out


def test_show_fields_line_up(store, data_dir, capsys) -> None:  # type: ignore[no-untyped-def]
    request = hold_request(raw=message(subject="見積書"))
    store.hold(request)
    code, out, _ = run(
        capsys, "quarantine", "show", request.reference_id, "--data-dir", str(data_dir)
    )
    assert code == 0
    fields = [
        line for line in out.split("\n\n")[0].splitlines() if ": " in line or line.endswith(":")
    ]
    starts = {len(line) - len(line.split(":", 1)[1].lstrip()) for line in fields}
    assert len(starts) == 1, out
    assert "received:" in out
    assert "JST" in out
    assert "findings:" in out


def test_a_bad_flag_is_named_once(capsys) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run(capsys, "serve", "--listen", "bogus", "--admin-listen", "off")
    assert code == 2
    assert err.strip() == "mugaika: --listen: 'bogus': expected HOST:PORT"
    code, _, err = run(capsys, "admin", "--listen", "nowhere")
    assert code == 2
    assert err.strip() == "mugaika: --admin-listen: 'nowhere': expected HOST:PORT"


ISO_2022_JP_MAIL = (
    b"From: =?ISO-2022-JP?B?GyRCQW1MMzJdGyhC?= <soumu@example.com>\r\n"
    b"To: tanaka@city.example.lg.jp\r\n"
    b"Subject: =?ISO-2022-JP?B?GyRCOCtAUT1xJE5Bd0lVGyhC?=\r\n"
    b"Date: Wed, 25 Nov 2026 14:03:07 +0900\r\n"
    b"Message-ID: <read@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: text/plain; charset=ISO-2022-JP\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n"
    # ISO-2022-JP with Outlook's extensions (①, ㈱): base64, as most Japanese mailers send it.
    + base64.encodebytes(b"\x1b$B$*@$OC$K$J$C$F$*$j$^$9!#-!-j\x1b(B").replace(b"\n", b"\r\n")
    + b'--b\r\nContent-Type: application/pdf; name="=?UTF-8?B?6KaL56mN5pu4LnBkZg==?="\r\n'
    b"Content-Disposition: attachment\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n"
    b"--b--\r\n"
)


def test_read_prints_a_delivered_message_decoded(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "1700000000.M1P1.host"
    path.write_bytes(ISO_2022_JP_MAIL)
    code, out, err = run(capsys, "read", str(path))
    assert code == 0, err
    assert "Subject:    見積書の送付" in out
    assert "From:       総務課 <soumu@example.com>" in out
    assert "Date:       Wed, 25 Nov 2026 14:03:07 +0900" in out
    assert "お世話になっております。①㈱" in out
    assert "GyRC" not in out  # no base64 or escape sequences left
    attachments = out.split("--- attachments ---")[1]
    assert "見積書.pdf" in attachments
    assert "application/pdf" in attachments
    code, _, err = run(capsys, "read", str(tmp_path / "missing"))
    assert code == 1
    assert "no such file" in err


def test_read_prints_a_quarantined_message_by_id(store, data_dir, capsys) -> None:  # type: ignore[no-untyped-def]
    request = hold_request(raw=ISO_2022_JP_MAIL, sanitized=b"Subject: clean\r\n\r\nCLEAN COPY\r\n")
    store.hold(request)
    args = ("--data-dir", str(data_dir))
    code, out, _ = run(capsys, "read", request.reference_id, *args)
    assert code == 0
    assert "お世話になっております。" in out
    code, out, _ = run(capsys, "read", request.reference_id, "--sanitized", *args)
    assert code == 0
    assert "CLEAN COPY" in out
    assert "お世話" not in out
    code, _, err = run(capsys, "read", "20260101-NOSUCHID", *args)
    assert code == 1
    assert "no item" in err
