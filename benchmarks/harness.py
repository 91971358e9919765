"""Relay benchmark (issue 13): Mugaika against amavisd-new, a bare Python relay and no relay.

    benchmarks/run [--quick] [--rounds N] [--seconds S] [--out DIR]

One interleaved run: every round goes through every workload, and for each workload through
every path in a rotated order, so that whatever else loads the machine falls on all paths
alike; the figures are medians over rounds. Per path and workload it measures, with 16
smtp-source sessions reusing their connections (``-d``, as Postfix's content_filter client
does under load): messages per second, CPU milliseconds per message of the whole gateway
process tree, peak RSS and PSS summed over the tree, and the sink's count (every 250 must be
at the sink). Then each relay is driven at half its own peak rate by a paced client and the
latency from MAIL FROM to the final 250 is compared with the direct path's. Last, with the
relays stopped, the documents the workloads carry are sanitized one by one as a worker does
(``run_isolated``) and by the bare library calls (``bench_cdr.py --per-document``).

Writes ``OUT/{quick,full}.json`` (every run, machine, versions), ``.md`` (the tables and the
issue 13 targets met or missed) and ``.png`` (the plot the README shows).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import Latency, Throughput, base_rss, paced_latency, smtp_source
from paths import PATH_LABELS, RelayPath, Sink, amavisd_program, install_debian_packages
from workloads import (
    WORKLOAD_NAMES,
    Workload,
    mix_workload,
    sized_workloads,
    workload_documents,
)

ROOT = Path(__file__).resolve().parents[1]
SESSIONS = 16
MiB = 1024 * 1024
RELAYS = ("amavis-pass", "amavis-hardened", "bare", "mugaika")


def pipeline_delivers() -> Any:
    """``raw -> bool``: does the shipped default policy deliver this message (in process)?"""
    from gateway.config import load_config
    from gateway.pipeline import Job, Pipeline
    from gateway.report import Verdict
    from gateway.scan import envelope_for

    pipeline = Pipeline(load_config(environ={}))
    pipeline.auth_settings = None

    def delivers(raw: bytes) -> bool:
        outcome = pipeline.process(Job(envelope_for(raw, None, None), raw, "BENCH"))
        return outcome.verdict in (Verdict.DELIVER, Verdict.TAG)

    return delivers


def build_workloads(directory: Path, names: list[str], scale: float = 1.0) -> list[Workload]:
    workloads = [w for w in sized_workloads(directory, scale) if w.name in names]
    if "mix" in names:
        workloads.append(mix_workload(directory, pipeline_delivers()))
    return workloads


def throughput_run(
    path: RelayPath, workload: Workload, messages: int, sessions: int = SESSIONS
) -> Throughput:
    return smtp_source(workload, path.port, messages, sessions, path.sink, path.root_pid)


def latency_run(path: RelayPath, workload: Workload, rate: float, seconds: float) -> Latency:
    before = path.sink.count()
    result = paced_latency(workload, path.port, rate, seconds)
    arrived = path.sink.settled_count(before + result.delivered_250) - before
    if arrived != result.delivered_250:
        result.failures.append(f"sink counted {arrived} of {result.delivered_250} answered 250")
    return result


def per_document(workloads: list[Workload], work: Path, runs: int) -> list[dict[str, Any]]:
    """Each document of the workloads, Mugaika's sanitizer against the bare library calls
    (``bench_cdr.per_document``), in a process of its own: forking needs a single-threaded
    process, and the relay harness is not where a worker's memory would be."""
    documents = workload_documents(workloads)
    if not documents:
        return []
    directory = work / "documents"
    directory.mkdir(parents=True, exist_ok=True)
    manifest = []
    for number, (label, name, data) in enumerate(documents):
        path = directory / f"{number:02d}-{Path(name).suffix.lstrip('.') or 'bin'}"
        path.write_bytes(data)
        manifest.append({"label": label, "name": name, "path": str(path)})
    (directory / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False))
    out = directory / "per-document.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_cdr.py")]
    command += ["--per-document", str(directory / "manifest.json"), "--out", str(out)]
    subprocess.run([*command, "--runs", str(runs)], check=True)
    rows: list[dict[str, Any]] = json.loads(out.read_text(encoding="utf-8"))
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    began = time.monotonic()
    notes = list(args.notes)
    work = Path(tempfile.mkdtemp(prefix="mugaika-bench-"))
    work.chmod(0o711)  # amavisd runs as its own user, with its home inside
    names = args.workloads or list(WORKLOAD_NAMES)
    workloads = build_workloads(work / "mail", names, args.scale)
    wanted = ["direct", *RELAYS]
    if not args.quick:
        wanted.append("mugaika-1w")  # issue 13: two workers ≥ 1.8× one, on the mix
    if args.paths:
        wanted = [p for p in wanted if p in args.paths]
    if not Path(amavisd_program()).exists():
        notes.append("amavisd-new is not installed: its paths are skipped")
        wanted = [p for p in wanted if not p.startswith("amavis")]
    paths = [RelayPath(name, work / name, Sink(work / f"sink-{name}.log")) for name in wanted]
    described = {
        w.name: {
            "mean_size": round(w.mean_size),
            "templates": [
                {"label": t.label, "size": t.size, "weight": t.weight} for t in w.templates
            ],
        }
        for w in workloads
    }
    load_before = os.getloadavg()
    runs: list[dict[str, Any]] = []
    latencies: list[dict[str, Any]] = []
    idle: dict[str, list[int]] = {}
    try:
        for path in paths:
            path.start()
        time.sleep(1)
        idle = {p.name: base_rss(p.root_pid) for p in paths}
        print(f"started {len(paths)} paths in {time.monotonic() - began:.0f} s", flush=True)
        estimates: dict[tuple[str, str], float] = {}
        for round_number in range(args.rounds):
            for index, workload in enumerate(workloads):
                order = [p for p in paths if p.name != "mugaika-1w" or workload.name == "mix"]
                shift = (round_number + index) % len(order)
                order = order[shift:] + order[:shift]
                for path in order:
                    key = (path.name, workload.name)
                    if key not in estimates:  # a pilot: warms up and measures the rate
                        size = 20 * SESSIONS if path.name == "direct" else SESSIONS // 2
                        pilot = throughput_run(path, workload, size)
                        estimates[key] = pilot.rate
                    least = SESSIONS if args.quick else 2 * SESSIONS  # every session loaded
                    messages = max(least, round(estimates[key] * args.seconds))
                    result = throughput_run(path, workload, messages)
                    estimates[key] = result.rate
                    runs.append(
                        {
                            "round": round_number,
                            "workload": workload.name,
                            "path": path.name,
                            **asdict(result),
                            "rate": result.rate,
                        }
                    )
                    print(
                        f"round {round_number + 1} {workload.name:8} {path.name:16}"
                        f" {result.rate:9.1f} msg/s"
                        f"  cpu {1000 * result.cpu_seconds / result.sent:7.1f}"
                        f" ms/msg  sink {result.delivered}/{result.sent}"
                        + (f"  FAILED {result.failures[0]}" if result.failures else ""),
                        flush=True,
                    )
                relay_rates = []
                for path in order:
                    if path.name == "direct" or path.name == "mugaika-1w":
                        continue
                    rate = max(0.5, estimates[(path.name, workload.name)] / 2)
                    relay_rates.append(rate)
                    latency = latency_run(path, workload, rate, args.latency_seconds)
                    latencies.append(_latency_row(round_number, workload, path.name, latency))
                direct = next((p for p in paths if p.name == "direct"), None)
                if direct is not None and relay_rates:
                    rate = min(300.0, statistics.median(relay_rates))
                    latency = latency_run(direct, workload, rate, args.latency_seconds)
                    latencies.append(_latency_row(round_number, workload, "direct", latency))
            print(f"round {round_number + 1} done at {time.monotonic() - began:.0f} s", flush=True)
        for path in paths:
            path.stop()  # the per-document timing gets the machine to itself
        documents = per_document(workloads, work, args.document_runs) if args.document_runs else []
        print(f"per-document timing done at {time.monotonic() - began:.0f} s", flush=True)
    finally:
        for path in paths:
            path.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return {
        "mode": "quick" if args.quick else "full",
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "seconds": round(time.monotonic() - began, 1),
        "settings": {
            "rounds": args.rounds,
            "seconds_per_run": args.seconds,
            "latency_seconds": args.latency_seconds,
            "sessions": SESSIONS,
        },
        "notes": notes,
        "machine": machine(load_before),
        "versions": versions(),
        "workloads": described,
        "paths": {p.name: PATH_LABELS[p.name] for p in paths},
        "idle_rss": idle,
        "runs": runs,
        "latencies": latencies,
        "documents": documents,
    }


