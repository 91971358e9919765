"""``mugaika milter``'s socket syntax (Postfix's): what it accepts and how it refuses."""

from __future__ import annotations

import pytest

from gateway.milter import parse_listen
from tests.integration.mails import mugaika


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("inet:127.0.0.1:10029", ("inet", "127.0.0.1", 10029)),
        ("inet:localhost:8891", ("inet", "localhost", 8891)),
        ("inet6:[::1]:10029", ("inet6", "::1", 10029)),
        ("unix:/run/mugaika/milter.sock", ("unix", "/run/mugaika/milter.sock", 0)),
    ],
)
def test_listen_specs_postfix_uses(spec: str, parsed: tuple[str, str, int]) -> None:
    assert parse_listen(spec) == parsed


@pytest.mark.parametrize(
    "spec", ["127.0.0.1:10029", "inet:127.0.0.1", "inet:127.0.0.1:99999", "unix:relative"]
)
def test_other_specs_are_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="expected inet:HOST:PORT or unix:/PATH"):
        parse_listen(spec)


def test_a_bad_listen_flag_is_a_usage_error() -> None:
    result = mugaika("milter", "--listen", "127.0.0.1:10029", check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "mugaika milter: --listen '127.0.0.1:10029': expected inet:HOST:PORT or unix:/PATH"
    )
