"""`benchmarks/run`'s building blocks in a tiny run, so that the harness cannot rot.

No throughput figure is checked (the machine is shared): only that every part works end to
end: the workloads build, smtp-source drives a path, the sink's count matches what was sent,
the paced latency client measures, CPU and memory of a process tree are read, and the results
file, its tables and the plot are written.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import harness  # noqa: E402
from measure import cpu_seconds, memory, process_tree, split  # noqa: E402

pytestmark = pytest.mark.skipif(
    not (shutil.which("smtp-source") and shutil.which("smtp-sink")),
    reason="smtp-source and smtp-sink (Debian postfix) are not installed",
)


def test_shares_add_up_and_none_is_empty() -> None:
    assert split(100, [35, 25, 15]) == [47, 33, 20]
    assert split(2, [5, 1, 1]) == [1, 1, 1]
    assert sum(split(16, [35, 8, 8, 7, 5, 5, 7, 7, 6])) == 16


def test_the_results_say_whether_the_machine_was_busy() -> None:
    assert "otherwise idle" in harness._sharing((0.3, 0.2, 0.1), 2)
    busy = harness._sharing((6.5, 5.0, 3.0), 2)
    assert "other processes were running" in busy
    assert "6.5" in busy


def test_process_tree_cpu_and_memory_of_this_process() -> None:
    import os

    assert os.getpid() in process_tree(os.getpid())
    assert cpu_seconds(os.getpid()) > 0
    rss, pss = memory(os.getpid())
    assert rss > 0
    assert pss > 0


def test_a_tiny_interleaved_run_writes_results_and_plot(tmp_path: Path) -> None:
    args = harness.parse_args(
        [
            "--quick",
            "--workloads", "text-5k", "100k",
            "--paths", "direct", "bare",
            "--seconds", "0.2",
            "--latency-seconds", "0.3",
            "--scale", "0.05",
            "--out", str(tmp_path),
        ]
    )  # fmt: skip
    result = harness.run(args)
    runs = result["runs"]
    assert {(r["workload"], r["path"]) for r in runs} == {
        (w, p) for w in ("text-5k", "100k") for p in ("direct", "bare")
    }
    for row in runs:
        assert row["failures"] == []
        assert row["delivered"] == row["sent"] >= 16
    bare = [r for r in runs if r["path"] == "bare"]
    assert all(r["cpu_seconds"] > 0 and r["memory"]["rss"] > 0 for r in bare)
    latencies = {(r["workload"], r["path"]): r for r in result["latencies"]}
    assert set(latencies) == {(w, p) for w in ("text-5k", "100k") for p in ("direct", "bare")}
    assert all(r["samples"] and r["failures"] == [] for r in latencies.values())

    # The 100k workload's PDF, sanitized as a worker does and by pikepdf alone.
    (document,) = result["documents"]
    assert document["label"] == "100k: 資料.pdf"
    assert document["content_class"] == "pdf"
    assert document["isolated_ms"] > 0
    assert document["bare_ms"] > 0
    assert document["ratio"] == pytest.approx(
        document["isolated_ms"] / document["bare_ms"], rel=0.01
    )

    json_path, md_path, png_path = harness.write(result, tmp_path)
    written = json.loads(json_path.read_text(encoding="utf-8"))
    summary = written["summary"]
    assert summary["100k"]["bare"]["x_direct"] > 0
    assert written["documents"] == result["documents"]
    text = md_path.read_text(encoding="utf-8")
    assert "Every message answered 250 was counted at its path's sink" in text
    assert "**Other load:**" in text
    assert "load average" in text
    assert "| 5 KB text ≥ 0.5× the bare Python relay |" in text
    assert "| 100k: 資料.pdf |" in text
    assert "| per document within 1.5× of the bare library calls: 100k: 資料.pdf |" in text
    assert "| per document median within 1.5× of the bare library calls | 1 of 1" in text or (
        "| per document median within 1.5× of the bare library calls | 0 of 1" in text
    )
    assert png_path.read_bytes().startswith(b"\x89PNG")


def test_smtp_source_delivers_the_workload_as_built(tmp_path: Path) -> None:
    """smtp-source appends CRLF to every line of its file: the files must have LF ends, or
    every relay receives a bare CR before each line end (malformed mail, not the workload)."""
    import subprocess

    from aiosmtpd.controller import Controller
    from paths import free_port
    from workloads import sized_workloads

    received: list[bytes] = []

    class Capture:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:  # noqa: N802
            received.append(envelope.original_content)  # type: ignore[attr-defined]
            return "250 OK"

    workloads = {w.name: w for w in sized_workloads(tmp_path, scale=0.05)}
    port = free_port()
    controller = Controller(Capture(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        for name in ("text-5k", "100k"):
            path = workloads[name].templates[0].path
            subprocess.run(
                ["smtp-source", "-m", "1", "-F", str(path), f"127.0.0.1:{port}"],
                check=True,
                timeout=30,
            )
    finally:
        controller.stop()
    assert len(received) == 2
    for name, content in zip(("text-5k", "100k"), received, strict=True):
        built = workloads[name].templates[0].path.read_bytes().replace(b"\n", b"\r\n")
        # smtp-source ends the message with an empty line of its own.
        assert content.removesuffix(b"\r\n") == built, name
        assert content.count(b"\r") == content.count(b"\r\n"), f"{name}: a bare CR arrived"