def _latency_row(round_number: int, workload: Workload, path: str, latency: Latency) -> dict:
    return {
        "round": round_number,
        "workload": workload.name,
        "path": path,
        "rate": latency.rate,
        "sent": latency.sent,
        "delivered_250": latency.delivered_250,
        "samples": [round(s, 6) for s in latency.samples],
        "failures": latency.failures[:5],
    }


def machine(load_before: tuple[float, float, float]) -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    release = Path("/etc/debian_version")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "debian": release.read_text().strip() if release.exists() else None,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "shared": _sharing(load_before, os.cpu_count() or 1),
    }


def _sharing(load_before: tuple[float, ...], cores: int) -> str:
    """What the load average before the run says about other work on the machine: the
    results file must not call an idle machine busy, nor the reverse."""
    if load_before[0] < 0.5 * cores:
        return (
            f"the machine was otherwise idle (load average {load_before[0]:.1f} on {cores} "
            "cores before the run)"
        )
    return (
        f"other processes were running (load average {load_before[0]:.1f} on {cores} cores "
        "before the run): absolute rates are low, ratios within the run are what to compare"
    )


def _command(*argv: str) -> str | None:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return None


def versions() -> dict[str, Any]:
    def package(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    commit = _command("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD")
    dirty = _command("git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no")
    return {
        "mugaika": f"{commit}{'+changes' if dirty else ''}",
        "python": platform.python_version(),
        "postfix": _command("postconf", "-h", "mail_version"),
        "amavisd-new": _command("dpkg-query", "-W", "-f=${Version}", "amavisd-new"),
        "perl": _command("perl", "-e", "print $^V"),
        **{
            name: package(name)
            for name in ("aiosmtpd", "aiosmtplib", "pikepdf", "pillow", "lxml", "matplotlib")
        },
    }


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """Medians over rounds per (workload, path), ratios, pooled latency percentiles."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for row in result["runs"]:
        cell = table.setdefault(row["workload"], {}).setdefault(row["path"], {"runs": []})
        cell["runs"].append(row)
    for workload, cells in table.items():
        for cell in cells.values():
            rows = cell.pop("runs")
            cell["rate"] = statistics.median(r["rate"] for r in rows)
            cell["cpu_ms"] = statistics.median(1000 * r["cpu_seconds"] / r["sent"] for r in rows)
            cell["peak_rss_mib"] = max(r["memory"]["rss"] for r in rows) / MiB
            cell["peak_pss_mib"] = max(r["memory"]["pss"] for r in rows) / MiB
            cell["largest_process_mib"] = (
                max(r["memory"]["largest_process_rss"] for r in rows) / MiB
            )
            cell["sent"] = sum(r["sent"] for r in rows)
            cell["delivered"] = sum(r["delivered"] for r in rows)
            cell["failures"] = sum(len(r["failures"]) for r in rows)
        for cell in cells.values():
            for base in ("amavis-pass", "amavis-hardened", "direct", "bare"):
                if base in cells and cells[base]["rate"]:
                    cell[f"x_{base}"] = cell["rate"] / cells[base]["rate"]
        direct_latency = [
            s
            for row in result["latencies"]
            if row["workload"] == workload and row["path"] == "direct"
            for s in row["samples"]
        ]
        floor = statistics.median(direct_latency) if direct_latency else 0.0
        for path, cell in cells.items():
            rows = [
                r for r in result["latencies"] if r["workload"] == workload and r["path"] == path
            ]
            samples = [s for r in rows for s in r["samples"]]
            if not rows or not samples:
                continue
            probe = Latency(statistics.median(r["rate"] for r in rows), 0, 0, samples)
            cell["latency_rate"] = probe.rate
            cell["latency_p50_ms"] = 1000 * probe.p50
            cell["latency_p99_ms"] = 1000 * probe.p99
            cell["added_p50_ms"] = 1000 * (probe.p50 - floor)
            cell["added_p99_ms"] = 1000 * (probe.p99 - floor)
            cell["latency_lost"] = sum(r["sent"] - r["delivered_250"] for r in rows)
            cell["failures"] += sum(len(r["failures"]) for r in rows)
    return table


def targets(result: dict[str, Any], table: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """Issue 13's targets this benchmark measures: (target, measured, met or None if absent)."""

    def cell(workload: str, path: str, key: str) -> float | None:
        value = table.get(workload, {}).get(path, {}).get(key)
        return value if isinstance(value, int | float) else None

    checks: list[tuple[str, str, bool | None]] = []

    def ratio(label: str, workload: str, base: str, at_least: float) -> None:
        value = cell(workload, "mugaika", f"x_{base}")
        shown = "not measured" if value is None else f"{value:.2f}×"
        checks.append((label, shown, None if value is None else value >= at_least))

    amavis_best = "amavis-pass"
    if (cell("text-5k", "amavis-hardened", "rate") or 0) > (
        cell("text-5k", "amavis-pass", "rate") or 0
    ):
        amavis_best = "amavis-hardened"
    ratio("5 KB text ≥ 8× amavisd-new (the faster setup)", "text-5k", amavis_best, 8)
    ratio("5 KB text ≥ 0.5× the bare Python relay", "text-5k", "bare", 0.5)
    ratio("100 KB ≥ 2× amavisd-new pass-through", "100k", "amavis-pass", 2)
    ratio("mix ≥ 2× amavisd-new pass-through", "mix", "amavis-pass", 2)
    ratio("2 MB ≥ 2× amavisd-new pass-through", "2m", "amavis-pass", 2)
    ratio("2 MB ≥ 0.3× the direct path", "2m", "direct", 0.3)
    one = cell("mix", "mugaika-1w", "rate")
    two = cell("mix", "mugaika", "rate")
    if one and two:
        checks.append(("two workers ≥ 1.8× one on the mix", f"{two / one:.2f}×", two / one >= 1.8))
    else:
        checks.append(("two workers ≥ 1.8× one on the mix", "not measured (full run only)", None))
    for workload, limit in (("text-5k", 50.0), ("mix", 1000.0)):
        value = cell(workload, "mugaika", "added_p99_ms")
        checks.append(
            (
                f"added p99 at half peak < {limit:.0f} ms ({workload})",
                "not measured" if value is None else f"{value:.1f} ms",
                None if value is None else value < limit,
            )
        )
    idle = result["idle_rss"].get("mugaika", [])
    if idle:
        largest = max(idle) / MiB
        checks.append(
            (
                "base RSS per process < 120 MiB",
                f"largest {largest:.0f} MiB of {len(idle)}",
                largest < 120,
            )
        )
    ours = max((c.get("mugaika", {}).get("peak_pss_mib", 0) for c in table.values()), default=0)
    theirs = max(
        (c.get("amavis-pass", {}).get("peak_pss_mib", 0) for c in table.values()), default=0
    )
    if ours and theirs:
        checks.append(
            (
                "gateway PSS under load ≤ 2× amavisd-new pass-through's (largest over workloads)",
                f"{ours:.0f} MiB vs {theirs:.0f} MiB ({ours / theirs:.1f}×)",
                ours <= 2 * theirs,
            )
        )
    documents = result.get("documents") or []
    for row in documents:
        checks.append(
            (
                f"per document within 1.5× of the bare library calls: {row['label']}",
                f"{row['ratio']:.2f}× ({row['isolated_ms']:.1f} vs {row['bare_ms']:.1f} ms)",
                row["ratio"] <= 1.5,
            )
        )
    if documents:
        worst = max(documents, key=lambda r: r["ratio"])
        within = sum(r["ratio"] <= 1.5 for r in documents)
        measured = (
            f"{within} of {len(documents)} documents; worst {worst['ratio']:.2f}× "
            f"({worst['label']})"
        )
        met: bool | None = within == len(documents)
    else:
        measured, met = "not measured", None
    checks.append(("per document median within 1.5× of the bare library calls", measured, met))
    return checks


def markdown(result: dict[str, Any], table: dict[str, Any], checks: list) -> str:
    workloads = [w for w in WORKLOAD_NAMES if w in table]
    paths = list(result["paths"])
    sizes = {w: result["workloads"][w]["mean_size"] for w in workloads}
    lines = [
        f"# Relay benchmark, {result['mode']} run, {result['started']}",
        "",
        f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, "
        f"{result['machine']['memory_gib']} GiB, Linux {result['machine']['kernel']}, Debian "
        f"{result['machine']['debian']}. Load average before / after: "
        f"{' '.join(f'{v:.1f}' for v in result['machine']['load_average_before'])} / "
        f"{' '.join(f'{v:.1f}' for v in result['machine']['load_average_after'])}.",
        "",
        f"**Other load:** {result['machine']['shared']}.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items() if v) + ".",
        "",
        f"{result['settings']['rounds']} interleaved round(s), about "
        f"{result['settings']['seconds_per_run']} s per measurement, "
        f"{result['settings']['sessions']} smtp-source sessions (`-d`); medians over rounds. "
        f"Whole run: {result['seconds']:.0f} s.",
        "",
        "## Messages per second (× amavisd-new pass-through, × direct)",
        "",
        "| path | " + " | ".join(f"{w} ({sizes[w] / 1024:,.0f} KB)" for w in workloads) + " |",
        "|---|" + "---|" * len(workloads),
    ]
    for path in paths:
        cells = []
        for workload in workloads:
            cell = table[workload].get(path)
            if not cell:
                cells.append("")
                continue
            text = f"{cell['rate']:,.1f}/s"
            if path != "direct":
                ratios = [f"{cell[k]:.2f}×" for k in ("x_amavis-pass", "x_direct") if k in cell]
                text += f" ({', '.join(ratios)})"
            cells.append(f"**{text}**" if path == "mugaika" else text)
        lines.append(f"| {PATH_LABELS[path]} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## CPU ms per message (whole process tree) / peak RSS / peak PSS (MiB, all processes)",
        "",
        "| path | " + " | ".join(workloads) + " |",
        "|---|" + "---|" * len(workloads),
    ]
    for path in paths:
        if path == "direct":
            continue
        cells = []
        for workload in workloads:
            cell = table[workload].get(path)
            cells.append(
                f"{cell['cpu_ms']:.1f} ms / {cell['peak_rss_mib']:.0f} / {cell['peak_pss_mib']:.0f}"
                if cell
                else ""
            )
        lines.append(f"| {PATH_LABELS[path]} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Added latency at half each relay's peak rate, p50 / p99 (ms)",
        "",
        "MAIL FROM to the final 250, scheduled at a fixed rate over 16 connections (waiting for "
        "a free connection counts), minus the direct path's median at a comparable rate.",
        "",
        "| path | " + " | ".join(workloads) + " |",
        "|---|" + "---|" * len(workloads),
    ]
    for path in paths:
        if path in ("direct", "mugaika-1w"):
            continue
        cells = []
        for workload in workloads:
            cell = table[workload].get(path, {})
            cells.append(
                f"{cell['added_p50_ms']:.1f} / {cell['added_p99_ms']:.1f}"
                f" at {cell['latency_rate']:.1f}/s"
                if "added_p50_ms" in cell
                else ""
            )
        lines.append(f"| {PATH_LABELS[path]} | " + " | ".join(cells) + " |")
    lost = [
        f"{w}/{p}: {c['delivered']} of {c['sent']} at the sink, {c['failures']} failures"
        for w, cells in table.items()
        for p, c in cells.items()
        if c["delivered"] != c["sent"] or c["failures"] or c.get("latency_lost")
    ]
    lines += [
        "",
        "## Zero loss",
        "",
        (
            "Every message answered 250 was counted at its path's sink: "
            f"{sum(c['sent'] for cells in table.values() for c in cells.values()):,} messages "
            "in the throughput runs, every latency run likewise."
            if not lost
            else "LOSS OR FAILURES: " + "; ".join(lost)
        ),
        "",
        "## Idle RSS per process (MiB)",
        "",
    ]
    for path, values in result["idle_rss"].items():
        if values:
            lines.append(f"- {PATH_LABELS[path]}: " + ", ".join(f"{v / MiB:.0f}" for v in values))
    documents = result.get("documents") or []
    if documents:
        lines += [
            "",
            "## Per document: Mugaika's sanitizer against the bare library calls (median ms)",
            "",
            f"{documents[0]['runs']} interleaved runs per document, in one worker-like process "
            "(the default policy's Pipeline built first: libraries preloaded). Mugaika: the "
            "sanitizer in its own child, as a worker runs it (`run_isolated`: fork, limits, the "
            "result read back and checked); in process: the same call without the child; bare: "
            "PDF pikepdf open + `pikepdf.sanitize` + save with the same options, docx/xlsx "
            "zipfile read every member + write a new ZIP, JPEG Pillow decode + encode at the "
            "same quality (`benchmarks/bench_cdr.py --per-document`).",
            "",
            "| document | size | Mugaika | in process | bare | × bare |",
            "|---|---|---|---|---|---|",
        ]
        for row in documents:
            lines.append(
                f"| {row['label']} | {row['size'] / 1024:,.0f} KB | {row['isolated_ms']:.1f} | "
                f"{row['in_process_ms']:.1f} | {row['bare_ms']:.1f} | {row['ratio']:.2f}× |"
            )
    lines += ["", "## Issue 13 targets", "", "| target | measured | met |", "|---|---|---|"]
    for label, measured, met in checks:
        lines.append(f"| {label} | {measured} | {'—' if met is None else 'yes' if met else 'no'} |")
    lines += ["", "## Workloads", ""]
    for name in workloads:
        templates = result["workloads"][name]["templates"]
        parts = ", ".join(
            f"{t['label']} {t['size'] / 1024:,.0f} KB ×{t['weight']}" for t in templates
        )
        lines.append(f"- {name}: {parts}")
    for note in result["notes"]:
        lines.append(f"- note: {note}")
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], table: dict[str, Any], target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = [w for w in WORKLOAD_NAMES if w in table]
    paths = [p for p in result["paths"] if any(p in table[w] for w in workloads)]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(11, 8), sharex=True)
    width = 0.8 / len(paths)
    for number, path in enumerate(paths):
        xs = [i + (number - (len(paths) - 1) / 2) * width for i in range(len(workloads))]
        rates = [table[w].get(path, {}).get("rate", 0) for w in workloads]
        cpu = [
            table[w].get(path, {}).get("cpu_ms", 0) if path != "direct" else 0 for w in workloads
        ]
        top.bar(xs, rates, width, label=PATH_LABELS[path])
        bottom.bar(xs, cpu, width, label=PATH_LABELS[path])
    top.set_yscale("log")
    top.set_ylabel("messages per second (log)")
    top.set_title(
        f"Relay throughput, {result['mode']} run {result['started'][:10]}, "
        f"{result['machine']['cores']} cores, 16 sessions"
    )
    top.legend(fontsize=8, loc="upper right")
    bottom.set_yscale("log")
    bottom.set_ylabel("CPU ms per message (log)")
    bottom.set_xticks(range(len(workloads)))
    sizes = result["workloads"]
    bottom.set_xticklabels([f"{w}\n{sizes[w]['mean_size'] / 1024:,.0f} KB mean" for w in workloads])
    figure.tight_layout()
    figure.savefig(target, dpi=100)
    plt.close(figure)


