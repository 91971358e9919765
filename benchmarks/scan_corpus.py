"""Per-message processing time of the scan pipeline over the corpus emails.

The same ``Pipeline`` object ``mugaika scan`` builds (default policy, per-document isolation),
run once per corpus mail in one process, so interpreter start-up is not counted. Prints the
median and p99, the slowest messages, the verdict counts and any pipeline exception.

    .venv/bin/python benchmarks/scan_corpus.py [CORPUS_DIR] [--auth]
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
from pathlib import Path

from gateway.config import load_config
from gateway.pipeline import Job, Pipeline
from gateway.scan import envelope_for

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("corpus", nargs="?", type=Path, default=ROOT.parent / "shared" / "corpus")
    parser.add_argument("--auth", action="store_true", help="include SPF/DKIM/DMARC (DNS)")
    args = parser.parse_args()
    rows = (args.corpus / "MANIFEST.tsv").read_text().splitlines()[1:]
    paths = [args.corpus / r.split("\t")[0] for r in rows if r.split("\t")[4] == "eml"]
    pipeline = Pipeline(load_config(environ={}))
    if not args.auth:
        pipeline.auth_settings = None
    times: list[tuple[float, str]] = []
    verdicts: collections.Counter[str] = collections.Counter()
    errors: list[str] = []
    for path in paths:
        raw = path.read_bytes()
        started = time.perf_counter()
        try:
            outcome = pipeline.process(Job(envelope_for(raw, None, None), raw, "BENCH"))
        except Exception as exc:
            errors.append(f"{path.relative_to(args.corpus)}: {type(exc).__name__}: {exc}")
            continue
        times.append((time.perf_counter() - started, str(path.relative_to(args.corpus))))
        verdicts[outcome.verdict.label] += 1
    seconds = sorted(t for t, _ in times)
    p99 = seconds[int(len(seconds) * 0.99) - 1]
    print(f"messages: {len(paths)}  processed: {len(seconds)}  errors: {len(errors)}")
    print(
        f"median: {statistics.median(seconds) * 1000:.1f} ms  p99: {p99 * 1000:.1f} ms  "
        f"max: {seconds[-1] * 1000:.1f} ms  total: {sum(seconds):.1f} s"
    )
    print("verdicts:", dict(verdicts))
    for t, name in sorted(times, reverse=True)[:5]:
        print(f"  slowest: {t * 1000:.0f} ms {name}")
    for error in errors[:20]:
        print("  error:", error)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
