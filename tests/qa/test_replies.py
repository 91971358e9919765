"""Every named reply agrees with its name and carries a well-formed RFC 3463 enhanced code."""

from __future__ import annotations

import re

from gateway import replies
from gateway.replies import AIOSMTPD_REPLACEMENTS, Reply, downstream_reply

NAMED = {name: value for name, value in vars(replies).items() if isinstance(value, Reply)}


def test_there_are_named_replies():
    assert len(NAMED) > 30


def test_name_starts_with_r_and_its_code():
    for name, reply in NAMED.items():
        assert re.fullmatch(r"R\d{3}_[A-Z0-9_]+", name), name
        assert name[1:4] == str(reply.code), f"{name} has code {reply.code}"


def test_enhanced_code_is_well_formed_and_matches_the_class():
    for name, reply in {
        **NAMED,
        **{f"aiosmtpd {k!r}": v for k, v in AIOSMTPD_REPLACEMENTS.items()},
    }.items():
        assert re.fullmatch(r"[245]\.\d{1,3}\.\d{1,3}", reply.enhanced), name
        assert reply.enhanced[0] == str(reply.code)[0], name
        assert reply.text, name
        assert "\r" not in reply.text, name
        assert "\n" not in reply.text, name


def test_downstream_reply_keeps_a_valid_enhanced_code_and_derives_a_missing_one():
    assert downstream_reply(550, "5.1.1 User unknown") == Reply(550, "5.1.1", "User unknown")
    assert downstream_reply(451, "Try later") == Reply(451, "4.0.0", "Try later")
    # A mismatched class is not trusted.
    assert downstream_reply(550, "2.0.0 nonsense") == Reply(550, "5.0.0", "2.0.0 nonsense")
