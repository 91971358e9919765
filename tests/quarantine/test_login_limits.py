"""Login rate limits keyed on (user name, client address) (issue 11).

Before, five failures locked that user name everywhere and every user at that client address:
behind a reverse proxy every request came from the proxy's address, so one attacker locked
out all admins. Now a failure counts against the pair (name, client); a client spraying many
names is stopped at ten times the limit, which blocks that client only. The client is the TCP
peer, or the ``X-Forwarded-For`` entry the proxy added when the peer is one of
``admin.trusted_proxies`` (never a value a client wrote itself).

Real HTTP against uvicorn on loopback (the peer is 127.0.0.1), real argon2 password checks.
"""

from __future__ import annotations

import re

import pytest
import requests

from tests.quarantine.conftest import RunningAdmin
from tests.quarantine.test_web import PASSWORD, add_user

ATTACKER = "203.0.113.66"
ALICE_DESK = "198.51.100.7"
BOB_DESK = "198.51.100.8"


def attempt(admin: RunningAdmin, name: str, password: str, forwarded: str | None) -> int:
    """One login from a fresh browser; the status of the POST."""
    session = requests.Session()
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    page = session.get(f"{admin.url}/login", headers=headers, timeout=10)
    token = re.search(r'name="login_token" value="([^"]+)"', page.text)
    assert token
    response = session.post(
        f"{admin.url}/login",
        data={"login_token": token.group(1), "username": name, "password": password},
        headers=headers,
        allow_redirects=False,
        timeout=30,
    )
    return response.status_code


@pytest.mark.parametrize("backend_url", ["sqlite"], indirect=True)
def test_an_attacker_behind_the_proxy_locks_out_only_themselves(admin_factory) -> None:  # type: ignore[no-untyped-def]
    admin = admin_factory(admin={"login_attempts": 3, "trusted_proxies": ["127.0.0.0/8"]})
    add_user(admin, "alice", "superadmin")
    add_user(admin, "bob", "superadmin")
    for _ in range(3):
        assert attempt(admin, "alice", "wrong password!", ATTACKER) == 401
    # The attacker's pair is locked: even the right password is refused there.
    assert attempt(admin, "alice", PASSWORD, ATTACKER) == 429
    # Alice at her own desk, and Bob anywhere, log in.
    assert attempt(admin, "alice", PASSWORD, ALICE_DESK) == 303
    assert attempt(admin, "bob", PASSWORD, BOB_DESK) == 303
    assert attempt(admin, "bob", PASSWORD, ATTACKER) == 303
    # A proxy chain: the client is the rightmost address not a trusted proxy; what the
    # client itself wrote to the left of it is ignored.
    assert attempt(admin, "alice", PASSWORD, f"10.9.9.9, {ATTACKER}, 127.0.0.2") == 429
    assert attempt(admin, "alice", PASSWORD, f"{ATTACKER}, {ALICE_DESK}") == 303
    entries, _ = admin.store.audit_entries(action="login-failed")
    assert {e.remote_addr for e in entries} == {ATTACKER}
    logins, _ = admin.store.audit_entries(action="login")
    assert {e.remote_addr for e in logins} == {ALICE_DESK, BOB_DESK, ATTACKER}


@pytest.mark.parametrize("backend_url", ["sqlite"], indirect=True)
def test_forwarded_for_from_an_untrusted_peer_is_ignored(admin_factory) -> None:  # type: ignore[no-untyped-def]
    # Default: no trusted proxies. The peer (127.0.0.1) is the client whatever the header says,
    # so rotating X-Forwarded-For values does not escape the limit.
    admin = admin_factory(admin={"login_attempts": 3})
    add_user(admin, "alice", "superadmin")
    add_user(admin, "bob", "superadmin")
    for number in range(3):
        assert attempt(admin, "alice", "wrong password!", f"192.0.2.{number + 1}") == 401
    assert attempt(admin, "alice", PASSWORD, "192.0.2.200") == 429
    assert attempt(admin, "bob", PASSWORD, None) == 303
    entries, _ = admin.store.audit_entries(action="login-failed")
    assert {e.remote_addr for e in entries} == {"127.0.0.1"}


@pytest.mark.parametrize("backend_url", ["sqlite"], indirect=True)
def test_spraying_many_names_blocks_that_client_only(admin_factory) -> None:  # type: ignore[no-untyped-def]
    admin = admin_factory(admin={"login_attempts": 1, "trusted_proxies": ["127.0.0.0/8"]})
    add_user(admin, "alice", "superadmin")
    for number in range(10):
        assert attempt(admin, f"guess{number}", "wrong password!", ATTACKER) == 401
    assert attempt(admin, "alice", PASSWORD, ATTACKER) == 429
    assert attempt(admin, "alice", PASSWORD, ALICE_DESK) == 303


@pytest.mark.parametrize("backend_url", ["sqlite"], indirect=True)
def test_header_sso_trusts_the_peer_not_the_forwarded_address(admin_factory) -> None:  # type: ignore[no-untyped-def]
    # The SSO header is believed from header_auth.trusted_proxies, judged by the TCP peer: a
    # client cannot become a trusted proxy by writing a trusted address into X-Forwarded-For.
    admin = admin_factory(
        admin={
            "trusted_proxies": ["127.0.0.0/8"],
            "header_auth": {"header": "X-Remote-User", "trusted_proxies": ["192.0.2.0/24"]},
        }
    )
    add_user(admin, "sso-user", "superadmin")
    page = requests.get(
        f"{admin.url}/items",
        headers={"X-Remote-User": "sso-user", "X-Forwarded-For": "192.0.2.5"},
        allow_redirects=False,
        timeout=10,
    )
    assert page.status_code == 303
