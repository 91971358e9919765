"""`benchmarks/soak.py` in a tiny run: the zero-loss and no-duplicate checks hold, and the
checks themselves catch a lost or a duplicated message.

No memory figure is asserted (the machine is shared, and a few hundred messages make no
trend): only that the run completes, the gateway survives its killed workers, and every
message answered 250 is at the faulty downstream exactly once or in the quarantine.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import soak  # noqa: E402
from faulty_downstream import FaultyHandler, message_id  # noqa: E402


def test_a_quick_soak_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    args = soak.parse_args(
        ["--quick", "--messages", "300", "--kill-every", "1", "--large-mb", "0",
         "--out", str(tmp_path)]
    )  # fmt: skip
    result = soak.run(args)
    delivery = result["soak"]["delivery"]
    assert delivery["failures"] == []
    assert delivery["ok"]
    assert delivery["lost"] == 0
    assert delivery["duplicates"] == 0
    assert delivery["delivered_without_250"] == 0
    settled = sum(
        delivery[key] for key in ("answered_250", "final_4xx", "final_5xx", "final_connection_lost")
    )
    assert settled == 300
    # The faults really happened: retries after 4xx, final 5xx, workers killed.
    assert delivery["retried"] > 0
    assert result["soak"]["downstream_faults"]
    assert result["soak"]["kills"]
    assert result["soak"]["gateway_alive_at_end"]
    assert delivery["at_downstream"] == delivery["delivered"]
    assert all(ok for _, _, ok in result["targets"])
    (tmp_path / "soak-quick.md").write_text(soak.markdown(result))
    json.dumps(result)  # what main() writes


class _FakeStore:
    def __init__(self, held: dict[str, bytes]) -> None:
        self.held = held

    def get(self, reference: str) -> object:
        if reference not in self.held:
            raise KeyError(reference)

        class Summary:
            kind, status = "quarantined", "held"

        class Item:
            summary = Summary

        return Item

    def original(self, reference: str) -> bytes:
        return self.held[reference]


def _processes(tmp_path: Path, accepted: list[str]) -> soak.Processes:
    processes = soak.Processes(tmp_path)
    tmp_path.mkdir(exist_ok=True)
    processes.accepted_log.write_text("".join(f"{mid}\n" for mid in accepted))
    return processes


def _check(
    tmp_path: Path, messages: list[soak.Message], accepted: list[str], held: dict[str, bytes]
) -> dict[str, object]:
    store = _FakeStore(held)
    original = soak.open_quarantine
    soak.open_quarantine = lambda data_dir: store
    try:
        return soak.check_delivery(messages, _processes(tmp_path, accepted))
    finally:
        soak.open_quarantine = original


def test_the_checks_catch_a_loss_a_duplicate_and_a_false_hold(tmp_path: Path) -> None:
    delivered = soak.Message(0, 0, "<a@x>", [(250, "250 2.0.0 Delivered, queued as Q")])
    lost = soak.Message(1, 0, "<b@x>", [(250, "250 2.0.0 Delivered, queued as R")])
    twice = soak.Message(2, 0, "<c@x>", [(451, "451 4.4.1 try again"), (250, "250 2.0.0 ok")])
    held = soak.Message(3, 0, "<d@x>", [(250, "250 2.0.0 Held for review as REF-1 (q)")])
    wrong_hold = soak.Message(4, 0, "<e@x>", [(250, "250 2.0.0 Held for review as REF-2 (q)")])
    refused = soak.Message(5, 0, "<f@x>", [(554, "554 5.6.0 refused")])
    result = _check(
        tmp_path,
        [delivered, lost, twice, held, wrong_hold, refused],
        ["<a@x>", "<c@x>", "<c@x>", "<f@x>"],
        {"REF-1": b"Message-ID: <d@x>\r\n\r\nbody\r\n", "REF-2": b"Message-ID: <z@x>\r\n\r\n"},
    )
    assert not result["ok"]
    assert result["lost"] == 1
    assert result["duplicates"] == 1
    assert result["delivered_without_250"] == 1
    assert result["quarantined"] == 2
    failures = "\n".join(result["failures"])  # type: ignore[arg-type]
    assert "<b@x>" in failures
    assert "<c@x>" in failures
    assert "<e@x>" in failures
    assert "<z@x>" in failures
    assert "<d@x>" not in failures
    assert "<a@x>" not in failures


def test_the_checks_pass_a_clean_record(tmp_path: Path) -> None:
    messages = [
        soak.Message(0, 0, "<a@x>", [(250, "250 2.0.0 Delivered")]),
        soak.Message(1, 0, "<d@x>", [(250, "250 2.0.0 Held for review as REF-1 (q)")]),
        soak.Message(2, 0, "<f@x>", [(451, "451 4.3.0")] * 4),
    ]
    result = _check(tmp_path, messages, ["<a@x>"], {"REF-1": b"Message-ID: <d@x>\r\n\r\n"})
    assert result["ok"], result["failures"]
    assert result["final_4xx"] == 1


def test_the_downstream_draws_its_faults_from_its_seed(tmp_path: Path) -> None:
    def draws(seed: int) -> list[bool]:
        with (tmp_path / "a").open("w") as accepted, (tmp_path / "f").open("w") as faults:
            handler = FaultyHandler(accepted, faults, random.Random(seed), clean=False)
            return [handler.draw(0.5, "x") for _ in range(64)]

    assert draws(1) == draws(1)
    assert draws(1) != draws(2)
    with (tmp_path / "a").open("w") as accepted, (tmp_path / "f").open("w") as faults:
        clean = FaultyHandler(accepted, faults, random.Random(1), clean=True)
        assert not any(clean.draw(1.0, "x") for _ in range(8))


def test_message_id_is_read_from_the_header_section_only() -> None:
    assert message_id(b"Subject: x\r\nMessage-ID: <m@x>\r\n\r\nbody") == "<m@x>"
    assert message_id(b"Subject: x\r\n\r\nMessage-ID: <body@x>\r\n") == ""


@pytest.mark.parametrize("megabytes", [0.5])
def test_the_large_message_has_about_the_asked_size(megabytes: float) -> None:
    raw = soak.large_message(megabytes)
    assert abs(len(raw) - megabytes * soak.MiB) < 0.02 * megabytes * soak.MiB
    assert message_id(raw) == "<bench-large@example.com>"
