"""Password lines of a PPAP password mail (gateway/ppap.py): what is tried, what is masked."""

from __future__ import annotations

import io

import pytest
import pyzipper

from gateway import ppap
from tests.helpers import hostile


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("パスワード：Xk3#9pQa", "Xk3#9pQa"),
        ("パスワード: Xk3#9pQa", "Xk3#9pQa"),
        ("パスワード　：　Xk3#9pQa", "Xk3#9pQa"),
        ("【パスワード】Xk3#9pQa", "Xk3#9pQa"),
        ("■解凍パスワード＝Xk3#9pQa", "Xk3#9pQa"),
        ("ﾊﾟｽﾜｰﾄﾞ：Xk3#9pQa", "Xk3#9pQa"),
        ("ＰＷ：Xk3#9pQa", "Xk3#9pQa"),
        ("PW: Xk3#9pQa", "Xk3#9pQa"),
        ("Password: Xk3#9pQa", "Xk3#9pQa"),
        ("パスワード：「Xk3#9pQa」です。", "Xk3#9pQa"),
        ("パスワード：Ｘｋ３＃９ｐＱａ", "Xk3#9pQa"),  # typed full-width: NFKC form tried too
    ],
)
def test_password_line_forms(line: str, expected: str) -> None:
    assert expected in ppap.password_candidates([f"お世話になります。\n{line}\nよろしく"])


def test_password_on_the_next_line() -> None:
    text = "パスワード：\n\n  Xk3#9pQa\n以上です。"
    assert ppap.password_candidates([text])[0] == "Xk3#9pQa"
    masked, count = ppap.mask_passwords(text)
    assert count == 1
    assert "Xk3#9pQa" not in masked
    assert "  ********" in masked


@pytest.mark.parametrize(
    "text",
    [
        "パスワードは別途お送りします。",
        "パスワードをお忘れの方はこちら",
        "Passwords must be rotated.",
        "",
    ],
)
def test_no_password_line(text: str) -> None:
    assert ppap.password_candidates([text]) == []
    assert ppap.mask_passwords(text) == (text, 0)


def test_mask_keeps_label_and_other_lines() -> None:
    text = "ご担当者様\nPW: Xk3#9pQa\r\n以上"
    masked, count = ppap.mask_passwords(text)
    assert (masked, count) == ("ご担当者様\nPW: ********\r\n以上", 1)


def test_candidates_are_bounded() -> None:
    text = "\n".join(f"PW: value{n} extra words" for n in range(50))
    assert len(ppap.password_candidates([text])) == ppap.MAX_CANDIDATES


def _aes(password: bytes, members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with pyzipper.AESZipFile(
        out, "w", compression=pyzipper.ZIP_DEFLATED, encryption=pyzipper.WZ_AES
    ) as archive:
        archive.setpassword(password)
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def test_open_archive_zipcrypto_and_aes() -> None:
    limits = ppap.ArchiveLimits()
    zipcrypto = hostile.zipcrypto_zip(b"right", b"secret\n")
    assert ppap.open_archive(zipcrypto, ["wrong", "right"], limits) == [("請求書.txt", b"secret\n")]
    aes = _aes(b"right", {"a.txt": b"A", "dir/b.txt": b"B"})
    assert ppap.open_archive(aes, ["right"], limits) == [("a.txt", b"A"), ("b.txt", b"B")]
    assert ppap.open_archive(aes, ["wrong"], limits) is None


def test_open_archive_refuses_a_bomb_after_the_right_password() -> None:
    bomb = _aes(b"right", {"zeros.bin": bytes(5_000_000)})
    with pytest.raises(ppap.UnlockRefused, match="expands too far"):
        ppap.open_archive(bomb, ["right"], ppap.ArchiveLimits(max_ratio=10))