def write(result: dict[str, Any], out: Path) -> tuple[Path, Path, Path]:
    table = summarize(result)
    checks = targets(result, table)
    result = {**result, "summary": table, "targets": [list(c) for c in checks]}
    out.mkdir(parents=True, exist_ok=True)
    stem = out / result["mode"]
    json_path, md_path, png_path = (stem.with_suffix(s) for s in (".json", ".md", ".png"))
    json_path.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    md_path.write_text(markdown(result, table, checks), encoding="utf-8")
    plot(result, table, png_path)
    return json_path, md_path, png_path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="one round, short runs: < 3 min")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--seconds", type=float, help="target length of one measurement")
    parser.add_argument("--latency-seconds", type=float)
    parser.add_argument("--workloads", nargs="*", choices=WORKLOAD_NAMES)
    parser.add_argument("--paths", nargs="*", choices=list(PATH_LABELS))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--document-runs", type=int, help="runs per document of the per-document timing (0: none)"
    )
    parser.add_argument("--scale", type=float, default=1.0, help=argparse.SUPPRESS)  # tests
    args = parser.parse_args(argv)
    defaults = (1, 2.0, 1.5) if args.quick else (3, 5.0, 3.0)
    args.rounds = args.rounds or defaults[0]
    args.seconds = args.seconds or defaults[1]
    args.latency_seconds = args.latency_seconds or defaults[2]
    if args.document_runs is None:
        args.document_runs = 5 if args.quick else 15
    args.notes = []
    return args


def main() -> int:
    args = parse_args()
    args.notes = install_debian_packages()
    if not shutil.which("smtp-source"):
        print("benchmarks/run: smtp-source missing (Debian postfix); run as root to install it")
        return 2
    result = run(args)
    json_path, md_path, png_path = write(result, args.out)
    print(md_path.read_text(encoding="utf-8"))
    print(f"wrote {json_path}, {md_path}, {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
